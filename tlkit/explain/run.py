"""`explain_path`, the library side of `tlkit explain`: a saved model and images in, PNGs out.

Files and models come from the data layer and `tlkit.deploy.saving`: `tlkit.data.listing` lists the
images and skips the unreadable ones (`readable_images`, as `tlkit predict` does),
`tlkit.data.decode.read_image` decodes them as training did, and `tlkit.deploy.saving` loads the
model and its metadata.

Example:
    >>> explain_path("saved_models/pets.h5", "photos/", "gradcam")   # doctest: +SKIP
    ['saved_models/pets_explain/cat1_gradcam_cat.png', ...]
"""

from pathlib import Path

import numpy as np

from tlkit.core.errors import TlkitError, check_choice, suggest
from tlkit.data import decode, listing
from tlkit.deploy import saving
from tlkit.explain import cam as cam_lib
from tlkit.explain.cam import GradCam, check_index
from tlkit.explain.figures import safe_name, save_feature_maps, save_filter_grid, save_gradcam
from tlkit.explain.filters import first_conv
from tlkit.explain.layers import default_layers
from tlkit.explain.taps import FeatureMaps

METHODS = ("gradcam", "feature-maps", "filters")


def read_class_names(path):
    """Class names from a tlkit model file's metadata, or None when it has none.

    Args:
        path: a model file (any format; only tlkit `.h5` files carry metadata).

    Returns:
        A list of str, or None.
    """
    try:
        names = saving.read_metadata(path).get("class_names")
    except (TlkitError, ValueError, AttributeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def load_image(path, input_shape, resize="squash"):
    """Read an image file as raw pixels at the model's input size.

    Decoded as tlkit's data pipeline does (`tlkit.data.decode.read_image`: EXIF orientation,
    any mode converted to grayscale or RGB, resized to (height, width)); values stay 0..255.

    Args:
        path: image file (anything Pillow reads).
        input_shape: (height, width, channels) with channels 1 or 3.
        resize: `"squash"`, `"crop"` or `"pad"` (the mode the model's metadata records).

    Returns:
        float32 array (height, width, channels).
    """
    h, w, c = _check_input(input_shape)
    x = decode.read_image(str(path), image_size=(h, w), channels=c, resize=resize)
    return x.astype("float32").reshape(h, w, c)


def _check_input(input_shape):
    h, w, c = (int(d) for d in input_shape)
    if c not in (1, 3):
        raise TlkitError(f"Only 1- or 3-channel models can read image files. "
                         f"Received: input_shape={tuple(input_shape)}.")
    return h, w, c


def class_index(class_name, class_names, n):
    """The output index named by `class_name`: a metadata name, or an int / digit string.

    Raises:
        TlkitError: with close matches, for a name the model does not have.
    """
    if class_name is None:
        return None
    if class_names and str(class_name) in class_names:
        return class_names.index(str(class_name))
    if isinstance(class_name, (int, np.integer)) or str(class_name).lstrip("-").isdigit():
        return check_index(int(class_name), n)
    if class_names:
        raise suggest(class_name, class_names, "class name")
    raise TlkitError(f"Unknown class name {class_name!r}: the model has no class names in its "
                     f"metadata; give an index in 0..{n - 1}.")


def explain_path(model_path, inputs=None, method="gradcam", layer=None, class_name=None,
                 out_dir=None, alpha=0.4, on_bad_image="skip", skipped=None):
    """Load a saved model and write explanation PNGs for images.

    Everything is checked before anything is written: the method, the output folder, the
    model, every image's header, the layer and the class. An unreadable image in a folder
    is skipped and counted (appended to `skipped`), as `tlkit predict` does; with
    `on_bad_image="error"`, or when it is the only image given, it stops the run. Each PNG
    is written to a temp file beside it and renamed, so no half-written file is left behind.

    Files written (names sanitized: "/" in a layer path becomes "-"):
        - `gradcam`: `<image-stem>_gradcam_<class>.png` per image: the original and the
          overlay side by side (at least 224 px), with the class, its probability and a
          colorbar; `<class>` is the class name from the metadata, else the index.
        - `feature-maps`: `<image-stem>_<layer>_maps.png` per image and layer (`layer`, else
          `default_layers(model)`), titled, each tile with its channel index.
        - `filters`: `<model-stem>_filters.png` (images are not needed).

    Args:
        model_path: a saved model (`.h5` with tlkit metadata, `.h5`, or `.keras`).
        inputs: an image file, a folder of images, or a list of them (not used by `filters`).
        method: one of `METHODS`.
        layer: a name from `conv_layers(model)`; default: the last conv output (Grad-CAM, see
            `gradcam`) or `default_layers(model)` (feature maps).
        class_name: Grad-CAM class: a class name from the metadata or an index; default the
            predicted class of each image.
        out_dir: output folder; default `<model-stem>_explain` beside the model.
        alpha: Grad-CAM overlay weight, in [0, 1].
        on_bad_image: `"skip"` or `"error"` (see `tlkit.data.listing.readable_images`).
        skipped: a list that receives the skipped files as (path, reason).

    Returns:
        The written paths.
    """
    check_choice("method", method, METHODS)
    if method == "gradcam":
        cam_lib.require_backend()
    if not 0.0 <= alpha <= 1.0:
        raise TlkitError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}.")
    model_path = Path(model_path)
    out_dir = Path(model_path.parent / f"{model_path.stem}_explain"
                   if out_dir is None else out_dir)
    made = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        saving.check_folder_writable(out_dir, "--out")
        return _explain(model_path, inputs, method, layer, class_name, out_dir, alpha,
                        on_bad_image, [] if skipped is None else skipped)
    except BaseException:
        for folder in made:  # an error leaves no empty output folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _explain(model_path, inputs, method, layer, class_name, out_dir, alpha, on_bad_image,
             skipped):
    check_choice("on_bad_image", on_bad_image, ("skip", "error"))  # before the model loads
    model, meta = saving.load(model_path)

    if method == "filters":
        conv = first_conv(model)
        return [save_filter_grid(np.asarray(conv.kernel, "float32"),
                                 out_dir / f"{safe_name(model_path.stem)}_filters.png",
                                 layer=conv.name)]

    if inputs is None:
        raise TlkitError(f"--method {method} needs images: give an image file or a folder.")
    input_shape = tuple(model.inputs[0].shape[1:])
    _check_input(input_shape)
    # Headers only: with on_bad_image="error" a bad file stops the run before anything is
    # written. Then one image at a time: a folder of any size needs the memory of one image.
    readable = listing.readable_images(inputs, on_bad_image, skipped)
    listing.warn_small_images(readable, input_shape[:2], stacklevel=3)
    files = [Path(p) for p, _ in readable]

    resize = decode.recorded_resize(meta, str(model_path)) or decode.DEFAULT_RESIZE
    images = _read_images(files, input_shape, on_bad_image, skipped, resize)
    if method == "gradcam":
        return _gradcam_files(model, meta, images, layer, class_name, out_dir, alpha)
    maps = FeatureMaps(model, default_layers(model) if layer is None else [layer])
    written = []
    for path, x in images:
        written.extend(save_feature_maps(maps(x), out_dir, path.stem))
    return written


def _read_images(files, input_shape, on_bad_image, skipped, resize="squash"):
    """(path, pixels) per file; a file that fails to decode after its header was read is
    skipped and counted as well (or raises, see `explain_path`)."""
    for path in files:
        try:
            x = load_image(path, input_shape, resize)
        except TlkitError as e:
            if on_bad_image == "error" or len(files) == 1:
                raise
            skipped.append((str(path), str(e)))
            continue
        yield path, x


def _gradcam_files(model, meta, images, layer, class_name, out_dir, alpha):
    cam = GradCam(model, layer)
    names = meta.get("class_names")
    names = [str(n) for n in names] if isinstance(names, list) else None
    if names and len(names) != cam.num_classes:
        names = None
    index = class_index(class_name, names, cam.num_classes)
    written = []
    for path, x in images:
        heatmap, k, probs = cam(x, index)
        label = names[k] if names else str(k)
        top = int(np.argmax(probs))
        predicted = (names[top] if names else str(top), probs[top])
        written.append(save_gradcam(x, heatmap, out_dir / f"{safe_name(path.stem)}_gradcam_"
                                                         f"{safe_name(label)}.png", alpha,
                                    label=label, probability=probs[k], layer=cam.layer,
                                    predicted=predicted))
    return written
