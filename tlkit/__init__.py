"""tlkit: Keras-first transfer learning.

Blocks (`tlkit.blocks`), a classic model zoo (`tlkit.zoo`), pretrained backbones split into
stages (`tlkit.backbones`), the four strategies of the size-versus-similarity matrix
(`tlkit.strategies`) and deployable `.h5` files (`tlkit.saving`).
"""

__version__ = "0.1.0"
