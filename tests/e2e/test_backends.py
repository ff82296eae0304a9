"""The JAX backend: `KERAS_BACKEND=jax tlkit finetune / predict / export` as a user runs them
(subprocesses: a process picks its Keras backend once, at import), the same model file read
by both backends, and the one-line errors of what only TensorFlow has."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_image_folder

TLKIT = [sys.executable, "-m", "tlkit.cli"]


def run(args, backend, cwd):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(TLKIT + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """A model fine-tuned on JAX from a photo folder, and that folder."""
    tmp = tmp_path_factory.mktemp("jax")
    photos = write_image_folder(tmp / "photos")
    out = tmp / "jax.h5"
    proc = run(["finetune", "--data", str(photos), "--backbone", "zoo:resnet_small",
                "--weights", "none", "--strategy", "large-dissimilar", "--image-size", "32",
                "--epochs", "8", "--out", str(out), "--quiet"], "jax", tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp, photos, out


def test_finetune_trains_on_jax(jax_run):
    tmp, _, out = jax_run
    report = json.loads((tmp / "jax" / "report.json").read_text())
    assert out.is_file() and report["precision"]["requested"] == "auto"
    assert report["precision"]["policy"] in ("float32", "mixed_bfloat16")
    # three classes of drawn shapes (chance 1/3): it learned on JAX
    assert report["accuracy"] >= 0.6, report["accuracy"]


def test_predictions_agree_across_backends(jax_run):
    tmp, photos, out = jax_run
    got = {}
    for backend in ("jax", "tensorflow"):
        csv = tmp / f"pred-{backend}.csv"
        proc = run(["predict", str(out), str(photos), "--format", "csv", "--out", str(csv)],
                   backend, tmp)
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows = csv.read_text().splitlines()
        header = rows[0].split(",")
        cols = [i for i, h in enumerate(header) if h.startswith("prob")]
        got[backend] = np.array([[float(r.split(",")[i]) for i in cols] for r in rows[1:]])
    assert got["jax"].shape == got["tensorflow"].shape and len(got["jax"]) > 10
    np.testing.assert_allclose(got["jax"], got["tensorflow"], atol=1e-5)


def test_tensorflow_formats_export_from_jax(jax_run):
    """SavedModel stands for the three TensorFlow-only formats: TFLite and ONNX are written by
    the same TensorFlow child (tlkit.deploy.tensorflow_export) and checked the same way."""
    tmp, _, out = jax_run
    target = tmp / "sm"
    proc = run(["export", str(out), "--format", "savedmodel", "--out", str(target)], "jax",
               tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert target.exists() and "run's test images" in proc.stdout
    diff = float(proc.stdout.split("largest output difference vs Keras: ")[1].split()[0])
    assert diff <= 1e-5
    assert not list(tmp.glob(".*"))  # no staging folder or temporary model file left


@pytest.mark.parametrize("args, names", [
    (["explain", "{model}", "{photos}", "--out", "{tmp}/cam"], "Grad-CAM"),
    (["finetune", "--data", "digits", "--distribute", "mirrored", "--out", "{tmp}/d.h5"],
     "--distribute mirrored"),
])
def test_what_only_tensorflow_has_is_one_line_on_jax(jax_run, args, names):
    tmp, photos, out = jax_run
    before = set(tmp.rglob("*"))
    args = [a.format(model=out, photos=photos, tmp=tmp) for a in args]
    proc = run(args, "jax", tmp)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "jax" in lines[0], proc.stderr
    assert "KERAS_BACKEND=tensorflow" in lines[0]
    assert set(tmp.rglob("*")) == before
