"""`tlkit.finetune`: data -> backbone -> strategy plan -> fit -> report -> `.h5`, in one call.

This is what `tlkit finetune` runs; every step is also a public function of its own module.

Example:
    >>> import tlkit
    >>> result = tlkit.finetune(data="digits", backbone="mobilenet_v2", weights=None,
    ...                         strategy="small-similar", epochs=2, image_size=32, verbose=0)
    >>> 0.0 <= result.report["accuracy"] <= 1.0
    True
"""

import contextlib
import dataclasses
import pathlib
import warnings

import keras

from tlkit import advise as advise_lib
from tlkit import data as data_lib
from tlkit.calibrate import run as calibrate_lib
from tlkit.config import settings as settings_lib
from tlkit.config.settings import CALIBRATION, DATA, MODEL, OUTPUT, RECIPE, RUN
from tlkit.core import fileio
from tlkit.core.errors import TlkitError, suggest
from tlkit.data import data_folder
from tlkit.data import index as index_lib
from tlkit.deploy import saving
from tlkit.evaluation import model_card
from tlkit.evaluation import report as report_lib
from tlkit.models import backbones as backbones_lib
from tlkit.models.backbones.builders import resolve_input_shape
from tlkit.training import distribute as distribute_lib
from tlkit.training import lr_sweep as lr_find_lib
from tlkit.training import precision as precision_lib
from tlkit.training import runs, strategies, train, train_settings
from tlkit.workflows import checks, finish


@dataclasses.dataclass
class FinetuneResult:
    """The trained model, its merged history, its test report, the plan and the saved path."""

    model: object
    history: dict
    report: dict
    plan: object
    dataset: object
    path: pathlib.Path = None


