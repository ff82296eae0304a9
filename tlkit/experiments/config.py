"""The demo's settings (`DemoConfig`, `FULL`, `QUICK`), names and defaults, and its result.

Example:
    >>> from tlkit.experiments import config
    >>> config.SITUATIONS == config.STRATEGIES, config.QUICK.small_epochs
    (True, 4)
"""

import dataclasses
import pathlib

from tlkit import data as data_lib
from tlkit.training.strategies import STRATEGIES

# The four cells of the size-versus-similarity matrix are named like the strategy that is
# the textbook answer there.
SITUATIONS = STRATEGIES
METHODS = STRATEGIES + ("auto", "scratch")  # auto: tlkit.advise measures, then chooses
FASHION_CLASSES = tuple(data_lib.FASHION_MNIST_CLASSES)
# Both halves hold tops and footwear, so the target classes are new but related.
DEFAULT_SOURCE_CLASSES = ("T-shirt/top", "Trouser", "Coat", "Sandal", "Bag")  # ids 0, 1, 4, 5, 8
DEFAULT_TARGET_CLASSES = ("Pullover", "Dress", "Shirt", "Sneaker", "Ankle boot")  # 2, 3, 6, 7, 9
DEFAULT_OUT = "saved_models/demo"
BASELINE_TARGET = 0.91
IMAGE_SHAPE = (28, 28, 1)
BN_MOMENTUM = 0.9
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes and budgets of a demo run (`FULL` or `QUICK`; `dataclasses.replace` for others).

    Attributes:
        name: `"full"` or `"quick"` (recorded in the outputs).
        widths: filters of the source net's `vgg_block`s (one stage each).
        convs: convolutions per block.
        source_per_class: training images per source class (None: all, 5,400).
        source_epochs: epochs of the source pretraining.
        small_per_class: training images per class in the small situations.
        large_per_class: training images per Fashion-MNIST class in large-similar (None: all);
            large-dissimilar always uses every digit there is.
        small_val_per_class: validation images per class in the small situations.
        large_val_per_class: validation images per class in large-similar (None: all 600).
        test_per_class: Fashion-MNIST test images per class (None: all 1,000).
        small_epochs, large_epochs: the epoch budget of every run in a small / large
            situation; None (the full demo): `tlkit.finetune`'s default budget by steps.
        small_batch, large_batch: batch sizes.
        patience: EarlyStopping patience (on val_loss, best weights restored).
        baseline_per_class: `fashion_cnn` training images per class (None: all; 0 skips it).
        baseline_epochs: its epoch budget (EarlyStopping may end it sooner).
        baseline_batch: its batch size.
        pooling: how every head (source, transferred, scratch) reads the last feature map:
            `"flatten"` keeps the 3x3 layout (1,152 features), which the frozen strategies
            need here; global average pooling (128 features) left their linear heads
            underfitting (train accuracy ~0.72 on small-similar).
    """

    name: str = "full"
    widths: tuple = (32, 64, 128)
    convs: int = 1
    source_per_class: int = None
    source_epochs: int = 8
    small_per_class: int = 30
    large_per_class: int = 1500
    small_val_per_class: int = 10
    large_val_per_class: int = 200
    test_per_class: int = None
    small_epochs: int = None
    large_epochs: int = None
    small_batch: int = 16
    large_batch: int = 64
    patience: int = 6
    baseline_per_class: int = None
    baseline_epochs: int = 10
    baseline_batch: int = 128
    pooling: str = "flatten"
    curve_sizes: tuple = (1, 5, 30)
    curve_seeds: int = 3


# The curves compare the textbook small-data transfer strategy of each target with scratch.
CURVE_STRATEGIES = {"similar": ("small-similar", "scratch"),
                    "dissimilar": ("small-dissimilar", "scratch")}

FULL = DemoConfig()
QUICK = DemoConfig(name="quick", source_per_class=300, source_epochs=2, small_per_class=20,
                   large_per_class=200, small_val_per_class=5, large_val_per_class=20,
                   test_per_class=100, small_epochs=4, large_epochs=2, patience=2,
                   baseline_per_class=300, baseline_epochs=1, curve_sizes=(1, 5),
                   curve_seeds=2)


@dataclasses.dataclass
class DemoResult:
    """What `run_demo` returns.

    Attributes:
        records: one dict per (situation, strategy), as written to `matrix.json`.
        baseline: the `fashion_cnn` record (`baseline.json`), or None when skipped.
        source: facts about the source net (classes, test accuracy, seconds, path).
        out_dir: the output folder.
        seconds: wall time of the whole demo.
        files: the main output files by kind.
        curves: the data-efficiency curves by target, or None when skipped.
    """

    records: list
    baseline: dict
    source: dict
    out_dir: pathlib.Path
    seconds: float
    files: dict
    curves: dict = None  # target ("similar", "dissimilar") -> `tlkit.workflows.curve.CurveResult`
