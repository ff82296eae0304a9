"""data: tlkit's streaming image-folder layer vs Keras's image_dataset_from_directory, same run.

A folder of photo-like JPEGs (500x375, ~58 KB at quality 90: smooth random colour fields and
gradients plus noise; 4 classes that differ in hue and texture, so that a frozen base with
random weights still separates them) is generated once (a multiprocessing pool) into the
benchmark cache (`--folder` to choose it) and reused. Four figures, each a ratio measured here:

1. pass: one pass over the folder at 224 px: `keras.utils.image_dataset_from_directory`
   (batch 32) vs `tlkit.data.load` + `ds.pipeline(split)` over train, val and test
   (autotune off, tlkit's default on 2 cores); keras s / tlkit s, with and without tlkit's
   scan (`data.load`). Page cache warmed first (every file read once); keras, tlkit, keras,
   tlkit; best of each.
2. small-similar: `tlkit.finetune(strategy="small-similar", 10 epochs)` (features of the
   frozen base cached in one streamed pass) vs the keras.io pattern: image_dataset_from_directory
   -> Rescaling -> frozen MobileNetV2(weights=None) -> GAP -> Dropout 0.2 -> Dense, `fit`
   10 epochs. Both on the SAME train/val/test files (tlkit's split, handed to Keras as
   symlinked split folders), the same base and initial head weights (copied from tlkit's model
   before it trains), Adam 1e-3, batch 32, no augmentation, EarlyStopping(patience=epochs).
   Speedup = keras training s / tlkit training s (test evaluation timed apart); accuracy
   difference on the same test files.
3. memory: peak RSS of the `tlkit finetune` CLI (subprocess, small-similar, 1 epoch) on a
   subset (symlinks) and on the whole folder at 224 px: growth in MB, and tlkit's peak /
   the keras.io pattern's peak (a subprocess too: image_dataset_from_directory with
   validation_split 0.2, frozen base, fit 1 epoch, evaluate).
4. decode: tlkit's pass throughput (images/s, figure 1 without the scan) / the decode limit
   = cores / (one core's decode + resize time per image: tlkit's own tf.data decode with a
   one-thread pool, over a sample of files).

Random-weights MobileNetV2 (and MobileNetV3) features vanish (GAP outputs ~1e-12, the same for
every image), so with `--backbone mobilenet_v2` both sides of figure 2 sit at chance; its
accuracy check is meaningful with `--backbone resnet50 --ft-size 32` (healthy features, a
linear probe separates the classes), run by run_all.py as `data-resnet50-32px`.

Run: `.venv/bin/python bench/bench_data.py` (`--images N`, `--folder DIR`, `--quick`;
`--skip pass,finetune,memory`; `--name` for the result file).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import io
import json
import multiprocessing
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

NAME = "data"
TARGETS = {"pass": 1.0, "speedup": 6.0, "accuracy_pp": 0.5, "rss_growth_mb": 300.0,
           "rss_vs_keras": 1.5}
WIDTH, HEIGHT = 500, 375
QUALITY = 90
NOISE = 6.0  # sigma of the pixel noise: gives ~58 KB files at quality 90
HUES = ((200, 80, 60), (60, 90, 200), (70, 170, 80), (190, 180, 90))  # class mean colours
GRIDS = ((4, 3), (10, 8), (6, 5), (16, 12))  # class colour-field coarseness (blob size)
KERAS_PREP = {"tf": "Rescaling(1/127.5, offset=-1)", "caffe": "preprocess_input(mode='caffe')",
              "torch": "preprocess_input(mode='torch')", "builtin": "built into the base"}


def settings(quick, images):
    if quick:
        return dict(images=images or 400, ft_images=200, ft_size=96, epochs=2, rss_small=100,
                    rss_large=images or 400, rss_epochs=1, decode_sample=50, batch_size=32)
    images = images or 12000
    return dict(images=images, ft_images=min(3000, images), ft_size=96, epochs=10,
                rss_small=min(3000, images), rss_large=images, rss_epochs=1,
                decode_sample=200, batch_size=32)


# ---------------------------------------------------------------------------------------------
# the folder


def _make_image(job):
    """Write one JPEG: a class-coloured smooth field + gradient (+ class texture) + noise."""
    import numpy as np
    from PIL import Image

    folder, cls, idx, seed = job
    rng = np.random.default_rng((seed, cls, idx))
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    gw, gh = GRIDS[cls]
    field = np.asarray(HUES[cls], np.float32) + rng.normal(0, 45, (gh, gw, 3))
    small = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    img = np.asarray(small.resize((WIDTH, HEIGHT), Image.BICUBIC)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) / WIDTH) * xx + (np.sin(angle) / HEIGHT) * yy
    img += ramp[..., None] * rng.normal(0, 40, 3).astype(np.float32)
    if cls == 1:  # vertical stripes
        img += (18 * np.sin(xx[0] / rng.uniform(4, 9)))[None, :, None]
    if cls == 3:  # a coarse checker
        img += (15 * (((xx // rng.integers(10, 25)) + (yy // 12)) % 2))[..., None]
    img += rng.standard_normal((HEIGHT, WIDTH, 1), np.float32) * NOISE
    img += rng.standard_normal((HEIGHT, WIDTH, 3), np.float32) * (NOISE / 3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=QUALITY)
    path = pathlib.Path(folder) / f"c{cls}" / f"c{cls}_{idx:06d}.jpg"
    path.write_bytes(buf.getvalue())
    return len(buf.getvalue())


def make_folder(folder, n, seed=0, log=print):
    """The folder of `n` JPEGs (n/4 a class), generated once; reused when complete."""
    folder = pathlib.Path(folder)
    marker = folder / ".complete.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("images") == n and info.get("seed") == seed:
            return {**info, "generated_now": False}
    if folder.exists():
        shutil.rmtree(folder)
    for c in range(len(HUES)):
        (folder / f"c{c}").mkdir(parents=True)
    per = n // len(HUES)
    jobs = [(str(folder), c, i, seed) for i in range(per) for c in range(len(HUES))]
    log(f"  generating {len(jobs):,} JPEGs {WIDTH}x{HEIGHT} into {folder} ...")
    with common.Timer() as t, multiprocessing.Pool(os.cpu_count()) as pool:
        sizes = list(pool.imap_unordered(_make_image, jobs, chunksize=64))
    info = {"images": n, "seed": seed, "files": len(sizes),
            "mean_kb": sum(sizes) / len(sizes) / 1e3,
            "size": [WIDTH, HEIGHT], "quality": QUALITY, "generate_s": round(t.seconds, 1)}
    marker.write_text(json.dumps(info))
    log(f"  generated in {t.seconds:.0f} s, {info['mean_kb']:.1f} KB a file")
    return {**info, "generated_now": True}


def files_of(folder):
    return sorted(p for p in pathlib.Path(folder).glob("c*/*.jpg"))


def subset_folder(folder, k, dest):
    """A folder of symlinks to the first k/4 files of each class of `folder`."""
    dest = pathlib.Path(dest)
    marker = dest / ".complete"
    if marker.is_file() and marker.read_text() == f"{folder}:{k}":
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    for cdir in sorted(pathlib.Path(folder).glob("c*")):
        (dest / cdir.name).mkdir(parents=True)
        for p in sorted(cdir.glob("*.jpg"))[:k // len(HUES)]:
            (dest / cdir.name / p.name).symlink_to(p)
    marker.write_text(f"{folder}:{k}")
    return dest


def warm_page_cache(folder):
    total = 0
    for p in files_of(folder):
        with open(p, "rb") as f:
            total += len(f.read())
    return total


# ---------------------------------------------------------------------------------------------
# 1 and 4: one pass, and the decode limit


def keras_pass(folder, size, batch_size):
    import keras

    n = 0
    with common.Timer() as t:
        ds = keras.utils.image_dataset_from_directory(folder, image_size=(size, size),
                                                      batch_size=batch_size, verbose=False)
        for _, y in ds:
            n += int(y.shape[0])
    return {"total_s": t.seconds, "images": n}


def tlkit_pass(folder, size, batch_size, seed):
    from tlkit import data

    n = 0
    with common.Timer() as t_scan:
        ds = data.load(folder, image_size=size, channels=3, seed=seed)
    with common.Timer() as t_read:
        for split in ("train", "val", "test"):
            for _, y in ds.pipeline(split, batch_size=batch_size, shuffle=False, augment=None,
                                    autotune=False):
                n += int(y.shape[0])
    return {"scan_s": t_scan.seconds, "read_s": t_read.seconds,
            "total_s": t_scan.seconds + t_read.seconds, "images": n}


def decode_cost(folder, size, sample):
    """Seconds per image of tlkit's decode + resize on ONE core (tf.data, one-thread pool)."""
    import tensorflow as tf

    from tlkit.data import decode

    paths = files_of(folder)
    paths = [str(p) for p in paths[::max(1, len(paths) // sample)][:sample]]
    ds = tf.data.Dataset.from_tensor_slices((paths, [False] * len(paths))).map(
        lambda p, u: decode.decode_and_resize(p, u, image_size=(size, size), channels=3))
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    ds = ds.with_options(options)
    times = []
    for _ in range(3):  # the first also warms up
        with common.Timer() as t:
            for _ in ds:
                pass
        times.append(t.seconds / len(paths))
    eager = []
    for p in paths[:50]:
        with common.Timer() as t:
            decode.read_image(p, image_size=size, channels=3)
        eager.append(t.seconds)
    return {"per_image_s": min(times[1:]), "runs_per_image_s": times, "sample": len(paths),
            "read_image_eager_median_s": common.median(eager[5:])}


# ---------------------------------------------------------------------------------------------
# 2: small-similar vs the keras.io frozen-base fit


def _layers(model):
    """The leaf layers of `model`, nested models opened (their names differ between sides)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def run_tlkit_finetune(folder, backbone, size, epochs, batch_size, seed):
    import tlkit
    from tlkit.evaluation import report
    from tlkit.training import train

    evals, fits, seen = [], [], {}
    timed_fit = train.fit

    def fit_spy(plan, dataset, **kw):  # records the split and the initial weights
        if "weights" not in seen:
            seen["dataset"] = dataset
            seen["weights"] = {layer.name: layer.get_weights() for layer in _layers(kw["model"])
                               if layer.weights}
            seen["dropout"] = [layer.rate for layer in _layers(kw["model"])
                               if type(layer).__name__ == "Dropout"]
        return timed_fit(plan, dataset, **kw)

    train.fit = fit_spy
    try:
        with common.timed_calls(report, "evaluate", evals), \
                common.timed_calls(train, "fit", fits), common.Timer() as t:
            res = tlkit.finetune(data=str(folder), backbone=backbone, weights=None,
                                 image_size=size, strategy="small-similar", epochs=epochs,
                                 batch_size=batch_size, augment=False, autotune=False,
                                 patience=epochs, verbose=0, seed=seed)
    finally:
        train.fit = timed_fit
    info = res.report["fit"]
    out = {"total_s": t.seconds, "eval_s": sum(evals), "train_s": t.seconds - sum(evals),
           "cache_s": (info.get("cache") or {}).get("seconds"),
           "accuracy": float(res.report["accuracy"]),
           "epochs_run": len(res.history.get("loss", [])),
           "val_accuracy": [round(v, 4) for v in res.history.get("val_accuracy", [])]}
    del res
    common.free()
    return out, seen


def split_folders(dataset, root):
    """tlkit's train/val/test files as symlinked folders root/<split>/<class>/ for Keras."""
    root = pathlib.Path(root)
    if root.exists():
        shutil.rmtree(root)
    for split in ("train", "val", "test"):
        x, y = dataset.split(split)
        for path, label in zip(x.paths, y):
            d = root / split / dataset.class_names[int(label)]
            d.mkdir(parents=True, exist_ok=True)
            (d / pathlib.Path(path).name).symlink_to(os.path.realpath(path))
    return root


def keras_io_model(app, prep, size, num_classes, dropout):
    """keras.io: Rescaling -> frozen base(training=False) -> GAP -> Dropout -> Dense."""
    import keras

    base = getattr(keras.applications, app)(
        weights=None, include_top=False, input_shape=(size, size, 3),
        **({"include_preprocessing": True} if prep == "builtin" else {}))
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    if prep == "tf":
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    elif prep in ("caffe", "torch"):  # what keras.applications.<family>.preprocess_input does
        x = keras.applications.imagenet_utils.preprocess_input(inputs, mode=prep)
    else:
        x = inputs
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, base


def run_keras_finetune(split_root, class_names, app, prep, size, epochs, batch_size, seed,
                       init):
    import keras

    with common.Timer() as t:
        keras.utils.set_random_seed(seed)

        def load(split, shuffle):
            return keras.utils.image_dataset_from_directory(
                split_root / split, class_names=list(class_names), image_size=(size, size),
                batch_size=batch_size, shuffle=shuffle, seed=seed, verbose=False)

        train_ds, val_ds = load("train", True), load("val", False)
        model, _ = keras_io_model(app, prep, size, len(class_names), init["dropout"])
        copied = 0
        for layer in _layers(model):
            if layer.weights and layer.name in init["weights"]:
                layer.set_weights(init["weights"][layer.name])
                copied += 1
        with_weights = sum(1 for layer in _layers(model) if layer.weights)
        h = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0,
                      callbacks=[keras.callbacks.EarlyStopping(
                          monitor="val_loss", patience=epochs, restore_best_weights=True)])
    with common.Timer() as e:
        _, acc = model.evaluate(load("test", False), verbose=0)
    out = {"train_s": t.seconds, "eval_s": e.seconds, "total_s": t.seconds + e.seconds,
           "accuracy": float(acc), "epochs_run": len(h.history["loss"]),
           "val_accuracy": [round(v, 4) for v in h.history["val_accuracy"]],
           "layers_with_weights": with_weights, "layers_copied_from_tlkit": copied}
    del model
    common.free()
    return out


# ---------------------------------------------------------------------------------------------
# 3: peak RSS of subprocesses

_PEAK = ("import json, resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], "
         "stdout=subprocess.DEVNULL).returncode; print(json.dumps({'rc': rc, 'peak_kb': "
         "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")


def peak_rss(cmd, log):
    """(peak RSS in MB of `cmd`, its wall seconds): run under a fresh Python parent."""
    with common.Timer() as t:
        p = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True,
                           cwd=common.ROOT)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    out = json.loads(lines[-1]) if lines else {"rc": p.returncode, "peak_kb": None}
    if out["rc"] != 0:
        log(f"  FAILED: {' '.join(cmd)}\n{p.stderr[-2000:]}")
        raise SystemExit(1)
    return {"peak_mb": out["peak_kb"] / 1024, "wall_s": t.seconds}


def tlkit_cli(folder, backbone, size, epochs, out_dir):
    exe = pathlib.Path(sys.executable).parent / "tlkit"
    return [str(exe), "finetune", "--data", str(folder), "--backbone", backbone,
            "--weights", "none", "--image-size", str(size), "--strategy", "small-similar",
            "--epochs", str(epochs), "--no-augment", "--out", str(out_dir / "model.h5"),
            "--cache-dir", str(out_dir / "cache"), "--quiet"]


def keras_child(args):
    """`--keras-child`: the keras.io frozen-base fit on a folder (for its peak RSS)."""
    import keras

    keras.utils.set_random_seed(0)
    size = args.child_size
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        args.keras_child, validation_split=0.2, subset="both", seed=0,
        image_size=(size, size), batch_size=32, verbose=False)
    model, _ = keras_io_model(args.child_app, args.child_prep, size,
                              len(train_ds.class_names), 0.2)
    model.fit(train_ds, validation_data=val_ds, epochs=args.child_epochs, verbose=0)
    model.evaluate(val_ds, verbose=0)


