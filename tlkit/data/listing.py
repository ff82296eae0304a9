"""Listing image files: a file, a folder of images (recursively), or a list of both.

This is the listing for commands that take images to look at rather than a labelled data set
(`tlkit explain`, `tlkit export --sample`, `tlkit predict`); `tlkit.data.folder.scan` lists
labelled class folders.

Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "sub"))
    >>> for name in ("b.png", "sub/a.jpg", ".hidden.png", "notes.txt"):
    ...     Image.new("RGB", (4, 4)).save(os.path.join(d, name), format="PNG")
    >>> [str(p.relative_to(d)) for p in image_files(d)]
    ['b.png', 'sub/a.jpg']
"""

import os
from pathlib import Path

from tlkit.data.decode import IMAGE_EXTENSIONS
from tlkit.errors import TlkitError


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
