"""options: measure (not assume) tlkit's CPU defaults: jit_compile, mixed_precision, autotune.

A. `jit_compile=True` and `mixed_precision=True` vs the defaults (both off), on a small
   fine-tuning run: `large-similar` on `mobilenet_v2` (tlkit's default backbone; weights=None,
   speed does not depend on them) at 48x48x3, Fashion-MNIST target classes, 1 head epoch (on
   cached features) + 3 fine-tune epochs (last stage unfrozen). It runs `tlkit.training.train.fit` with
   an epoch timer, building the model under the `mixed_float16` policy for the mixed run as
   `tlkit.finetune(mixed_precision=True)` does. Reported: the whole-run time ratio (what a user
   waits, compilation included) and the steady-state fine-tune throughput ratio (median of the
   fine-tune epochs after the first), each as default time / option time (> 1: the option is
   faster). Order default, jit, mixed, mixed, jit, default; medians of the two runs each.
B. tf.data autotune on vs off: `small-similar` with `cache_features=False` (images through the
   frozen base every epoch, so the input pipeline runs every epoch) on the source-model base,
   16 epochs; per-epoch times after the first (tracing), their spread, the gaps between
   epochs, and "stalls" (an epoch longer than its run's median + max(5 s, the median)).
   Order on, off, off, on.

Run: `.venv/bin/python bench/bench_options.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

NAME = "options"


def fine_tune_run(ds, jit, mixed, head_epochs, fine_epochs, batch, seed):
    import keras

    from tlkit.models import backbones
    from tlkit.training import strategies, train

    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(seed)
        bb = backbones.build("mobilenet_v2", ds.image_shape, weights=None)
        plan = strategies.plan("large-similar", bb, epochs=head_epochs + fine_epochs,
                               head_epochs=head_epochs)
        model = plan.build_model(ds.num_classes)
        timer = common.epoch_timer()
        with common.Timer() as t:
            res = train.fit(plan, ds, model=model, batch_size=batch, augment=False,
                            autotune=False, patience=head_epochs + fine_epochs, seed=seed,
                            jit_compile=jit, callbacks=[timer], verbose=0)
        acc = common.accuracy(res.model, ds.x_test, ds.y_test, batch)
    finally:
        keras.config.set_dtype_policy(previous)
    fine = timer.times[head_epochs:]
    steady = fine[1:] if len(fine) > 1 else fine
    out = {"total_s": round(t.seconds, 3), "epoch_s": [round(v, 3) for v in timer.times],
           "fine_tune_img_s": round(len(ds.y_train) / common.median(steady), 1),
           "accuracy": round(acc, 4), "phases": res.info["phases"]}
    del res, model
    common.free()
    return out


def autotune_run(ds, source, autotune, epochs, batch, seed):
    from tlkit.models import backbones
    from tlkit.training import strategies, train

    bb = backbones.build(str(source))
    plan = strategies.plan("small-similar", bb, epochs=epochs)
    timer = common.epoch_timer()
    with common.Timer() as t:
        train.fit(plan, ds, batch_size=batch, augment=False, cache_features=False,
                  autotune=autotune, patience=epochs, seed=seed, callbacks=[timer], verbose=0)
    times = timer.times
    steady = times[1:] if len(times) > 1 else times  # the first epoch traces the step
    med = common.median(steady)
    stalls = [round(v, 2) for v in steady if v > med + max(5.0, med)]
    mean = sum(steady) / len(steady)
    std = (sum((v - mean) ** 2 for v in steady) / len(steady)) ** 0.5
    common.free()
    return {"total_s": round(t.seconds, 3), "epoch_s": [round(v, 3) for v in times],
            "gaps_s": [round(v, 3) for v in timer.gaps], "median_epoch_s": round(med, 3),
            "max_epoch_s": round(max(steady), 3), "cv": round(std / mean, 3),
            "stalls": stalls, "max_gap_s": round(max(timer.gaps, default=0.0), 3)}


def file_backbone_policies(source):
    """Under mixed_float16, the compute dtypes of a `.h5` backbone's layers (a check, no timing)."""
    import keras

    from tlkit.models import backbones

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        bb = backbones.build(str(source))
        dtypes = [layer.compute_dtype for layer in bb.model.layers
                  if not isinstance(layer, keras.layers.InputLayer)]
    finally:
        keras.config.set_dtype_policy(previous)
    common.free()
    return {"layers": len(dtypes), "float16": dtypes.count("float16"),
            "float32": dtypes.count("float32")}


