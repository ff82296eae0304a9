"""The README cannot drift: its code blocks run, its samples are real output, its links resolve.

Every fenced block of README.md is one of:

- a `python` block: executed as written (the ones below with a known result also check it);
- a sample of output, marked `<!-- output of: tlkit ... -->` on the line before: the command
  runs and must print exactly the block;
- a block that cannot run offline or cheaply, marked `<!-- not run: REASON -->`.

A block with none of these fails, so a new example has to say which it is. Every link and image
must point to a file inside the repository.
"""

import dataclasses
import json
import pathlib
import re
import shlex
import sys
import types

import keras
import pytest

from process_helpers import BackgroundProcesses, background_fixture

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(not run|output of):(.*?)-->\s*$")


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str = None  # "not run" or "output of"
    note: str = ""  # the reason, or the command


def readme_blocks(text=None):
    """The fenced blocks of the README, each with the marker on the line before it."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = MARKER.match(before)
        blocks.append(Block(start + 1, lang, "\n".join(body) + "\n",
                            mark.group(1) if mark else None,
                            mark.group(2).strip() if mark else ""))
        i += 1
    return blocks


BLOCKS = readme_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]
SAMPLES = [b for b in BLOCKS if b.marker == "output of"]


def test_the_parser_sees_markers_and_indented_blocks():
    text = ("<!-- not run: needs photos/ -->\n```\ntlkit finetune\n```\n\n- item\n\n  ```\n"
            "  x = 1\n  ```\n<!-- output of: tlkit zoo -->\n```\nmodel\n```\n")
    got = [(b.marker, b.note, b.text) for b in readme_blocks(text)]
    assert got == [("not run", "needs photos/", "tlkit finetune\n"), (None, "", "x = 1\n"),
                   ("output of", "tlkit zoo", "model\n")]


def test_every_block_runs_or_says_why():
    assert PYTHON and SAMPLES
    for b in BLOCKS:
        where = f"README.md:{b.line}"
        if b.lang == "python":
            assert b.marker != "output of", where
            continue
        assert b.marker, f"{where}: run it here (python, or <!-- output of: tlkit ... -->) or " \
                         f"say why not (<!-- not run: REASON -->)"
        assert b.note, f"{where}: the marker needs a reason or a command"
        if b.marker == "output of":
            assert b.note.startswith("tlkit "), where


# What a python block must do beyond running, keyed by a line it contains.
def check_vgg19(ns, out):
    convs = [l for l in ns["model"].layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 16 and ns["model"].output_shape == (None, 10)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in ns["model"].layers)
    assert "vgg19_bn" in out  # model.summary() printed


def check_zoo(ns, out):
    assert ns["model"].output_shape == (None, 5)


def check_finetune(ns, out):
    report = ns["result"].report
    # as written, from random weights: BN statistics recomputed, a real accuracy, no warning
    # (MobileNetV2's BN momentum is 0.999: without tlkit/bn.py this sat at chance, 0.10)
    assert report["accuracy"] > 0.5, report["accuracy"]
    assert report["fit"]["bn_recalibration"]["layers"] > 40 and "warnings" not in report
    assert "large-dissimilar" in out


def check_curve(ns, out):
    rows = ns["curve"].rows
    assert [(r["images_per_class"], r["seed"]) for r in rows] == [(2, 0), (2, 1), (5, 0), (5, 1)]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows) and "images/class" in out


CHECKS = {"from tlkit.blocks import vgg_block": check_vgg19, "zoo.build(": check_zoo,
          "tlkit.finetune(": check_finetune, "tlkit.curve(": check_curve}


# Blocks that train (tlkit.finetune) run as written in background processes at low priority
# while the other tests go on (process_helpers.background_fixture); `result.report` comes back as JSON.
SLOW = "tlkit.finetune("
FAST_BLOCKS = [b for b in PYTHON if SLOW not in b.text]
SLOW_BLOCKS = [b for b in PYTHON if SLOW in b.text]
_SAVE_REPORT = ("\nimport json as _json, pathlib as _pathlib\n"
                "_pathlib.Path({name!r}).write_text(_json.dumps(result.report, default=str))\n")

readme_slow = background_fixture("readme_slow", lambda workdir: BackgroundProcesses(workdir, {
    f"line{b.line}": {"argv": [sys.executable, "-c",
                               b.text + _SAVE_REPORT.format(name=f"line{b.line}.json")]}
    for b in SLOW_BLOCKS}))


def _check(block, ns, out):
    for key, check in CHECKS.items():
        if key in block.text:
            check(ns, out)


@pytest.mark.parametrize("block", FAST_BLOCKS, ids=[f"line{b.line}" for b in FAST_BLOCKS])
def test_python_block_runs(block, capsys):
    ns = {}
    exec(compile(block.text, f"README.md:{block.line}", "exec"), ns)
    _check(block, ns, capsys.readouterr().out)


@pytest.mark.parametrize("block", SLOW_BLOCKS, ids=[f"line{b.line}" for b in SLOW_BLOCKS])
def test_training_block_runs(block, readme_slow):
    r = readme_slow[f"line{block.line}"]
    assert r["code"] == 0, r["err"][-3000:]
    report = json.loads((readme_slow["workdir"] / f"line{block.line}.json").read_text())
    _check(block, {"result": types.SimpleNamespace(report=report)}, r["out"])


def test_every_python_block_with_a_result_is_checked():
    keys = [k for k in CHECKS if not any(k in b.text for b in PYTHON)]
    assert not keys, f"no README block contains {keys}: update CHECKS"


@pytest.mark.parametrize("block", SAMPLES, ids=[f"line{b.line}" for b in SAMPLES])
def test_output_sample_is_real_output(block, capsys):
    from tlkit import cli

    argv = shlex.split(block.note)[1:]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.rstrip() == block.text.rstrip(), \
        f"README.md:{block.line} differs from `{block.note}`; paste its output:\n{out}"


def test_zoo_table_counts_are_the_zoo_s():
    from tlkit.models import zoo

    rows = re.findall(r"^\| `(\w+)` \| (\d+)x(\d+)x(\d+) \| (\d+) \| ([\d,]+) \|",
                      README.read_text(), flags=re.M)
    real = {r["name"]: r for r in zoo.table()}
    assert {r[0] for r in rows} == set(real), "the README's zoo table lists other models"
    for name, h, w, c, classes, params in rows:
        r = real[name]
        assert (int(h), int(w), int(c)) == r["input_shape"], name
        assert int(classes) == r["num_classes"] and int(params.replace(",", "")) == r["params"]


def links(text):
    """Link and image targets outside code: `[x](t)`, `![x](t)`, `<img src="t">`, `<a href>`."""
    prose = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    found = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    found += re.findall(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", prose)
    return found


def anchors(text):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    heads = re.findall(r"^#+\s+(.*?)\s*$", re.sub(r"^\s*```.*?^\s*```", "", text,
                                                   flags=re.S | re.M), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_links_stay_inside_the_repository():
    text = README.read_text()
    found = links(text)
    assert found, "no links found: is the pattern still right?"
    for target in found:
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I), \
            f"{target}: the README links inside the repository only"
        path, _, anchor = target.partition("#")
        if not path:
            assert anchor in anchors(text), f"#{anchor}: no such heading"
            continue
        resolved = (README.parent / path).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        assert resolved.exists(), f"{target} does not exist"


def test_links_finds_what_it_must():
    text = ("[a](docs/x.md) ![b](img.png \"t\") <img src=\"c.png\"> `[no](code.md)`\n"
            "```\n[no](block.md)\n```\n")
    assert links(text) == ["docs/x.md", "img.png", "c.png"]


def test_every_tlkit_name_in_the_readme_is_an_attribute_after_import_tlkit():
    """`tlkit.model_card.write(...)` as the README writes it: each `tlkit.NAME` it mentions is
    reachable after a bare `import tlkit`, which itself imports no TensorFlow."""
    import subprocess

    names = sorted(set(re.findall(r"(?<![\w.])tlkit\.([a-z_]\w*)", README.read_text())))
    assert {"model_card", "data", "advise", "finetune"} <= set(names)
    code = f"""
import json, sys
import tlkit
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
missing = [n for n in {names!r} if not hasattr(tlkit, n)]
print(json.dumps({{"heavy": heavy, "missing": missing,
                   "write": callable(tlkit.model_card.write)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True, cwd=ROOT).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"heavy": [], "missing": [],
                                                        "write": True}
