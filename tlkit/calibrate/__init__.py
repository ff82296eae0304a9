"""Calibrated probabilities and "unknown": temperature scaling, its metrics, a rejection
threshold on an out-of-distribution score, and the figures (issue 24).

Layer: beside `tlkit.evaluation`, not among the tools above it: `predict` applies the
fitted temperature and the unknown threshold to every prediction, and `recalibrate` reads a
saved artifact (deploy) and predicts with it, so calibrate and evaluation share a layer,
above deploy and below the tools and workflows (`finetune` calibrates the model it trains).

- `temperature`: fit one T > 0 on validation logits (log-probabilities) by minimising NLL.
- `metrics`: ECE (15 equal-width bins), NLL, Brier, the risk-coverage curve, AUROC.
- `unknown`: OOD scores (max softmax probability, energy, kNN distance) and the threshold
  for a target in-distribution coverage.
- `plots`: reliability.png (before/after, with the confidence histogram), risk_coverage.png.
- `run`: `calibrate_model(model, dataset)` -> the report's `"calibration"` dict, and
  `from_metadata` / `apply_metadata` to use it at prediction time.

Not to be confused with `tlkit.deploy.calibration`, the representative images of int8 quantization.
"""

from tlkit.calibrate.temperature import apply, fit_temperature, logits
from tlkit.calibrate.run import (MIN_VAL_IMAGES, apply_metadata, calibrate_model,
                                 check_coverage, from_metadata)

__all__ = ["apply", "fit_temperature", "logits", "calibrate_model", "check_coverage",
           "from_metadata", "apply_metadata", "MIN_VAL_IMAGES"]
