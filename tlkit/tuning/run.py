"""`tune()`: one search into an output folder, resumable, with the best model saved."""

import dataclasses
import datetime
import json
import pathlib
import shutil

import keras

from tlkit import data as data_lib
from tlkit.calibrate import run as calibrate_lib
from tlkit.core import compat, fileio
from tlkit.core.errors import TlkitError
from tlkit.core.logs import quiet_tf_logs
from tlkit.data.decode import _size
from tlkit.models import zoo
from tlkit.training import precision as precision_lib
from tlkit.tuning.auto import _load_data, auto_strategy
from tlkit.tuning.constants import (
    MODEL_FILE, OBJECTIVES, OWNERS_FILE, PROJECT, REPORT_FILES, SETTINGS_FILE, ZOO_PREFIX,
)
from tlkit.tuning.distributed import (
    _check_same_space, _kerastuner_env, distributed_role, serve_oracle, wait_for_chief,
)
from tlkit.core.version import __version__
from tlkit.data import data_folder
from tlkit.evaluation import model_card
from tlkit.models.backbones.builders import resolve_input_shape
from tlkit.tuning.backbone_hypermodel import BackboneHyperModel
from tlkit.tuning.hypermodel import BestCheckpoint
from tlkit.tuning.reports import format_table, trials_table, write_reports
from tlkit.tuning.search import check_tuner_args, make_tuner
from tlkit.tuning.zoo_hypermodel import ZooHyperModel
from tlkit.workflows import finish


@dataclasses.dataclass
class TuneResult:
    """What `tune` returns.

    Attributes:
        trials: one dict per trial (trial, status, score, seconds, tuner_id, metrics,
            hyperparameters), in trial order.
        best_hyperparameters: the best trial's values (empty on a worker).
        best_score: its objective value; best_trial: its id.
        best_model: the deployable best model (None on a worker).
        metrics: the best model's test-split report (accuracy, macro F1, ...).
        paths: files written (out, settings, tuner, trials_json, trials_csv, plot, model).
        role: "single", "chief" or "worker".
        ran: ids of the trials this process ran in this call (a resumed search skips the
            finished ones).
        tuner, hypermodel: the KerasTuner tuner and the hypermodel.
        dataset: the `tlkit.data.Dataset` searched on (at the model's input shape).
    """

    trials: list
    best_hyperparameters: dict
    best_score: float
    best_trial: str
    best_model: object
    metrics: dict
    paths: dict
    role: str
    ran: list
    tuner: object = None
    hypermodel: object = None
    dataset: object = None


