"""image cache: fine-tuning on image files with `--image-cache` (decoded images on disk) vs
decoding every epoch (the default).

With live augmentation a fine-tuning phase cannot use the feature cache and reads its images
every epoch; `image_cache=True` keeps them decoded and resized in a tf.data file cache after
the first epoch. Both runs are `tlkit.finetune` in this process on the same 3,000 generated
500x375 JPEGs (bench_data.py's folder), the same backbone, epochs and seed; the ratio is the
training time without the cache over the time with it (> 1: the cache pays).

Run: `.venv/bin/python bench/bench_image_cache.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import pathlib
import shutil
import tempfile

import bench_data

NAME = "image-cache"


def train_seconds(report):
    return sum(p["seconds"] for p in report["fit"]["phases"])


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenet_v3_small")
    p.add_argument("--size", type=int, default=96)
    args = p.parse_args()
    import tlkit

    n, epochs = (400, 2) if args.quick else (3000, 4)
    cache = common.cache_dir()
    folder = bench_data.make_folder(cache / "photos-12000", 12000, args.seed)
    sub = bench_data.subset_folder(cache / "photos-12000", n, cache / f"photos-sub-{n}")
    print(f"bench {NAME}: large-dissimilar with augmentation on {n:,} JPEGs, {args.backbone} "
          f"{args.size}px, {epochs} epochs: decode every epoch vs --image-cache")
    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-image-cache-", dir=cache))
    results = {}
    try:
        for label, flag in (("decode every epoch", False), ("image cache", True),
                            ("decode every epoch (again)", False)):
            r = tlkit.finetune(data=str(sub), backbone=args.backbone, weights=None,
                               image_size=args.size, strategy="large-dissimilar", epochs=epochs,
                               augment=True, image_cache=flag, seed=args.seed, autotune=False,
                               out=work / f"{flag}-{len(results)}.h5", verbose=0, patience=99)
            results[label] = {"train_seconds": round(train_seconds(r.report), 2),
                              "accuracy": r.report["accuracy"]}
            print(f"  {label}: {results[label]['train_seconds']:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = {**quiet, **watch.stop()}
    plain = min(results["decode every epoch"]["train_seconds"],
                results["decode every epoch (again)"]["train_seconds"])
    cached = results["image cache"]["train_seconds"]
    ratio = plain / cached
    rows = [common.row(NAME, "fine-tuning on image files: decode every epoch s / --image-cache s",
                       ratio, "default on if clearly > 1", None, None,
                       f"{n:,} JPEGs 500x375 -> {args.size} px, {args.backbone}, {epochs} epochs "
                       f"with augmentation, best of 2 uncached runs")]
    payload = {"description": "tf.data file cache of decoded images vs decoding every epoch",
               "rows": rows, "ratio": round(ratio, 3), "results": results,
               "setup": {"images": n, "backbone": args.backbone, "size": args.size,
                         "epochs": epochs, "folder": str(sub), "source_folder": folder},
               "load": load}
    path = common.write(NAME, payload, args)
    common.print_rows(rows)
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