# ---------------------------------------------------------------------------------------------


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="JPEGs in the folder (default 12000)")
    p.add_argument("--folder", default=None,
                   help="the generated folder (default: photos-<N> in the benchmark cache)")
    p.add_argument("--backbone", default="mobilenet_v2", help="backbone of figure 2")
    p.add_argument("--ft-images", type=int, default=None,
                   help="images of the small-similar comparison (default 3000)")
    p.add_argument("--ft-size", type=int, default=None, help="its input size (default 96)")
    p.add_argument("--rss-backbone", default="mobilenet_v3_small",
                   help="backbone of the memory runs (at 224 px; default mobilenet_v3_small)")
    p.add_argument("--name", default=NAME,
                   help="result name: bench/results/<name>.json (default data)")
    p.add_argument("--skip", default="", help="comma-separated figures to skip: pass,"
                   "finetune,memory")
    p.add_argument("--keras-child", default=None, help=argparse_hidden())
    p.add_argument("--child-size", type=int, default=224, help=argparse_hidden())
    p.add_argument("--child-app", default="MobileNetV2", help=argparse_hidden())
    p.add_argument("--child-prep", default="tf", help=argparse_hidden())
    p.add_argument("--child-epochs", type=int, default=1, help=argparse_hidden())
    args = p.parse_args()
    if args.keras_child:
        return keras_child(args)
    from tlkit.models import backbones

    s = settings(args.quick, args.images)
    if args.ft_images:
        s["ft_images"] = args.ft_images
    if args.ft_size:
        s["ft_size"] = args.ft_size
    skip = set(filter(None, args.skip.split(",")))
    size, bs = 224, s["batch_size"]
    cache = common.cache_dir()
    folder = pathlib.Path(args.folder or cache / f"photos-{s['images']}")
    print(f"bench {NAME}: tlkit's streaming data layer vs image_dataset_from_directory")
    folder_info = make_folder(folder, s["images"], args.seed)
    print(f"  folder: {folder} ({folder_info['files']:,} JPEGs {WIDTH}x{HEIGHT}, "
          f"{folder_info['mean_kb']:.1f} KB each)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-data-", dir=cache))
    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    results, rows = {}, []
    try:
        with common.Timer() as t_warm:
            warm_bytes = warm_page_cache(folder)
        results["page_cache_warm"] = {"bytes": warm_bytes, "seconds": t_warm.seconds}

        # 1. one pass
        if "pass" not in skip:
            keras_pass(subset_folder(folder, min(200, s["images"]), work / "tiny"), size, bs)
            tlkit_pass(work / "tiny", size, bs, args.seed)  # warm-up of both, not timed
            runs = {"keras": [], "tlkit": []}
            for _ in range(2):
                runs["keras"].append(common.watched(keras_pass, folder, size, bs))
                runs["tlkit"].append(common.watched(tlkit_pass, folder, size, bs, args.seed))
            k = min(r["total_s"] for r in runs["keras"])
            t_total = min(r["total_s"] for r in runs["tlkit"])
            t_read = min(r["read_s"] for r in runs["tlkit"])
            n = runs["tlkit"][0]["images"]
            results["pass"] = {"runs": runs, "keras_s": k, "tlkit_total_s": t_total,
                               "tlkit_read_s": t_read,
                               "ratio_incl_scan": k / t_total, "ratio_excl_scan": k / t_read}
            setup = f"{n:,} JPEGs 500x375 -> 224 px, batch {bs}, best of 2"
            rows.append(common.row(args.name, "one pass at 224 px: image_dataset_from_directory s "
                                   "/ tlkit s (scan included)", k / t_total,
                                   f">= {TARGETS['pass']:g}x", k / t_total >= TARGETS["pass"],
                                   None, setup))
            rows.append(common.row(args.name, "the same, tlkit's scan (data.load) not counted",
                                   k / t_read, f">= {TARGETS['pass']:g}x",
                                   k / t_read >= TARGETS["pass"], None, setup))
            print(f"  pass: keras {k:.1f} s, tlkit {t_total:.1f} s (scan "
                  f"{t_total - t_read:.1f} s + read {t_read:.1f} s)", flush=True)

            # 4. decode limit
            cost = decode_cost(folder, size, s["decode_sample"])
            cores = os.cpu_count()
            limit = cores / cost["per_image_s"]
            thr = n / t_read
            results["decode"] = {**cost, "cores": cores, "limit_images_per_s": limit,
                                 "tlkit_images_per_s": thr,
                                 "tlkit_images_per_s_incl_scan": n / t_total,
                                 "keras_images_per_s": runs["keras"][0]["images"] / k,
                                 "fraction_of_limit": thr / limit}
            rows.append(common.row(args.name, "tlkit pass throughput / decode limit (cores x "
                                   "one-core decode+resize rate)", thr / limit, "-", None, None,
                                   f"{thr:.0f} img/s of {limit:.0f}; one core "
                                   f"{cost['per_image_s'] * 1e3:.2f} ms/img"))
            print(f"  decode: {cost['per_image_s'] * 1e3:.2f} ms/img on one core -> limit "
                  f"{limit:.0f} img/s on {cores} cores; tlkit {thr:.0f} img/s", flush=True)

        # 2. small-similar
        if "finetune" not in skip:
            ft_folder = subset_folder(folder, s["ft_images"], work / "ft")
            spec = backbones.spec(args.backbone)
            app, prep = spec.constructor, spec.preprocessing
            tiny = subset_folder(folder, 80, work / "ft-tiny")
            _, seen = run_tlkit_finetune(tiny, args.backbone, s["ft_size"], 1, bs, args.seed)
            run_keras_finetune(split_folders(seen["dataset"], work / "ft-tiny-splits"),
                               seen["dataset"].class_names, app, prep, s["ft_size"], 1, bs,
                               args.seed, {"weights": seen["weights"],
                                           "dropout": seen["dropout"][0]})  # warm-ups
            seen = {}

            def tlkit_run():
                out, spied = run_tlkit_finetune(ft_folder, args.backbone, s["ft_size"],
                                                s["epochs"], bs, args.seed)
                seen.setdefault("first", spied)
                return out

            tl = [common.watched(tlkit_run)]
            seen = seen["first"]
            ds = seen["dataset"]
            roots = split_folders(ds, work / "ft-splits")
            kr = common.watched(run_keras_finetune, roots, ds.class_names, app, prep,
                                s["ft_size"], s["epochs"], bs, args.seed,
                                {"weights": seen["weights"], "dropout": seen["dropout"][0]})
            tl.append(common.watched(tlkit_run))
            tl_train = common.median([r["train_s"] for r in tl])
            speedup = kr["train_s"] / tl_train
            acc = common.accuracy_check(tl[0]["accuracy"], kr["accuracy"])
            counts = {k: len(ds.split(k)[0]) for k in ("train", "val", "test")}
            chance = 1 / ds.num_classes
            results["finetune"] = {"tlkit_runs": tl, "keras": kr, "speedup_train": speedup,
                                   "speedup_incl_eval": kr["total_s"] / common.median(
                                       [r["total_s"] for r in tl]),
                                   "accuracy": acc, "chance": chance, "counts": counts,
                                   "backbone": args.backbone, "keras_app": app,
                                   "keras_preprocessing": KERAS_PREP.get(prep),
                                   "image_size": s["ft_size"], "epochs": s["epochs"]}
            acc_text = (f"tlkit {acc['tlkit']:.4f} / keras {acc['keras']:.4f} "
                        f"({acc['diff_pp']:+.2f} pp; chance {chance:.2f})")
            rows.append(common.row(
                args.name, "small-similar on image files: keras.io frozen-base fit s / tlkit s",
                speedup, f">= {TARGETS['speedup']:g}x", speedup >= TARGETS["speedup"], acc_text,
                f"{counts['train']:,}+{counts['val']:,} images, {args.backbone} random weights "
                f"at {s['ft_size']} px, {s['epochs']} epochs, same files and initial weights"))
            print(f"  small-similar: keras {kr['train_s']:.1f} s, tlkit {tl_train:.1f} s "
                  f"(median of {len(tl)}); {acc_text}", flush=True)

        # 3. memory
        if "memory" not in skip:
            spec = backbones.spec(args.rss_backbone)
            small = subset_folder(folder, s["rss_small"], work / "rss-small")
            mem = {"backbone": args.rss_backbone, "image_size": size,
                   "epochs": s["rss_epochs"]}
            for label, f in (("small", small), ("large", folder)):
                out_dir = work / f"cli-{label}"
                out_dir.mkdir()
                n = len(files_of(f))
                mem[f"tlkit_{label}"] = {"images": n, **peak_rss(
                    tlkit_cli(f, args.rss_backbone, size, s["rss_epochs"], out_dir), print)}
                mem[f"keras_{label}"] = {"images": n, **peak_rss(
                    [sys.executable, str(pathlib.Path(__file__).resolve()), "--keras-child",
                     str(f), "--child-size", str(size), "--child-app", spec.constructor,
                     "--child-prep", spec.preprocessing, "--child-epochs",
                     str(s["rss_epochs"])], print)}
                print(f"  memory {n:,} images: tlkit {mem[f'tlkit_{label}']['peak_mb']:.0f} MB "
                      f"({mem[f'tlkit_{label}']['wall_s']:.0f} s), keras "
                      f"{mem[f'keras_{label}']['peak_mb']:.0f} MB "
                      f"({mem[f'keras_{label}']['wall_s']:.0f} s)", flush=True)
            growth = mem["tlkit_large"]["peak_mb"] - mem["tlkit_small"]["peak_mb"]
            vs = mem["tlkit_large"]["peak_mb"] / mem["keras_large"]["peak_mb"]
            mem.update(growth_mb=growth, keras_growth_mb=mem["keras_large"]["peak_mb"]
                       - mem["keras_small"]["peak_mb"], tlkit_over_keras=vs)
            results["memory"] = mem
            nl, ns = mem["tlkit_large"]["images"], mem["tlkit_small"]["images"]
            rows.append(common.row(args.name, f"tlkit finetune peak RSS growth, {ns:,} -> {nl:,} "
                                   f"images, in MB (not a ratio)", growth,
                                   f"<= {TARGETS['rss_growth_mb']:g} MB",
                                   growth <= TARGETS["rss_growth_mb"], None,
                                   f"{args.rss_backbone} 224 px, {s['rss_epochs']} epoch, CLI"))
            rows.append(common.row(args.name, f"tlkit finetune peak RSS / keras.io fit peak RSS "
                                   f"({nl:,} images)", vs, f"<= {TARGETS['rss_vs_keras']:g}x",
                                   vs <= TARGETS["rss_vs_keras"], None,
                                   f"{mem['tlkit_large']['peak_mb']:.0f} vs "
                                   f"{mem['keras_large']['peak_mb']:.0f} MB"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = {**quiet, **watch.stop()}
    payload = {"description": "tlkit's streaming image-folder layer vs Keras's "
                              "image_dataset_from_directory: one pass, small-similar, memory, "
                              "decode limit",
               "rows": rows, "results": results, "targets": TARGETS,
               "setup": {"folder": str(folder), "folder_info": folder_info, **s,
                         "pass": "keras, tlkit, keras, tlkit after a page-cache warm-up; best",
                         "finetune_split": "tlkit's split (data.load seed 0, 80/10/10), given "
                                           "to Keras as symlinked train/val/test folders",
                         "memory_keras": "image_dataset_from_directory validation_split 0.2, "
                                         "fit, evaluate val; ru_maxrss of a subprocess",
                         "seed": args.seed},
               "load": load}
    path = common.write(args.name, payload, args)
    common.print_rows(rows)
    print(f"  other processes used {load['other_cpu_cores']} cores on average while measuring")
    print(f"  -> {path}")


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