def tune(data, *, out, model=None, backbone=None, strategy=None, weights="imagenet",
         image_size=None, tuner="random", max_trials=10, epochs=3, objective="val_accuracy",
         fix=None, space=None, batch_size=32, seed=0, cache_features=True, pooling="avg",
         factor=3, retrain=False, overwrite=False, distributed=False, tuner_id=None,
         oracle=None, connect_timeout=60.0, val_fraction=0.1, test_fraction=0.1,
         on_bad_image="skip", resize="squash", download=False, index=None, exclude=None,
         relabel=None, autotune=False, callbacks=(), calibrate=None, coverage=0.95,
         precision="auto", verbose=1):
    """Search hyperparameters with KerasTuner and save the best model as a deployable `.h5`.

    Args:
        data: a `tlkit.data.load` source string or a loaded `tlkit.data.Dataset`.
        out: the run folder (`saved_models/RUN/`): `search.json` (the settings),
            `tuner/` (KerasTuner's state), `trials.json`, `trials.csv`, `trials.png`,
            `best.h5` and `report/` (the best model on the test split).
        model: `"zoo:NAME"` for a from-scratch zoo model (`ZooHyperModel`), or
        backbone: a backbone name for a pretrained base under `strategy` (default
            `small-similar`; `BackboneHyperModel`). Give exactly one of the two.
        weights: the backbone's weights (`"imagenet"`, None or a file).
        image_size: input size instead of the model's default.
        tuner: `"random"`, `"hyperband"` or `"bayesian"`.
        max_trials: the most trials (>= 1).
        epochs: epochs per trial (Hyperband: the largest budget).
        objective: `val_accuracy`, `val_loss`, `accuracy` or `loss`.
        fix, space: `parse_fix` / `parse_space` items (`["dropout=0.3"]`, `["bn=before,after"]`).
        batch_size, seed: training batch size; the seed of splits, initialisation, shuffling
            and the oracle.
        cache_features: share the frozen base's features between trials (backbones).
        pooling: the backbone head's pooling.
        factor: Hyperband's reduction factor.
        retrain: train the best hyperparameters again instead of keeping the best trial's
            weights (done anyway when the weights are not here, e.g. on another machine).
        overwrite: delete a previous search in `out` and start over. Without it a search with
            the same settings resumes and one with different settings is refused.
        distributed: take part in a distributed search (role and chief address from
            `tuner_id` / `oracle` or the KERASTUNER_* variables, which also turn it on).
        tuner_id: `"chief"` or a worker id.
        oracle: the chief's `"HOST:PORT"`.
        connect_timeout: seconds a worker waits for the chief.
        val_fraction, test_fraction, on_bad_image, resize, download, index, exclude, relabel: see
            `tlkit.data.load`.
        autotune: tf.data autotuning (off: fixed prefetch, no stalls on 2 cores).
        callbacks: extra Keras callbacks for every trial.
        calibrate, coverage: temperature scaling and the unknown threshold of the best model
            (`tlkit.finetune`'s; None: temperature when the validation split has 20+ images).
        precision: the dtype policy of every trial (`tlkit.training.precision`: `auto`
            decides once per search, with a cached probe); the best model is saved in
            float32.
        verbose: 1 prints a line per trial; 2 also the Keras epochs; 0 is silent.

    Returns:
        A `TuneResult`.

    Raises:
        TlkitError: a user mistake (names, values, settings that differ from the search
            already in `out`, an unreachable chief). Nothing is written before the
            settings are validated.
    """
    # 1. Settings that need nothing loaded, then the hypermodel and its overrides.
    check_tuner_args(tuner, objective, max_trials, epochs)
    if calibrate is not None:
        calibrate_lib.check_method(calibrate)
    calibrate_lib.check_coverage(coverage)
    precision_lib.check(precision)
    role, tuner_id, host, port = distributed_role(tuner_id, oracle)
    if distributed and role == "single":
        raise TlkitError("--distributed needs the role and the chief's address: --tuner-id "
                         "chief|tuner0|... and --oracle HOST:PORT, or KERASTUNER_TUNER_ID, "
                         "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT.")
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise TlkitError(f"--out {out} is a file; give a folder (e.g. saved_models/run1/).")

    fileio.check_outside(out, data_folder(data), "--out")
    advice = None
    if strategy == "auto":
        data, strategy, space, advice = auto_strategy(
            data, backbone, weights, image_size, batch_size, seed, space, fix,
            dict(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                 on_bad_image=on_bad_image, resize=resize, download=download, index=index,
                 exclude=exclude, relabel=relabel), verbose)
    hm = make_hypermodel(model=model, backbone=backbone, strategy=strategy, weights=weights,
                         image_size=image_size, pooling=pooling, cache_features=cache_features,
                         fix=fix, space=space, epochs=epochs, batch_size=batch_size, seed=seed,
                         autotune=autotune, fit_verbose=2 if verbose >= 2 else 0)
    if role == "worker":
        wait_for_chief(host, port, connect_timeout)

    # 2. The data.
    dataset = _load_data(data, hm.input_shape, model or backbone, val_fraction=val_fraction,
                         test_fraction=test_fraction, seed=seed, on_bad_image=on_bad_image,
                         resize=resize, download=download, index=index, exclude=exclude,
                         relabel=relabel)
    hm.set_data(dataset)
    # one decision for the whole search (every trial trains alike), made before any trial
    chosen = precision_lib.resolve(precision, trains_base=hm.trains_base,
                                   model=hm.probe_model(), batch_size=batch_size,
                                   distributed=distributed, verbose=verbose)
    hm.set_precision(chosen.policy)
    calibrate, calibrate_note = calibrate_lib.resolve_method(calibrate, len(dataset.y_val))
    if calibrate_note and verbose:
        print(f"tlkit: {calibrate_note}")

    # 3. The run folder: same search -> resume, different -> refuse, --overwrite -> restart.
    settings = {"data": _data_id(data, dataset), **hm.describe(), "tuner": tuner,
                "objective": objective, "epochs": epochs, "batch_size": batch_size,
                "seed": seed, "fix": hm.fixed, "space": hm.narrowed,
                "val_fraction": val_fraction, "test_fraction": test_fraction,
                "precision": precision}
    if tuner == "hyperband":
        settings["factor"] = factor
    settings = json.loads(json.dumps(settings, default=fileio.json_default))
    _prepare_out(out, settings, overwrite=overwrite and role != "worker", role=role)
    if advice is not None and role != "worker":  # what auto measured and why it chose
        fileio.write_json(advice.to_dict(), out / "advice.json")

    # 4. The search.
    paths = {"out": str(out), "settings": str(out / SETTINGS_FILE), "tuner": str(out / PROJECT)}
    # A search builds a new model per trial, so every trial traces new functions by design:
    # TensorFlow's retracing warning is kept out of the progress lines (also while the best
    # model is evaluated).
    with _kerastuner_env(role, tuner_id, host, port), quiet_tf_logs():
        t = make_tuner(hm, tuner=tuner, objective=objective, max_trials=max_trials,
                       epochs=epochs, directory=out, seed=seed, factor=factor,
                       verbose=1 if verbose else 0)
        owners = _read_owners(out)
        done = [tr for tr in t.oracle.trials.values() if tr.status == "COMPLETED"] \
            if role != "worker" else []
        if verbose and done:
            print(f"tlkit tune: resuming the search in {out}: {len(done)} trial(s) done, "
                  f"up to {max_trials} in all.")
        if role == "chief":
            if verbose:
                print(f"tlkit tune: chief serving the search on {host}:{port}; start workers "
                      f"with KERASTUNER_TUNER_ID=tuner0, tuner1, ...")
            t.save()
            serve_oracle(t, host, port, verbose=verbose, owners=owners)
            _write_owners(out, owners)
        else:
            if role == "worker":
                _check_same_space(t, host, port)
            try:
                t.search(epochs=epochs, callbacks=list(callbacks))
            except Exception as e:  # noqa: BLE001 - gRPC errors become one line
                if role == "worker" and type(e).__module__.startswith("grpc"):
                    raise TlkitError(f"Lost the tuning chief at {host}:{port}: "
                                     f"{getattr(e, 'details', lambda: e)()}") from None
                raise
            finally:
                owners.update(t.tlkit_owners)
                if role == "single":
                    _write_owners(out, owners)
        if role == "worker":
            if verbose:
                print(f"tlkit tune: worker {tuner_id} ran {len(t.tlkit_ran)} trial(s): "
                      f"{', '.join(t.tlkit_ran) or 'none'}")
            return TuneResult([], {}, None, None, None, {}, paths, role, list(t.tlkit_ran),
                              t, hm, dataset)

        # 5. Results, the best model, the files.
        rows = trials_table(t.oracle, owners, order=list(hm.tunables()))
        best = t.oracle.get_best_trials(1)
        if not best or best[0].status != "COMPLETED":
            first = next((tr.message for tr in t.oracle.trials.values() if tr.message), "")
            raise TlkitError("No trial completed" + (f"; the first failure: "
                             f"{first.strip().splitlines()[-1]}" if first else "."))
        best = best[0]
        values = next(r["hyperparameters"] for r in rows if r["trial"] == best.trial_id)
        best_model, how = _best_model(t, hm, best, retrain, verbose)

    with quiet_tf_logs():
        rep, cal = finish.evaluate_and_calibrate(best_model, dataset, out / "report",
                                                 batch_size=batch_size,
                                                 calibration=(calibrate, coverage))
    if cal:
        finish.write_report(rep, out / "report")
    test_metrics = finish.test_metrics(rep)
    summary = {"objective": {"name": objective, "direction": OBJECTIVES[objective]},
               "tuner": tuner, "best": {"trial": best.trial_id, "score": best.score,
                                        "hyperparameters": values, "model": how},
               "precision": chosen.to_dict(),
               "test": test_metrics, "trials": rows}
    paths.update(write_reports(out, summary, hm))
    known = {"class_names": dataset.class_names, **hm.describe(), "hyperparameters": values,
             "tuning": {"tuner": tuner, "objective": objective, "score": best.score,
                        "trial": best.trial_id, "trials": len(rows), "epochs": epochs,
                        "best_model": how},
             "data": dataset.summary()}
    saved, card = finish.save(best_model, out / MODEL_FILE, rep, known,
                              card=out / "report" / model_card.FILENAME)
    paths["model"], paths["model_card"] = str(saved), str(card)
    if verbose:
        print(format_table(rows, objective))
        print(f"best trial {best.trial_id}: {objective} {best.score:.4f}; test accuracy "
              f"{test_metrics['accuracy']:.4f}; saved {paths['model']}")
    return TuneResult(rows, values, best.score, best.trial_id, best_model, test_metrics, paths,
                      role, list(t.tlkit_ran), t, hm, dataset)


