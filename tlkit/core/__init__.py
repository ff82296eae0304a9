"""The bottom layer: what every other layer may use, and which imports nothing else of tlkit.

Contract: `errors` (the one `TlkitError`, close-match suggestions, exit code 2), `choices`
(the fixed vocabularies), `fileio` (atomic writes, 0644, writability and "not inside the data"
checks), `console` (TensorFlow's start-up lines kept off stderr), `logs` (expected warnings
kept off), `compat` (every private Keras/TensorFlow/KerasTuner API, with the versions
checked) and `version`. No module here imports TensorFlow or Keras at module level, and none
imports another tlkit layer (tests/test_layering.py).
"""