def median_of(runs, key):
    return common.median([r[key] for r in runs])


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    import dataclasses

    from tlkit import data as data_lib

    q = args.quick
    fashion = common.fashion()
    print(f"bench {NAME}: jit_compile / mixed_precision / tf.data autotune vs tlkit's defaults")
    ds_a = common.subset(fashion, common.TARGET_CLASSES, 40 if q else 300, 10 if q else 40,
                         10 if q else 100, args.seed)
    ds_a = dataclasses.replace(ds_a, **{k: data_lib.convert_images(getattr(ds_a, k), 48, 3)
                                        for k in ("x_train", "x_val", "x_test")})
    head_epochs, fine_epochs, batch = (1, 2, 32) if q else (1, 3, 32)
    source, source_info = common.source_model(
        fashion, common.QUICK_SOURCE if q else common.SourceConfig())
    ds_b = common.subset(fashion, common.TARGET_CLASSES, 40 if q else 400, 10 if q else 100,
                         10, args.seed)
    auto_epochs = 3 if q else 16
    file_mixed = file_backbone_policies(source)
    fine_tune_run(ds_a, False, False, 1, 1, batch, args.seed)  # warm-up
    autotune_run(ds_b, source, False, 1, batch, args.seed)

    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    runs = {"default": [], "jit_compile": [], "mixed_precision": []}
    flags = {"default": (False, False), "jit_compile": (True, False),
             "mixed_precision": (False, True)}
    order = ["default", "jit_compile", "mixed_precision"]
    for name in order + order[::-1]:
        print(f"  A: {name} ...", flush=True)
        runs[name].append(fine_tune_run(ds_a, *flags[name], head_epochs, fine_epochs, batch,
                                        args.seed))
    auto = {"on": [], "off": []}
    for name in ("on", "off", "off", "on"):
        print(f"  B: autotune {name} ...", flush=True)
        auto[name].append(autotune_run(ds_b, source, name == "on", auto_epochs, batch,
                                       args.seed))
    load = {**quiet, **watch.stop()}

    base_total = median_of(runs["default"], "total_s")
    base_ips = median_of(runs["default"], "fine_tune_img_s")
    a = {}
    for name in ("jit_compile", "mixed_precision"):
        a[name] = {"whole_run_speed": base_total / median_of(runs[name], "total_s"),
                   "steady_fine_tune_speed": median_of(runs[name], "fine_tune_img_s") / base_ips,
                   "accuracy": median_of(runs[name], "accuracy")}
    acc_default = median_of(runs["default"], "accuracy")
    on_all = [t for r in auto["on"] for t in r["epoch_s"][1:]]
    off_all = [t for r in auto["off"] for t in r["epoch_s"][1:]]
    b = {"whole_run_speed_off_over_on": median_of(auto["on"], "total_s")
         / median_of(auto["off"], "total_s"),
         "stalls_on": sum(len(r["stalls"]) for r in auto["on"]),
         "stalls_off": sum(len(r["stalls"]) for r in auto["off"]),
         "max_epoch_over_median_on": max(on_all) / common.median(on_all),
         "max_epoch_over_median_off": max(off_all) / common.median(off_all),
         "cv_on": median_of(auto["on"], "cv"), "cv_off": median_of(auto["off"], "cv")}

    def keep_off(speed):  # the default (off) is justified when the option is not faster
        return speed <= 1.0

    setup_a = (f"large-similar, mobilenet_v2 48x48x3 weights=None, {len(ds_a.y_train):,} "
               f"images, {head_epochs}+{fine_epochs} epochs, batch {batch}")
    rows = []
    for name, label in (("jit_compile", "jit_compile=True"),
                        ("mixed_precision", "mixed_precision=True")):
        r = a[name]
        rows.append(common.row(
            NAME, f"{label} vs default (off): whole fine-tuning run, speed (default time / "
                  f"option time)", r["whole_run_speed"], "off by default if <= 1",
            keep_off(r["whole_run_speed"]), None, setup_a))
        rows.append(common.row(
            NAME, f"{label} vs default (off): steady fine-tune throughput (option / default)",
            r["steady_fine_tune_speed"], "off by default if <= 1",
            keep_off(r["steady_fine_tune_speed"]), None,
            "median epoch after the first (compilation excluded)"))
    rows.append(common.row(
        NAME, "tf.data autotune off vs on: whole run speed (on time / off time)",
        b["whole_run_speed_off_over_on"], "off by default if >= 1 or fewer stalls",
        b["whole_run_speed_off_over_on"] >= 1.0 or b["stalls_off"] < b["stalls_on"], None,
        f"stalls on/off: {b['stalls_on']}/{b['stalls_off']}; max epoch / median on "
        f"{b['max_epoch_over_median_on']:.2f}, off {b['max_epoch_over_median_off']:.2f}; "
        f"{len(ds_b.y_train):,} images x {auto_epochs} epochs x 2 runs each"))
    payload = {
        "description": "jit_compile, mixed_precision and tf.data autotune vs tlkit's CPU defaults",
        "rows": rows,
        "ratios": {"jit_compile": a["jit_compile"], "mixed_precision": a["mixed_precision"],
                   "autotune": b},
        "accuracy_default": acc_default,
        "mixed_precision_file_backbone": {
            **file_mixed,
            "note": "layers of a .h5 backbone (backbones.build(path)) computing in float16 "
                    "when built under mixed_float16, as tlkit.finetune(mixed_precision=True) "
                    "does; float32 layers keep the dtype policy saved in the file"},
        "setup": {"A": {"run": setup_a, "order": "default, jit, mixed, mixed, jit, default",
                        "data": f"Fashion-MNIST classes {list(common.TARGET_CLASSES)} resized to "
                                f"48x48x3, {common.counts(ds_a)}"},
                  "B": {"run": f"small-similar, cache_features=False, source-model base "
                               f"(demo_vgg), {auto_epochs} epochs, batch {batch}",
                        "data": f"{common.counts(ds_b)}", "order": "on, off, off, on",
                        "stall": "an epoch (after the first) longer than its run's median + "
                                 "max(5 s, median)"},
                  "note": "mixed precision is built like tlkit.finetune does: the global policy "
                          "is mixed_float16 while the backbone and model are built; weights=None "
                          "so the accuracies (in runs.A) are at chance level: speed only",
                  "seed": args.seed},
        "runs": {"A": runs, "B": auto},
        "load": load,
    }
    path = common.write(NAME, payload, args)
    common.print_rows(rows)
    print(f"  mixed_float16 with a .h5 backbone: {file_mixed['float16']} of "
          f"{file_mixed['layers']} base layers compute in float16")
    print(f"  other processes used {load['other_cpu_cores']} cores on average while measuring")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
