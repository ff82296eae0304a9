"""advise: the whole of `tlkit.advise.advise` on one backbone vs one forward pass of its base.

`advise` runs the frozen base once over the training and validation images (every stage
tapped) and then scores each stage (LogME, kNN, a linear probe). The plain-Keras floor is one
`base.predict` over the training images alone: the least any method that looks at the base's
features must spend. Both run in the same process on the same images and weights, the pass
traced once beforehand on each side; target: advise <= 1.3x the forward pass.

Setup: ResNet50 (random weights: speed does not depend on them) at 48x48, 6,000 Fashion-MNIST
training + 600 validation images as RGB arrays.

Run: `.venv/bin/python bench/bench_advise.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

NAME = "advise"
TARGET = 1.3


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    import keras

    from tlkit import advise, data
    from tlkit.models import backbones

    n_train, n_val = (600, 100) if args.quick else (6000, 600)
    size, name, batch = 48, "resnet50", 32
    fashion = common.fashion()
    ds = fashion.select(per_class=n_train // 10, eval_per_class=n_val // 10, seed=args.seed)
    ds = ds.converted((size, size, 3))
    keras.utils.set_random_seed(args.seed)
    bb = backbones.build(name, (size, size, 3), weights=None)
    print(f"bench {NAME}: advise on {name} {size}x{size} vs one forward pass, "
          f"{len(ds.y_train):,} train + {len(ds.y_val):,} val images")
    pipe = data.pipeline(ds.x_train, None, batch_size=batch, autotune=False)
    bb.model.predict(pipe.take(2), verbose=0)  # trace the plain side
    advise.advise(ds.select(per_class=8, eval_per_class=2), [bb], batch_size=batch, verbose=0)
    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    with common.Timer() as t_pass:
        bb.model.predict(pipe, verbose=0)
    with common.Timer() as t_advise:
        a = advise.advise(ds, [bb], batch_size=batch, verbose=0)
    load = watch.stop()
    b = a.backbones[0]
    ratio = t_advise.seconds / t_pass.seconds
    rows = [common.row(NAME, "advise (tapped pass over train+val, scores of 5 stages) / one "
                             "forward pass of the base over train: time", ratio,
                       f"<= {TARGET:g}x", ratio <= TARGET, None,
                       f"{name} random weights {size}x{size}, {len(ds.y_train):,}+"
                       f"{len(ds.y_val):,} images, batch {batch}; advise pass "
                       f"{b['seconds']['pass']:.1f} s of {t_advise.seconds:.1f} s")]
    payload = {"description": "tlkit.advise.advise vs one base.predict over the training data",
               "rows": rows, "ratio": round(ratio, 3),
               "seconds": {"forward_pass": round(t_pass.seconds, 2),
                           "advise": round(t_advise.seconds, 2),
                           "advise_pass": b["seconds"]["pass"]},
               "choice": a.choice, "setup": {"backbone": name, "input": size, "batch": batch,
                                             "train": len(ds.y_train), "val": len(ds.y_val)},
               "load": {**quiet, **load}}
    path = common.write(NAME, payload, args)
    common.print_rows(rows)
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
