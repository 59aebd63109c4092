"""Study analysis: how much of a skill, how evenly spaced, from how many unique examples,
a model size needs (../shared/SCIENCE.md, "Studies").

Pure functions over plain numbers (numpy and scipy; no torch, no service, no curation):
a study's runs go in as doses and per-seed outcomes, fits and recommendations come out
as dataclasses and dicts a report can store.

- `analysis.dose`: a Firth-penalised logistic model of retained (one Bernoulli per seed)
  on log2(dose); ED50/ED80 and the slope with profile penalised-likelihood intervals.
- `analysis.curves`: the four-parameter log-logistic fit of a continuous readout.
- `analysis.trends`: spacing (P and readout against log2 period, the exposure-aligned
  sawtooth) and repetition (paired general-loss differences, seen minus held-out gaps).
- `analysis.transfer`: log ED50 against log parameters across sizes.
- `analysis.design`: the adaptive dose-response design's next doses, every decision
  written down.
- `analysis.recommend`: the one-line recommendation per size, or why there is none.
"""
