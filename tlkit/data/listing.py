"""Listing image files: a file, a folder of images (recursively), or a list of both.

This is the listing for commands that take images to look at rather than a labelled data set
(`tlkit explain`, `tlkit export --sample`, `tlkit predict`); `tlkit.data.folder.scan` lists
labelled class folders. `readable_images` probes the listed files (headers only) and skips
and counts the unreadable ones, as `tlkit predict` and `tlkit explain` both do;
`skipped_message` is the one line they print about them.

Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "sub"))
    >>> for name in ("b.png", "sub/a.jpg", ".hidden.png", "notes.txt"):
    ...     Image.new("RGB", (4, 4)).save(os.path.join(d, name), format="PNG")
    >>> [str(p.relative_to(d)) for p in image_files(d)]
    ['b.png', 'sub/a.jpg']
    >>> open(os.path.join(d, "bad.png"), "w").write("no picture")
    10
    >>> skipped = []
    >>> readable = readable_images(d, skipped=skipped)
    >>> [(os.path.basename(p), probe.height) for p, probe in readable]
    [('b.png', 4), ('a.jpg', 4)]
    >>> skipped_message(skipped)
    'skipped 1 unreadable image: bad.png'
    >>> small_images_note(readable, (224, 224))[:72]
    '2 images are much smaller than the model input 224x224 (e.g. b.png: 4x4 '
"""

import os
from pathlib import Path

from tlkit.core import fileio
from tlkit.core.errors import TlkitError, check_choice
from tlkit.data import folder
from tlkit.data.decode import IMAGE_EXTENSIONS


def image_files(inputs):
    """The image files named by `inputs`, in order.

    A file is taken as it is; a folder gives its images (extensions `IMAGE_EXTENSIONS`,
    subfolders included, sorted by path, hidden files and folders skipped).

    Args:
        inputs: a path, or a list of paths.

    Returns:
        A list of `Path`.

    Raises:
        TlkitError: for a path that does not exist, a folder without images, or no paths.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*")
                           if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS
                           and not any(part.startswith(".") for part in q.relative_to(p).parts))
            if not found:
                raise TlkitError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in folder "
                                 f"{str(p)!r}.")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise TlkitError(f"Image path {str(p)!r} does not exist.")
    if not files:
        raise TlkitError("No images given.")
    return files


def readable_images(inputs, on_bad_image="skip", skipped=None):
    """The readable image files named by `inputs`, each with its decoder, headers only.

    Files are listed by `image_files` and probed by `tlkit.data.folder.probe_file` (format,
    size, a JPEG or PNG not cut short); no pixels are decoded, except for the rare file whose
    end looks cut short.

    Args:
        inputs: a path, or a list of paths (see `image_files`).
        on_bad_image: `"skip"`: an unreadable file is left out and appended to `skipped` as
            (path, reason); `"error"`: the first one raises. A single file given as `inputs`
            always raises when it is unreadable: there is nothing else to do.
        skipped: a list that receives the skipped files.

    Returns:
        A list of `(path, probe)`: path as str, probe the `tlkit.data.decode.Probe` of its
        header (`probe.decoder == "pil"` where the file needs Pillow; its height and width).

    Raises:
        TlkitError: for an unreadable file (see `on_bad_image`), or when no file is readable.
    """
    check_choice("on_bad_image", on_bad_image, ("skip", "error"))
    skipped = [] if skipped is None else skipped
    single = isinstance(inputs, (str, os.PathLike)) and os.path.isfile(inputs)
    good = []
    for path in map(str, image_files(inputs)):
        probe = folder.probe_file(path)
        if probe.decoder is None:
            if on_bad_image == "error" or single:
                raise TlkitError(f"Cannot read image {path}: {probe.problem}."
                                 + (" Pass --on-bad-image skip to skip such files."
                                    if on_bad_image == "error" else ""))
            skipped.append((path, probe.problem))
            continue
        good.append((path, probe))
    if not good:
        raise TlkitError(f"No readable image in {inputs} ({len(skipped)} tried, e.g. "
                         f"{skipped[0][0]}: {skipped[0][1]}).")
    return good


TINY_SIDE = 8  # pixels: an image with a side below this carries almost nothing to classify


def small_images_note(readable, image_size):
    """A warning about images with a side below `TINY_SIDE` pixels, smaller than the model's
    input `image_size` (height, width), or None when there are none.

    Args:
        readable: `(path, probe)` pairs, as `readable_images` returns.
        image_size: the model's input (height, width).

    Returns:
        One line, naming how many and the first, or None.
    """
    h, w = (int(d) for d in image_size[:2])
    tiny = [(p, pr) for p, pr in readable
            if min(pr.height, pr.width) < TINY_SIDE and (pr.height < h or pr.width < w)]
    if not tiny:
        return None
    path, probe = tiny[0]

    count = "1 image is" if len(tiny) == 1 else f"{len(tiny)} images are"
    return (f"{count} much smaller than the model input {h}x{w} (e.g. "
            f"{fileio.printable_path(os.path.basename(path))}: {probe.width}x{probe.height} px): "
            f"{'it is' if len(tiny) == 1 else 'they are'} upscaled, and what the model says "
            f"about {'it' if len(tiny) == 1 else 'them'} means little.")


def warn_small_images(readable, image_size, stacklevel=2):
    """Warn once (`warnings.warn`) with `small_images_note` when it has something to say;
    `stacklevel` counts from the caller, as `warnings.warn`'s does."""
    note = small_images_note(readable, image_size)
    if note:
        import warnings

        warnings.warn(note, stacklevel=stacklevel + 1)


def skipped_message(skipped, shown=3):
    """One line about the files `readable_images` (or a decode) skipped, naming a few.

    Args:
        skipped: a list of paths or of (path, reason).
        shown: how many file names the line names.

    Returns:
        e.g. `"skipped 1 unreadable image: bad.png"`; names are file names (with their path
        when two skipped files share a name), printable in any UTF-8 terminal.
    """
    paths = [p[0] if isinstance(p, (tuple, list)) else p for p in skipped]
    names = [os.path.basename(os.fspath(p)) for p in paths]
    if len(set(names)) < len(names):
        names = [os.fspath(p) for p in paths]
    listed = ", ".join(fileio.printable_path(n) for n in names[:shown])
    more = ", ..." if len(names) > shown else ""
    noun = "image" if len(names) == 1 else "images"
    return f"skipped {len(names)} unreadable {noun}: {listed}{more}"