def make_hypermodel(*, model=None, backbone=None, strategy=None, weights="imagenet",
                    image_size=None, pooling="avg", cache_features=True, fix=None, space=None,
                    epochs=3, batch_size=32, seed=0, autotune=False, fit_verbose=0):
    """The hypermodel `tune` searches, with `fix` / `space` applied (no data needed).

    Args:
        model: `"zoo:NAME"` for a `ZooHyperModel`, or
        backbone: a backbone name for a `BackboneHyperModel` under `strategy` (default
            `small-similar`). Exactly one of the two.
        weights, image_size, pooling, cache_features: see `tune`.
        fix, space: `parse_fix` / `parse_space` items.
        epochs, batch_size, seed, autotune, fit_verbose: see `TlkitHyperModel`.

    Returns:
        A `ZooHyperModel` or `BackboneHyperModel` (attach data with `set_data`).

    Example:
        >>> hm = make_hypermodel(model="zoo:fashion_cnn", image_size=16, fix=["bn=before"])
        >>> hm.fixed
        {'block1_bn': 'before', 'block2_bn': 'before'}
    """
    if (model is None) == (backbone is None):
        raise TlkitError("Give exactly one of --model zoo:NAME (a from-scratch zoo model) or "
                         "--backbone NAME (a pretrained base under --strategy).")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise TlkitError(f"batch_size must be a positive int. Received: {batch_size!r}.")
    common = dict(epochs=epochs, batch_size=batch_size, seed=seed, autotune=autotune,
                  fit_verbose=fit_verbose)
    if model is not None:
        if not str(model).startswith(ZOO_PREFIX):
            raise TlkitError(f"--model takes zoo:NAME (e.g. zoo:fashion_cnn; names: "
                             f"{', '.join(zoo.names())}); for a pretrained base use "
                             f"--backbone. Received: {model!r}.")
        if strategy is not None:
            raise TlkitError("--strategy applies to --backbone, not to --model zoo:NAME.")
        entry = zoo.entry(model[len(ZOO_PREFIX):])
        shape = entry.input_shape if image_size is None else (
            *_size(image_size), entry.input_shape[2])
        hm = ZooHyperModel(entry.name, shape, **common)
    else:
        hm = BackboneHyperModel(backbone, strategy or "small-similar",
                                resolve_input_shape(backbone, image_size), weights=weights,
                                pooling=pooling, cache_features=cache_features, **common)
    return hm.override(fix=fix, space=space)


