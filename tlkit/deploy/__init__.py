"""Disk <-> runnable artifact: model files with metadata, exports, loading any artifact.

Contract: `saving` (`.h5`/`.keras` with tlkit's metadata inside, loadable by plain Keras),
`export` and `exporters` (SavedModel, TFLite, int8, ONNX), `calibration` (the representative
images of an int8 export) and `artifacts` (loading any of them back as something that
predicts). Deploy sits below `evaluation`, not above it as first planned: evaluating and
predicting start from a file (`tlkit evaluate MODEL`, the model card reads the file's
metadata), so evaluation imports deploy, and deploy needs nothing of evaluation. Imports
`core`, `config`, `data`, `models` and `training`.
"""