def finetune(data, backbone=MODEL.backbone, strategy=MODEL.strategy, *, epochs=RUN.epochs,
             weights=MODEL.weights, image_size=DATA.image_size, out=OUTPUT.out,
             report_dir=OUTPUT.report_dir, batch_size=RUN.batch_size,
             learning_rate=RUN.learning_rate, fine_tune_lr=RUN.fine_tune_lr,
             head_epochs=RUN.head_epochs, unfreeze=MODEL.unfreeze, cut_stage=MODEL.cut_stage,
             dropout=MODEL.dropout, dense=MODEL.dense, head_bn=MODEL.head_bn,
             pooling=MODEL.pooling, augment=RUN.augment, augment_passes=RUN.augment_passes,
             cache_features=RUN.cache_features, seed=RUN.seed, val_fraction=DATA.val_fraction,
             test_fraction=DATA.test_fraction, on_bad_image=DATA.on_bad_image,
             download=DATA.download, index=DATA.index, exclude=DATA.exclude,
             relabel=DATA.relabel, autotune=RUN.autotune, patience=RUN.patience,
             tensorboard=RUN.tensorboard, cache_dir=RUN.cache_dir, distribute=RUN.distribute,
             jit_compile=RUN.jit_compile, precision=RUN.precision,
             resize=DATA.resize, image_cache=RUN.image_cache, restart=OUTPUT.restart,
             overwrite=OUTPUT.overwrite,
             deterministic=RUN.deterministic, schedule=RECIPE.schedule, warmup=RECIPE.warmup,
             lr_decay_per_stage=RECIPE.lr_decay_per_stage,
             label_smoothing=RECIPE.label_smoothing, class_weight=RECIPE.class_weight,
             mixup=RECIPE.mixup, cutmix=RECIPE.cutmix, head_solver=RECIPE.head_solver,
             calibrate=CALIBRATION.calibrate, coverage=CALIBRATION.coverage, verbose=1):
    """Fine-tune a pretrained backbone on `data` with one of the four strategies.

    Every default is a field default of `tlkit.config.settings` (`DATA`, `MODEL`, `RUN`, `RECIPE`,
    `OUTPUT`), the same dataclasses that build `tlkit finetune`'s flags.

    Args:
        data: a source string for `tlkit.data.load` (folder, `tfds:NAME`, `npz:PATH`,
            `fashion_mnist`, `digits`) or a loaded `tlkit.data.Dataset`.
        backbone: a `tlkit.models.backbones.names()` entry, `zoo:NAME`, or a saved `.h5` classifier.
        strategy: `small-similar`, `small-dissimilar`, `large-similar` or `large-dissimilar`.
        epochs: total epochs (two-phase strategies split them, see `strategies.plan`).
        weights: `"imagenet"`, None, or a local weights file.
        image_size: input size (int or (h, w)) instead of the backbone's default.
        out: `.h5` path to save the model to (None: not saved).
        report_dir: folder for report.json, PNGs, history.csv. Default: next to `out`, named
            after it (`saved_models/photos.h5` -> `saved_models/photos/`).
        batch_size, learning_rate, fine_tune_lr, head_epochs, unfreeze, cut_stage, dropout,
        dense, head_bn, pooling: see `tlkit.training.strategies.plan` and `tlkit.training.train.fit`.
        augment: default augmentation on/off, or a Keras layer.
        augment_passes, cache_features, autotune, patience, tensorboard, cache_dir: see
            `tlkit.training.train.fit`.
        distribute: None, `"mirrored"` (all GPUs of this machine) or `"multiworker"` (machines
            listed in `TF_CONFIG`; every worker runs the same call); see `tlkit.training.distribute`.
        jit_compile: XLA-compile the train step (off by default: slower on small CPUs).
        precision: `"auto"` (default), `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`:
            the policy the model trains under (`tlkit.training.precision`: auto takes
            mixed_float16 on GPUs with tensor cores, mixed_bfloat16 where a cached probe of
            this base on this CPU shows it faster, else float32); the softmax stays float32,
            and the returned and saved model is float32.
        seed: makes the split, the initialisation and the shuffling repeatable.
        val_fraction, test_fraction, on_bad_image, download, resize: see `tlkit.data.load`.
        index, exclude, relabel: an `index.json` that fixes the split (`tlkit audit
            --fix-splits` writes one), files to leave out (an audit.csv or a list of paths),
            and a `path,label` CSV of corrected labels (`tlkit.data.overrides`); recorded in
            the data summary of report.json and the model card.
        image_cache: keep decoded, resized training images in a tf.data file cache in the
            report folder (`image_cache/`), for phases that train on images from files:
            worth it when decoding costs more than reading the cache (large source images;
            bench/bench_data.py measures it). Off by default.
        deterministic: TensorFlow's op determinism (`enable_op_determinism`): the same seed
            gives the same weights on GPUs too, at some speed (CPU runs are deterministic
            already; see the README for the measured cost).
        restart: discard the saved state of an interrupted run in the report folder and start
            over (without it, the same call continues that run; a different one is refused).
        overwrite: replace a finished run in the report folder (and its model at `out`)
            that had other settings; without it that is refused (`tlkit.training.runs`).
        schedule: `"constant"`, `"cosine"` (warm-up in fine-tuning phases) or `"onecycle"`
            (`tlkit.training.schedules`); `warmup`: the share of a fine-tuning phase's steps `cosine`
            warms up over.
        lr_decay_per_stage: F in (0, 1]: in phases that train base stages, the k-th stage
            below the top one trains at LR x F**k (`tlkit.training.optimizers`).
        label_smoothing, mixup, cutmix: training targets (`tlkit.training.mixing`); training batches
            only, validation and test keep exact labels.
        class_weight: None, `"balanced"`, or {class name: weight} (or `"cat=2,dog=1"`);
            classes not named weigh 1 (`tlkit.training.class_weights`).
        head_solver: `"auto"` (default): a head phase on cached features under the default
            budget is solved in closed form (`tlkit.training.head_solver`: shrinkage LDA, scaled on
            val), where that applies; `"closed-form"` always (an error where it cannot
            apply); `"adam"`: gradient steps, as every phase with `epochs` given.
        calibrate: `"temperature"`: after training, fit one temperature T on the validation
            split and set the unknown threshold (`tlkit.calibrate`); the report's
            `calibration`, reliability.png and the model's metadata carry them. `"none"`:
            skip it. None (default): temperature when the validation split has at least
            `tlkit.calibrate.MIN_VAL_IMAGES` images, else none with a warning (an explicit
            `"temperature"` on a smaller split is refused before training).
        coverage: the share of known validation images the unknown threshold keeps, in
            (0, 1].
        learning_rate: a rate, or `"auto"`: `tlkit.lr_find` sweeps the first phase and its
            suggestion becomes the rate (recorded in the report as `lr_find`).
        verbose: 1 shows Keras progress bars, 2 one line per epoch, 0 is silent.

    The final model is the best val_loss checkpoint across the phases; the report's `best`
    says which phase and epoch (`tlkit.training.train.fit`).

    With a report folder (`out` or `report_dir`) the run holds a lock on it, backs up its
    state every epoch and resumes after an interruption (`tlkit.training.runs`). A NaN or infinite
    loss raises `tlkit.training.callbacks.DivergedError` and nothing is saved.

    Returns:
        A `FinetuneResult`.
    """
    given = locals()
    return run_finetune(*(_settings(cls, given) for cls in settings_lib.FINETUNE),
                        verbose=verbose)


