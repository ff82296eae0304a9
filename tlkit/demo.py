"""`tlkit demo`: the size-versus-similarity matrix, reproduced on real data, offline.

The experiment lives in `tlkit.experiments.demo` (see its docstring for the steps and the
files it writes); this module keeps `tlkit.demo` importable with the same names.

Example:
    >>> from tlkit import demo
    >>> demo.resolve_classes("Sandal,Bag", None)  # the target side defaults to the rest
    ([5, 8], [0, 1, 2, 3, 4, 6, 7, 9])
"""

from tlkit.experiments.demo import *  # noqa: F401,F403 - the re-exported names
from tlkit.experiments.demo import __all__  # noqa: F401
