"""TensorFlow's and Keras's expected warnings kept out of progress output, for one block.

Example:
    >>> import logging
    >>> with quiet_tf_logs():
    ...     logging.getLogger("tensorflow").level == logging.ERROR
    True
"""

import contextlib
import logging
import warnings

TF_LOGGERS = ("absl", "tensorflow")


@contextlib.contextmanager
def quiet_tf_logs(level=logging.ERROR):
    """Raise the `absl` and `tensorflow` loggers to `level` inside the block, then restore.

    For runs that build many models: TensorFlow warns about tf.function retracing once
    several models' predict steps have been traced (its detector counts traces per source
    function, not per model), and Keras notes the legacy `.h5` format on every save.
    """
    loggers = [logging.getLogger(n) for n in TF_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, levels):
            lg.setLevel(old)


@contextlib.contextmanager
def streamed_epochs():
    """Keep Keras's "Your input ran out of data" warning out of a `fit` on streamed files.

    Image files stream through tf.data with `ignore_errors()` (a file that fails to decode is
    skipped), so the number of batches is unknown until the first epoch ends; Keras then
    warns that the input "ran out of data", although every epoch read every file. Only that
    warning is dropped, and only inside the block.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data",
                                category=UserWarning)
        yield
