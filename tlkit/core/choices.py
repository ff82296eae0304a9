"""The fixed vocabularies of tlkit's arguments, as plain data.

Kept free of TensorFlow and Keras so that the CLI declares them as argparse `choices` and
`tlkit --help` answers without importing TensorFlow. The library modules that own a concept
use the same tuples (`tlkit.models.blocks.POOLINGS is choices.POOLINGS`); tests/cli/
test_conventions.py checks the ones still defined elsewhere against these.

Example:
    >>> from tlkit.core import choices
    >>> choices.POOLINGS
    ('avg', 'max', 'flatten')
    >>> "auto" in choices.STRATEGY_CHOICES and "auto" not in choices.STRATEGIES
    True
"""

BN_PLACEMENTS = ("before", "after", "none")  # BatchNormalization before/after the activation
POOLINGS = ("avg", "max", "flatten")  # how a classifier head reduces the feature map
STRATEGIES = ("small-similar", "small-dissimilar", "large-similar", "large-dissimilar")
STRATEGY_CHOICES = STRATEGIES + ("auto",)  # auto: tlkit.advise measures, then chooses
RESIZE_MODES = ("squash", "crop", "pad")  # fitting images to the input size
BAD_IMAGE_POLICIES = ("skip", "error")  # unreadable image files
TUNERS = ("random", "hyperband", "bayesian")  # KerasTuner's search algorithms
# "unknown" scores from the probabilities and T (tlkit.calibrate.unknown: the measurements
# behind the default), the ones every export computes; the default is one home for
# calibrate, predict and the SavedModel graph. Models with a feature layer (head_pool) get
# the "mahalanobis" feature score instead (tlkit.calibrate.run.default_score)
EXPORTED_UNKNOWN_SCORES = ("msp", "energy", "entropy")
DEFAULT_UNKNOWN_SCORE = "entropy"
# training images whose features fit the mahalanobis unknown score, at most (a seeded choice:
# tlkit.calibrate.run; the feature cache hands at most this many rows to it)
UNKNOWN_FIT_IMAGES = 2000
# training precision (tlkit.training.precision): auto decides per run, by device and a probe
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
OBJECTIVES = ("val_accuracy", "val_loss", "accuracy", "loss")  # what a search optimises