def run_finetune(data_cfg, model_cfg, run_cfg, recipe, calibration, output, *, verbose=1):
    """`finetune` on typed settings: what the CLI calls with the dataclasses of its flags.

    Args:
        data_cfg: a `tlkit.config.settings.DataSettings` (the source in `data`, split, resize).
        model_cfg: a `ModelSettings` (backbone, weights, strategy, head).
        run_cfg: a `RunSettings` (epochs, rates, batches, caching, runtime).
        recipe: a `RecipeSettings` (schedule, regularisation, head solver); checked here as a
            `tlkit.training.train_settings.TrainSettings`.
        calibration: a `CalibrationSettings` (method, coverage).
        output: an `OutputSettings` (model path, report folder, restart, overwrite).
        verbose: as `finetune`'s.

    Returns:
        A `FinetuneResult`.
    """
    settings = _run_settings(data_cfg, model_cfg, run_cfg, recipe, calibration)
    report_dir, calibrate = output.report_dir, calibration.calibrate
    recipe = train_settings.TrainSettings(**settings_lib.as_dict(recipe))  # checked together
    checks.check_settings(epochs=run_cfg.epochs, batch_size=run_cfg.batch_size,
                          learning_rate=1e-3 if run_cfg.learning_rate == "auto" else
                          run_cfg.learning_rate, fine_tune_lr=run_cfg.fine_tune_lr,
                          patience=run_cfg.patience, augment_passes=run_cfg.augment_passes,
                          head_epochs=run_cfg.head_epochs, dropout=model_cfg.dropout)

    if calibrate is not None:
        calibrate_lib.check_method(calibrate)
    calibrate_lib.check_coverage(calibration.coverage)
    precision_lib.check(run_cfg.precision)
    path = saving.check_writable(output.out) if output.out is not None else None
    report_what = "--report-dir" if output.out is None else "the report folder of --out"
    if report_dir is None and path is not None:
        report_dir = path.with_suffix("")
    if report_dir is not None:  # validated before any data is read
        report_dir = saving.check_folder_writable(report_dir, report_what)
    data_root = data_folder(data_cfg.data)
    for what, where in (("--out", path), (report_what, report_dir),
                        ("--cache-dir", run_cfg.cache_dir)):
        fileio.check_outside(where, data_root, what)
    runs.check_finished(report_dir, settings, path, overwrite=output.overwrite)
    if model_cfg.strategy not in strategies.STRATEGIES + ("auto",):
        raise suggest(model_cfg.strategy, strategies.STRATEGIES + ("auto",), "strategy")
    if run_cfg.image_cache and report_dir is None:
        raise TlkitError("image_cache needs a report folder (--out or --report-dir) to hold "
                         "the cached images.")
    # Multi-worker collectives must be set up before TensorFlow runs its first op.
    dist = distribute_lib.get_strategy(run_cfg.distribute)
    if run_cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    input_shape = resolve_input_shape(model_cfg.backbone, data_cfg.image_size)
    # Everything that can fail on the user's input (the data, its splits, the backbone) is
    # checked before the run folder, its lock or its state exist (`tlkit.training.runs`).
    load = {} if isinstance(data_cfg.data, data_lib.Dataset) else dict(
        resize=data_cfg.resize, val_fraction=data_cfg.val_fraction,
        test_fraction=data_cfg.test_fraction, seed=run_cfg.seed,
        on_bad_image=data_cfg.on_bad_image, download=data_cfg.download, index=data_cfg.index,
        exclude=data_cfg.exclude, relabel=data_cfg.relabel, verbose=verbose)
    dataset = data_lib.load_for(data_cfg.data, input_shape, **load)
    split_notes = checks.check_splits(dataset)  # warned with the run's other notes
    channels = checks.channels_note(model_cfg.backbone, data_cfg.data, dataset, input_shape)
    if channels:
        split_notes = [*split_notes, channels]
    calibrate, note = calibrate_lib.resolve_method(calibrate, len(dataset.y_val))
    if note:
        split_notes = [*split_notes, note]
    keras.utils.set_random_seed(run_cfg.seed)  # before the first weights are made
    with dist.scope() if dist else contextlib.nullcontext():
        bb = backbones_lib.build(model_cfg.backbone, input_shape, weights=model_cfg.weights)
    folder = (runs.RunFolder(report_dir, settings, restart=output.restart, model_path=path)
              if report_dir is not None else contextlib.nullcontext())
    with folder as run:
        if run is not None and run.resuming and verbose:
            print(f"tlkit: continuing the interrupted run in {report_dir} (--restart starts "
                  f"over)")
        if run is not None:
            run.begin()
        if report_dir is not None and dataset.streams and dataset.origin:
            index_lib.save(dataset, pathlib.Path(report_dir) / index_lib.FILENAME)
        try:
            result = _finetune_on(dataset, bb, model_cfg, run_cfg, recipe, dist, path,
                                  report_dir, run, verbose, split_notes,
                                  calibration=(calibrate, calibration.coverage))
        except KeyboardInterrupt:
            if run is not None and run.has_progress():
                raise runs.Interrupted(
                    f"interrupted; the finished epochs are saved in {run.state}: run the same "
                    f"command again to continue (--restart starts over)") from None
            if run is not None:
                raise runs.Interrupted("interrupted before the first epoch ended; nothing "
                                       "was kept") from None
            raise
        if result.path is not None and report_dir is not None:
            model_card.write(result.path, result.report, settings=settings,
                             out=pathlib.Path(report_dir) / model_card.FILENAME)
        if run is not None:
            run.complete()
        return result


