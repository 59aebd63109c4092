"""Verify by training: small LMs on mixtures, skill probes, verdicts across seeds.

Entry points (plain arguments, progress through `progress(fraction, message)`, which
may raise to cancel):

- `training.verify.run_verification(arms, skills, sizes, seeds, ...)`: every
  (arm, size, seed) run, verdicts and plots; returns the report dict.
- `training.trainer.train_run(config, mixture_dir, eval_spec, out_dir)`: one
  resumable run; returns a `RunResult` (also stored as out_dir/result.json).
- `training.verdict`: the statistics, pure (no torch).

Mixtures are read as docs/mixture-format.md specifies (`training.data`). This
package may import `curation`, never `service`.
"""
