"""tlkit: Keras-first transfer learning.

Blocks (`tlkit.blocks`), a classic model zoo (`tlkit.zoo`), pretrained backbones split into
stages (`tlkit.backbones`), the four strategies of the size-versus-similarity matrix
(`tlkit.strategies`) and deployable `.h5` files (`tlkit.saving`).
"""

__version__ = "0.1.0"


def finetune(data, backbone="mobilenet_v2", strategy="small-similar", **kwargs):
    """Fine-tune a backbone on data with a strategy; see `tlkit.transfer.finetune`."""
    from tlkit.transfer import finetune as _finetune

    return _finetune(data, backbone, strategy, **kwargs)