def _run_settings(data_cfg, *others):
    """What makes a run the same run (for resuming): every setting but output and verbosity."""
    out = {k: v for k, v in settings_lib.as_dict(data_cfg, *others).items() if k != "data"}
    data = data_cfg.data
    out["data"] = ({"source": data.source, "counts": data.summary()["counts"]}
                   if isinstance(data, data_lib.Dataset) else str(data))
    return out


def _settings(cls, given):
    """A settings dataclass from `finetune`'s arguments (the fields are its parameters)."""
    return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})


def _finetune_on(dataset, bb, model_cfg, run_cfg, recipe, dist, path, report_dir, run,
                 verbose, split_notes=(), calibration=("none", None)):
    """Plan, fit, report, calibrate and save: the run inside its folder (`run`, or None)."""
    backbone, weights, strategy = model_cfg.backbone, model_cfg.weights, model_cfg.strategy
    batch_size = run_cfg.batch_size
    # strategies.plan's and train.fit's keyword arguments, read from the typed settings
    plan_options = dict(epochs=run_cfg.epochs, learning_rate=run_cfg.learning_rate,
                        fine_tune_lr=run_cfg.fine_tune_lr, head_epochs=run_cfg.head_epochs,
                        unfreeze=model_cfg.unfreeze, cut_stage=model_cfg.cut_stage,
                        dropout=model_cfg.dropout, dense=model_cfg.dense,
                        head_bn=model_cfg.head_bn, pooling=model_cfg.pooling)
    fit_options = dict(batch_size=batch_size, cache_features=run_cfg.cache_features,
                       augment=run_cfg.augment, augment_passes=run_cfg.augment_passes,
                       seed=run_cfg.seed, autotune=run_cfg.autotune, patience=run_cfg.patience,
                       tensorboard=run_cfg.tensorboard, cache_dir=run_cfg.cache_dir,
                       jit_compile=run_cfg.jit_compile, run=run, settings=recipe,
                       image_cache=(pathlib.Path(report_dir) / "image_cache"
                                    if run_cfg.image_cache else None))
    advice = None
    with dist.scope() if dist else contextlib.nullcontext():
        if strategy == "auto":
            strategy, advice = _auto(bb, dataset, plan_options, fit_options, verbose)
        auto_lr = plan_options["learning_rate"] == "auto"
        if auto_lr:
            plan_options["learning_rate"] = 1e-3  # replaced by the sweep's suggestion below
        plan_options["pretrained"] = checks.pretrained_base(weights, backbone)
        plan = strategies.plan(strategy, bb, dataset.summary(), **plan_options)
        precision = precision_lib.resolve(
            run_cfg.precision, trains_base=any(ph.train_stages for ph in plan.phases),
            model=bb.model, batch_size=batch_size, distributed=dist is not None, run=run,
            verbose=verbose)
        if precision.policy != "float32":  # the base's layers compute under the policy too
            bb = dataclasses.replace(bb, model=precision_lib.with_policy(bb.model,
                                                                         precision.policy))
            plan = strategies.plan(strategy, bb, dataset.summary(), **plan_options)
        with precision_lib.policy_scope(precision.policy):
            model = plan.build_model(dataset.num_classes)
    found = None
    if auto_lr:
        found = lr_find_lib.sweep(model, plan, dataset, batch_size=batch_size,
                                  seed=fit_options["seed"], autotune=fit_options["autotune"],
                                  out_dir=report_dir, verbose=verbose)
        plan_options["learning_rate"] = found.suggested_lr
        plan = strategies.plan(strategy, bb, dataset.summary(), **plan_options)
        if verbose:
            print(f"tlkit: --lr auto: {found.suggested_lr:.3g} ({found.rule})")
    if verbose:
        print(plan.describe())
        if dist:
            print(f"tlkit: {type(dist).__name__} with {dist.num_replicas_in_sync} replica(s); "
                  f"global batch {batch_size}; feature cache off")
    notes = [w for w in (checks.random_base_warning(weights, backbone, strategy),) if w]
    notes.extend(split_notes)
    for note in notes:
        warnings.warn(note, stacklevel=3)
    with distribute_lib.training_patches(model, dist):
        fitted = train.fit(plan, dataset, out_dir=report_dir, model=model, strategy=dist,
                           verbose=verbose, **fit_options)
    # evaluated, calibrated, saved and returned in float32, whatever it trained in
    fitted = dataclasses.replace(fitted, model=precision_lib.to_float32(fitted.model))
    extra = {"plan": plan.to_dict(), "fit": fitted.info, "data": dataset.summary(),
             **fit_options["settings"].to_dict(), "best": fitted.info.get("best"),
             "precision": precision.to_dict()}
    if found is not None:
        extra["lr_find"] = found.to_dict()
    if advice is not None:
        extra["advice"] = advice.to_dict()
        extra["reasons"] = advice.choice["reasons"]
    rep, cal = finish.evaluate_and_calibrate(
        fitted.model, dataset, report_dir, batch_size=batch_size, calibration=calibration,
        history=fitted.history, extra=extra,  # the head's own outputs, if it trained in float32
        **(fitted.head_outputs() if precision.policy == "float32" else {}))
    chance = checks.chance_warning(rep, dataset.num_classes)
    if chance:
        warnings.warn(chance, stacklevel=3)
        notes.append(chance)
    if notes:
        rep["warnings"] = notes
    if (notes or cal) and report_dir is not None:
        finish.write_report(rep, report_dir)
    if verbose:
        print(report_lib.format_report(rep))
        if cal:
            print(f"calibration: T = {cal['temperature']:.3f}; test ECE "
                  f"{cal['ece_before']:.2%} -> {cal['ece_after']:.2%}, NLL "
                  f"{cal['nll_before']:.4f} -> {cal['nll_after']:.4f}; unknown above "
                  f"{cal['unknown']['threshold']:.4g} ({cal['unknown']['score']})")
    if path is not None:
        metadata = {"class_names": dataset.class_names, "backbone": bb.name,
                    "weights": (checks.weights_record(weights, backbone)
                                if checks.pretrained_base(weights, backbone)
                                else "none (random initialisation)"),
                    "strategy": strategy,
                    "plan": plan.to_dict(), "warnings": notes,
                    **({"strategy_requested": "auto", "reasons": advice.choice["reasons"]}
                       if advice is not None else {}),
                    "fit": fitted.info, **fit_options["settings"].to_dict(),
                    "best": extra["best"], "precision": extra["precision"],
                    **({"lr_find": extra["lr_find"]} if found is not None else {}),
                    "data": dataset.summary()}
        finish.save(fitted.model, path, rep, metadata)
        if verbose:
            print(f"saved {path}" + (f"; report in {report_dir}/" if report_dir else ""))
    return FinetuneResult(fitted.model, fitted.history, rep, plan, dataset, path)


def _auto(bb, dataset, plan_options, fit_options, verbose):
    """`--strategy auto`: advise on this backbone, print the choice, fill the plan options.

    The advice's pass caches the last stage's features where the run's head phase looks for
    them (the run's state, or `cache_dir`), so the head phase does not run the base again.
    """
    run = fit_options.get("run")
    cache = fit_options.get("cache_dir") or (run.feature_dir() if run is not None else None)
    advice = advise_lib.advise(dataset, [bb], batch_size=fit_options["batch_size"],
                               seed=fit_options["seed"], cache_dir=cache, verbose=0)
    choice = advice.choice
    if choice.get("unfreeze") and plan_options.get("unfreeze") is None and \
            choice["strategy"] in strategies.FINE_TUNING:
        plan_options["unfreeze"] = choice["unfreeze"]
    if verbose:
        print(advice.table())
        print(f"tlkit: --strategy auto chose {choice['strategy']}"
              + (f" (unfreeze {plan_options['unfreeze']})" if plan_options.get("unfreeze")
                 else "") + ": " + "; ".join(choice["reasons"]))
    return choice["strategy"], advice
