"""The demo's arguments: the Fashion-MNIST class split, the data files, the seed, the folder.

Everything here runs before any data is read or any model is trained.
"""

import os

import numpy as np

from tlkit import data as data_lib
from tlkit.core.errors import TlkitError
from tlkit.experiments.config import (
    DEFAULT_SOURCE_CLASSES, DEFAULT_TARGET_CLASSES, FASHION_CLASSES, FASHION_FILES,
)
from tlkit.deploy import saving


def _norm(name):
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def parse_classes(spec, arg="source_classes"):
    """Fashion-MNIST class ids from names or ids: `"0,1,Coat"`, `["Sandal", 8]`, ...

    Names match case-insensitively, ignoring spaces and punctuation (`ankle-boot`,
    `T-shirt/top`, `tshirttop`).

    Args:
        spec: a comma-separated string, or a list of names and ids.
        arg: the argument name for error messages (`source_classes` or `target_classes`).

    Returns:
        A list of class ids (0..9), in the order given.

    Raises:
        TlkitError: empty, unknown or repeated classes.

    Example:
        >>> from tlkit.experiments.classes import parse_classes
        >>> parse_classes("ankle boot, 0,Coat")
        [9, 0, 4]
    """
    flag = "--" + arg.replace("_", "-")
    tokens = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not tokens or any(isinstance(t, str) and not t for t in tokens):
        raise TlkitError(f"{flag} must list Fashion-MNIST classes, comma-separated (names or "
                         f"ids 0-9). Received: {spec!r}.")
    lookup = {_norm(n): i for i, n in enumerate(FASHION_CLASSES)}
    ids = []
    for t in tokens:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool) or (
                isinstance(t, str) and t.isdigit()):
            i = int(t)
            if not 0 <= i < len(FASHION_CLASSES):
                raise TlkitError(f"{flag}: no Fashion-MNIST class id {i}; ids are 0-9 "
                                 f"({_listing()}).")
        elif isinstance(t, str) and _norm(t) in lookup:
            i = lookup[_norm(t)]
        else:
            import difflib

            close = difflib.get_close_matches(str(t), FASHION_CLASSES, n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise TlkitError(f"{flag}: unknown Fashion-MNIST class {t!r}.{hint} "
                             f"Valid: {_listing()}.")
        if i in ids:
            raise TlkitError(f"{flag} lists {FASHION_CLASSES[i]!r} (id {i}) twice.")
        ids.append(i)
    return ids


def _listing():
    return ", ".join(f"{i} {n}" for i, n in enumerate(FASHION_CLASSES))


def resolve_classes(source_classes=None, target_classes=None):
    """The (source ids, target ids) of the demo's Fashion-MNIST class split.

    Defaults: source = `DEFAULT_SOURCE_CLASSES` and target = `DEFAULT_TARGET_CLASSES`; when
    only one side is given, the other side is every class it leaves out.

    Args:
        source_classes: names/ids (see `parse_classes`) the source net is pretrained on.
        target_classes: names/ids of the similar target situations.

    Returns:
        `(source_ids, target_ids)`, two lists of ids.

    Raises:
        TlkitError: unknown or repeated classes, the two sides overlap, or a side has fewer
            than two classes.

    Example:
        >>> from tlkit.experiments.classes import resolve_classes
        >>> resolve_classes()
        ([0, 1, 4, 5, 8], [2, 3, 6, 7, 9])
        >>> resolve_classes(None, "Shirt,Bag")
        ([0, 1, 2, 3, 4, 5, 7, 9], [6, 8])
    """
    if source_classes is None and target_classes is None:
        source_classes, target_classes = DEFAULT_SOURCE_CLASSES, DEFAULT_TARGET_CLASSES
    src = parse_classes(source_classes, "source_classes") if source_classes is not None else None
    tgt = parse_classes(target_classes, "target_classes") if target_classes is not None else None
    every = range(len(FASHION_CLASSES))
    if src is None:
        src = [i for i in every if i not in tgt]
    if tgt is None:
        tgt = [i for i in every if i not in src]
    both = [i for i in src if i in tgt]
    if both:
        raise TlkitError(f"--source-classes and --target-classes overlap: "
                         f"{', '.join(FASHION_CLASSES[i] for i in both)}. A class belongs to "
                         f"one side only.")
    for flag, ids in (("--source-classes", src), ("--target-classes", tgt)):
        if len(ids) < 2:
            names = ", ".join(FASHION_CLASSES[i] for i in ids) or "none"
            raise TlkitError(f"The class split leaves {len(ids)} class on the {flag[2:8]} side "
                             f"({names}); each side needs at least two (set {flag}).")
    return src, tgt


def check_fashion_mnist():
    """The folder with the Fashion-MNIST files, or a `TlkitError` saying how to install them.

    Looks in Debian's `/usr/share/datasets/fashion-mnist` (`data.FASHION_MNIST_DEBIAN`), then
    in the Keras cache (`~/.keras/datasets/fashion-mnist`); never downloads.
    """
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    for folder in (data_lib.FASHION_MNIST_DEBIAN,
                   os.path.join(keras_home, "datasets", "fashion-mnist")):
        if all(os.path.isfile(os.path.join(folder, f)) for f in FASHION_FILES):
            return folder
    raise TlkitError(f"Fashion-MNIST files not found in {data_lib.FASHION_MNIST_DEBIAN}: install "
                     f"them with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu, as "
                     f"root; 'make data' does it).")


def _check_out_dir(out_dir):
    return saving.check_folder_writable(out_dir, "--out")


def _check_seed(seed):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise TlkitError(f"seed must be an int >= 0. Received: seed={seed!r}.")
    return int(seed)
