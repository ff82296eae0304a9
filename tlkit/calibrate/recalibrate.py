"""`tlkit calibrate MODEL --data SRC`: fit T and the unknown threshold for a saved model.

The validation and test splits are the run's (the index.json in the model's report folder,
as `tlkit evaluate` finds it; or `--index`; array sources are split again by the seed), and
the model file's metadata is rewritten atomically (`tlkit.deploy.saving.write_metadata`).
"""

import pathlib

from tlkit.calibrate import run as run_lib
from tlkit.core.errors import TlkitError
from tlkit.deploy import artifacts, saving
from tlkit.evaluation import predict


def recalibrate(model_path, source, *, coverage=run_lib.DEFAULT_COVERAGE, index=None, seed=0,
                out_dir=None, batch_size=64, verbose=0):
    """Calibrate the `.h5`/`.keras` model at `model_path` on `source`'s validation split.

    Args:
        model_path: a tlkit `.h5` or `.keras` model file (its metadata is rewritten).
        source: the data it was trained on (any `tlkit.data.load` source).
        coverage: the share of known validation images the unknown threshold keeps.
        index: the run's index.json (default: the one beside the model, for a folder).
        seed: the split seed of the run, when there is no index.
        out_dir: where reliability.png goes (default: the model's report folder, when it
            exists).
        batch_size: prediction batch size.
        verbose: 1 prints a summary line.

    Returns:
        The calibration dict (`tlkit.calibrate.run`), also in the model's metadata.

    Raises:
        TlkitError: a coverage outside (0, 1], a model that is not `.h5`/`.keras`, or a
            validation split of fewer than `MIN_VAL_IMAGES` images. Nothing is written then.
    """
    run_lib.check_coverage(coverage)
    path = pathlib.Path(model_path)
    if artifacts.kind_of(path) != "keras":
        raise TlkitError(f"tlkit calibrate rewrites the metadata of a .h5 or .keras model; "
                         f"{path} is not one (calibrate the model it was exported from, then "
                         f"export again).")
    saving.check_writable(path, what="MODEL")
    model = artifacts.load(path)
    ds, _ = predict.load_run_data(model, path, source, index=index, seed=seed)
    names = model.class_names if model.has_class_names else None
    if names and list(names) != list(ds.class_names):
        raise TlkitError(f"Data {source} has classes {', '.join(ds.class_names[:10])}; the "
                         f"model {path} knows {', '.join(names[:10])}.")
    run_lib.check_val_size(len(ds.y_val), f"the validation split of {source}")
    if out_dir is None and path.with_suffix("").is_dir():
        out_dir = path.with_suffix("")
    cal = run_lib.calibrate_model(model.model, ds, out_dir=out_dir, coverage=coverage,
                                  batch_size=batch_size)
    cal.pop("files", None)
    meta = dict(model.metadata)
    meta["calibration"] = cal
    saving.write_metadata(path, meta)
    if verbose:
        print(f"calibration: T = {cal['temperature']:.3f}; test ECE {cal['ece_before']:.2%} "
              f"-> {cal['ece_after']:.2%}; unknown above {cal['unknown']['threshold']:.4g}")
    return cal
