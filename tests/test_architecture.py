"""The house rules, checked on the source: layers never import upwards and no modules import each other
in a circle (module-level and function-level imports alike)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("milp", "models", "pipelines")

#: top to bottom: cli -> experiments -> constructions -> shared pipeline modules -> models, milp
LAYERS = [
    ("pipelines.cli", 4),
    ("pipelines.experiments", 3),
    ("pipelines.constructions", 2),
    ("pipelines", 1),  # paths, data, targets, verify, metrics, reporting
    ("models", 0),
    ("milp", 0),
]


def layer(module: str) -> int:
    for prefix, level in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return level
    raise AssertionError(module)


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (resolved to the longest known module name)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            parts = t.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in known:
                    if cand != name:
                        found.add(cand)
                    break
    return found


GRAPH = None


def graph() -> dict[str, set[str]]:
    global GRAPH
    if GRAPH is None:
        mods = modules()
        GRAPH = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    return GRAPH


def test_no_import_points_up_a_layer():
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if layer(dep) > layer(mod):
                bad.append(f"{mod} -> {dep}")
            if {mod.split(".")[0], dep.split(".")[0]} == {"milp", "models"}:
                bad.append(f"{mod} -> {dep} (milp and models are independent)")
    assert not bad, "imports pointing up:\n" + "\n".join(sorted(bad))


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _without_package_reexports(g):
    """A package's ``__init__`` re-exporting its own submodules is not a circle by itself: drop the edges
    from a package to its own submodules (the submodule -> package edge is what a circle needs twice)."""
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in g.items()}


def test_no_import_circles():
    cycles = _cycles(_without_package_reexports(graph()))
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("expected", ["pipelines.constructions.iclr", "pipelines.experiments.iclr_lenet5",
                                      "pipelines.cli.prune", "milp.backends.auto"])
def test_the_homes_exist(expected):
    assert expected in graph()
