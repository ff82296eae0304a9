"""Disk <-> runnable artifact: model files with metadata, exports, loading any artifact.

Contract: `saving` (`.h5`/`.keras` with tlkit's metadata inside, loadable by plain Keras),
`export` (one call: write, then check against the Keras model) and one module per format
(`saved_model`, `tflite` with its int8 quantization, `onnx`), `calibration` (the
representative images of an int8 export) and `artifacts` (loading any of them back as
something that predicts). Deploy sits below `evaluation`, not above it as first planned:
evaluating and predicting start from a file (`tlkit evaluate MODEL`, the model card reads the
file's metadata), so evaluation imports deploy, and deploy needs nothing of evaluation. It
may import `core`, `config`, `data`, `models` and `training`, and trains nothing.
"""