def _data_id(data, dataset):
    if isinstance(data, data_lib.Dataset):
        s = dataset.summary()
        return {"source": s["source"], "counts": s["counts"], "classes": s["class_names"]}
    return str(data)


def _prepare_out(out, settings, *, overwrite, role):
    """Check `out` against the settings; remove an old search on overwrite; write settings."""
    settings_path = out / SETTINGS_FILE
    project = out / PROJECT
    if overwrite:
        for name in (SETTINGS_FILE, PROJECT) + REPORT_FILES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif settings_path.exists():
        try:
            old = json.loads(settings_path.read_text())["search"]
        except (ValueError, KeyError, TypeError):
            raise TlkitError(f"{settings_path} is unreadable; pass --overwrite to start the "
                             f"search over.") from None
        diff = [f"{k}: {json.dumps(old.get(k))} -> {json.dumps(settings.get(k))}"
                for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if diff:
            shown = "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "")
            raise TlkitError(f"{out} holds a different search ({shown}). Pass --overwrite to "
                             f"start over there, or choose another --out.")
        return
    elif project.is_dir() and any(project.iterdir()) and role != "worker":
        raise TlkitError(f"{project} holds a tuner directory without {SETTINGS_FILE}, so "
                         f"tlkit cannot tell which search it is. Pass --overwrite to start "
                         f"over, or choose another --out.")
    if role == "worker":
        return  # only the chief (or a single process) owns the settings file
    out.mkdir(parents=True, exist_ok=True)

    fileio.write_json({"tlkit_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "search": settings}, settings_path)


def _read_owners(out):
    path = out / PROJECT / OWNERS_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _write_owners(out, owners):
    fileio.write_json(owners, out / PROJECT / OWNERS_FILE)


def _best_model(tuner, hm, best, retrain, verbose):
    """(deployable model, "kept" | "retrained") for the best trial."""
    values = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
    checkpoint = pathlib.Path(compat.trial_checkpoint(tuner, best.trial_id))
    if not retrain and checkpoint.is_file():
        keras.backend.clear_session()
        # Loaded into an uncompiled model: the file also holds the trial's optimizer state
        # (of whichever phase was last compiled), which a deployed model does not need.
        trained = hm.build(best.hyperparameters.copy(), compile=False)
        trained.load_weights(checkpoint)
        return hm.deployable(hm.compile_model(trained, values), values), "kept"
    if verbose:
        why = "as asked" if retrain else "its weights are not in this folder"
        print(f"tlkit tune: retraining the best hyperparameters ({why})")
    hm.prepare()
    keras.backend.clear_session()
    hp = best.hyperparameters.copy()
    model = hm.build(hp)
    keep = BestCheckpoint(model, tuner.oracle.objective)
    hm.fit(hp, model, epochs=hm.epochs, callbacks=[keep])
    keep.restore()
    return hm.deployable(model, values), "retrained"
