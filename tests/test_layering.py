"""The layers of tlkit, read from the code: no module imports from a layer above its own, and
no two modules import each other, directly or around a loop.

Imports are read with `ast`, at module level and inside functions alike (an import inside a
function is still a dependency; it only runs later). The order, bottom to top (README,
"Layout"):

    core < config < data < models < training < deploy < evaluation (with calibrate)
         < tools (advise, explain, audit) < workflows < tuning, experiments < cli < tlkit

`tlkit/__init__.py` is the facade at the top: it names everything, lazily. Every other
module imports the module that owns a name, never the facade (`import tlkit`) nor a public
alias (`from tlkit import zoo`, which resolves to the facade here and so counts as upward).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "tlkit"

LAYERS = ["core", "config", "data", "models", "training", "deploy", "evaluation", "tools",
          "workflows", "apps", "cli", "facade"]
# top-level package below tlkit -> its layer (a package not named here is an error)
PACKAGE_LAYER = {
    "core": "core", "config": "config", "data": "data", "models": "models",
    "training": "training", "deploy": "deploy", "evaluation": "evaluation",
    "calibrate": "evaluation",  # predict applies its temperature; recalibrate reads artifacts
    "advise": "tools", "explain": "tools", "audit": "tools",
    "workflows": "workflows",
    "tuning": "apps", "experiments": "apps",  # every trial / cell runs through tlkit.finetune
    "cli": "cli",
}

# The upward imports that stay, (importer, imported), each with why. At most 2.
ALLOWED_UPWARD = {
}


def module_name(path, root):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def read_imports(sources):
    """{module: {imported tlkit module, ...}} from {module: (source, is_package)}: every
    `import` and `from ... import` anywhere in the module, relative ones resolved."""
    known = set(sources)
    graph = {}
    for name, (text, is_package) in sources.items():
        package = name if is_package else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "tlkit"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] != "tlkit":
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    found.add(sub if sub in known else base)
        graph[name] = {_owner(m, known) for m in found} - {name}
    return graph


def _owner(name, known):
    """The longest known module that `name` (a module or a module's attribute) lies in."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def layer_of(module):
    if module == "tlkit":
        return "facade"
    return PACKAGE_LAYER[module.split(".")[1]]


def upward_imports(graph):
    """[(importer, imported)] where the imported module's layer is above the importer's."""
    return sorted((m, t) for m, targets in graph.items() for t in targets
                  if LAYERS.index(layer_of(t)) > LAYERS.index(layer_of(m)))


def cycles(graph):
    """Each import cycle once, as a list of modules (Tarjan's strongly connected components)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def tlkit_sources():
    return {module_name(p, ROOT): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(ROOT.rglob("*.py"))}


GRAPH = read_imports(tlkit_sources())


def test_every_package_has_a_layer():
    tops = {m.split(".")[1] for m in GRAPH if m != "tlkit"}
    assert tops - set(PACKAGE_LAYER) == set(), "a new package: give it a layer here"
    assert set(PACKAGE_LAYER) - tops == set()


def test_every_imported_tlkit_module_exists():
    missing = sorted({(m, t) for m, targets in GRAPH.items() for t in targets if t not in GRAPH})
    assert missing == []


def test_no_import_goes_up_a_layer():
    assert len(ALLOWED_UPWARD) <= 2
    assert [pair for pair in upward_imports(GRAPH) if pair not in ALLOWED_UPWARD] == []


def test_the_allowed_upward_imports_are_still_needed():
    assert set(ALLOWED_UPWARD) <= set(upward_imports(GRAPH))


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_the_checker_sees_an_upward_import_and_a_cycle():
    # a fake tree: core reaches up to training inside a function, training imports core,
    # and two evaluation modules import each other through a relative import
    fake = {
        "tlkit": ("", True),
        "tlkit.core": ("", True),
        "tlkit.core.errors": ("def f():\n    from tlkit.training.train import fit\n", False),
        "tlkit.training": ("", True),
        "tlkit.training.train": ("from tlkit.core import errors\nimport tlkit\n", False),
        "tlkit.evaluation": ("", True),
        "tlkit.evaluation.report": ("from .plots import figure\n", False),
        "tlkit.evaluation.plots": ("from tlkit.evaluation import report\n", False),
    }
    graph = read_imports(fake)
    assert graph["tlkit.core.errors"] == {"tlkit.training.train"}
    assert graph["tlkit.evaluation.report"] == {"tlkit.evaluation.plots"}
    assert upward_imports(graph) == [("tlkit.core.errors", "tlkit.training.train"),
                                     ("tlkit.training.train", "tlkit")]
    assert cycles(graph) == [["tlkit.core.errors", "tlkit.training.train"],
                             ["tlkit.evaluation.plots", "tlkit.evaluation.report"]]


@pytest.mark.parametrize("package", sorted(PACKAGE_LAYER))
def test_every_package_states_its_contract(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc and len(doc) > 150
