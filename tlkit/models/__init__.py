"""Building `keras.Model`s: blocks, the from-scratch zoo and pretrained backbones.

Contract: `blocks` (Functional-API blocks, pure functions naming every layer), `zoo` (the
classic from-scratch models at their published sizes) and `backbones/` (a named base with its
preprocessing inside the graph, split into stages) build models and know nothing of training:
no optimizer, no fit, no data. Imports `core`, `config` and `data` only.
"""
