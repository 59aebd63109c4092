"""Verify by training: small LMs on mixtures, skill probes, verdicts across seeds.

Entry points (plain arguments; what happens is reported through callbacks, which may
raise to cancel):

- `training.verify.run_verification(arms, skills, sizes, seeds, ...)`: every
  (arm, size, seed) run, verdicts and plots; returns the report dict. Progress through
  `progress(fraction, message)`, each run's typed events through `on_event`.
- `training.trainer.train_run(config, mixture_dir, eval_spec, out_dir, on_event)`: one
  resumable run; returns a `RunResult` (also stored as out_dir/result.json).
- `training.events`: what a run reports (RunStarted, StepDone, Evaluated, RunFinished),
  named by its `RunKey` (arm, size, seed).
- `training.parallel`: runs in a pool of spawned processes.
- `training.verdict`: the statistics, pure (no torch).

Mixtures are read as docs/mixture-format.md specifies (`training.data.MixtureReader`,
with the format's constants from `curation.mixture.format`). This package may import
`curation`, never `service`.
"""
