"""The package's structure stays as designed: no import cycles (imports inside functions count), no module
over 400 lines, and the notebook stack (nbformat) is not needed to import the library."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gregnb"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """gregnb modules imported anywhere in ``path`` (module level or inside functions), resolved to modules."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gregnb")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("gregnb"):
                continue
            if node.module:
                found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # "from . import methods" names a module
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    edges = {}
    for name, path in files.items():
        targets = set()
        for t in imports_of(path):
            while t and t not in files:  # "from .x import name" -> module x
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name and not name.startswith(t + "."):  # a module always sits inside its packages
                targets.add(t)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_parent_package_importing_its_children_is_not_a_cycle_unless_they_import_back():
    edges = graph()
    assert "gregnb.train.loop" in edges["gregnb.train"]  # the reader sees the package's own imports


def test_no_import_cycles_inside_gregnb():
    found = cycles(graph())
    assert not found, f"import cycles (imports inside functions count): {found}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_module_fits_on_a_few_screens(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG.parent)} has {n} lines (> {MAX_LINES}): split it by concern"


def test_the_library_imports_without_the_notebook_stack():
    code = ("import sys; sys.modules['nbformat'] = None; sys.modules['nbclient'] = None\n"
            "import gregnb.site, gregnb.homework, gregnb.homework.release, gregnb.widgets, gregnb.experiments\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
