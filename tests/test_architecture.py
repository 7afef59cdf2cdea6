"""The package's structure stays as designed: the README's layer table holds (no import climbs it), no import
cycles (imports inside functions count), no import of a module that does not exist, no module over 400 lines, and
the notebook stack (nbformat) is not needed to import the library."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gregnb"
README = PKG.parent / "README.md"
MAX_LINES = 400


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(path: Path, pkg: Path = PKG) -> list[tuple[int, str, list[str]]]:
    """Each import of the package in ``path`` (module level or inside functions) as ``(line, module, names)``:
    ``module`` absolute (relative imports resolved against the file's package; "" if they climb out of it),
    ``names`` what ``from module import ...`` takes (empty for ``import module``)."""
    name = module_name(path, pkg)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == pkg.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1] if node.level <= len(parts) else None
                target = "" if base is None else ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
                if target.split(".")[0] != pkg.name:
                    continue
            out.append((node.lineno, target, [a.name for a in node.names]))
    return out


def imports_of(path: Path, pkg: Path = PKG) -> set[str]:
    """Package modules imported anywhere in ``path`` (module level or inside functions), resolved to modules."""
    found = set()
    for _, target, names in import_statements(path, pkg):
        if target:
            found.add(target)
            found |= {f"{target}.{a}" for a in names}  # "from . import methods" names a module
    return found


def unresolved_imports(pkg: Path = PKG) -> list[str]:
    """``file:line module`` for each import (relative, or absolute into the package; inside functions too) whose
    module does not exist in the package: such an import only fails when that code runs."""
    modules = {module_name(p, pkg) for p in pkg.rglob("*.py")}
    bad = []
    for path in sorted(pkg.rglob("*.py")):
        for line, target, _ in sorted(import_statements(path, pkg)):
            if target not in modules:
                bad.append(f"{path.relative_to(pkg.parent)}:{line} {target or '(above the top package)'}")
    return bad


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


def readme_layers(text: str) -> list[set[str]]:
    """The README's layer table, first layer first: each row's module names (the backticked ones)."""
    body = text[text.index("\nLayers:"):]
    rows = re.findall(r"^\| *\d+\.[^|]*\|(.*)\|\s*$", body.split("\n## ")[0], flags=re.M)
    return [set(re.findall(r"`([\w.]+)`", row)) for row in rows]


def layer_violations(edges: dict[str, set[str]], layers: list[set[str]], top: str = "gregnb") -> list[str]:
    """Each import that climbs the layers (``a (layer i) -> b (layer j > i)``), and each module no row places.
    A module belongs to the row naming its longest prefix (``certify.study`` before ``certify``)."""
    where = {f"{top}.{name}": i for i, row in enumerate(layers) for name in row}

    def layer(module):
        prefixes = [p for p in where if module == p or module.startswith(p + ".")]
        return where[max(prefixes, key=len)] if prefixes else None

    bad = sorted(f"{m} is in no layer of the README's table" for m in edges if m != top and layer(m) is None)
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            la, lb = layer(a), layer(b)
            if None not in (la, lb) and lb > la:
                bad.append(f"{a} (layer {la + 1}) imports {b} (layer {lb + 1})")
    return bad


def test_the_readme_layer_table_holds():
    layers = readme_layers(README.read_text())
    assert len(layers) >= 5 and {"config", "train", "site"} <= set().union(*layers)
    bad = layer_violations(graph(), layers)
    assert not bad, f"imports against the README's layer table (move the code, or the module's row): {bad}"


def test_the_layer_check_catches_a_planted_climb_and_an_unplaced_module():
    layers = readme_layers("intro\nLayers: text\n\n| layer | modules |\n|---|---|\n| 1. base | `config`, `maths` |\n"
                           "| 2. course | `course`, `maths.study` (trains) |\n\n## Next\n| 3. x | `ignored` |\n")
    assert layers == [{"config", "maths"}, {"course", "maths.study"}]
    edges = {"gregnb.maths.core": {"gregnb.config"}, "gregnb.maths.study": {"gregnb.course", "gregnb.maths.core"},
             "gregnb.course": {"gregnb.maths"}, "gregnb.config": set()}
    assert layer_violations(edges, layers) == []
    edges["gregnb.maths.core"].add("gregnb.maths.study")  # maths reaching up into its course-layer submodule
    edges["gregnb.extra"] = set()
    assert layer_violations(edges, layers) == ["gregnb.extra is in no layer of the README's table",
                                                "gregnb.maths.core (layer 1) imports gregnb.maths.study (layer 2)"]


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_parent_package_importing_its_children_is_not_a_cycle_unless_they_import_back():
    edges = graph()
    assert "gregnb.train.loop" in edges["gregnb.train"]  # the reader sees the package's own imports


def test_every_import_into_the_package_resolves_to_a_module():
    bad = unresolved_imports()
    assert not bad, f"imports of modules that do not exist (they fail only when that code runs): {bad}"


def test_the_resolver_catches_a_planted_bad_import(tmp_path):
    pkg = tmp_path / "gregnb"
    for folder in (pkg / "train", pkg / "data"):
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import train\n")
    (pkg / "data" / "cifar.py").write_text("MARGINS = 1\n")
    (pkg / "train" / "cli.py").write_text(
        "import os\nfrom ..data.cifar import MARGINS\nimport gregnb.data.cifar\n\n\n"
        "def main():\n    if os.sep:\n        from .data.cifar import MARGINS  # one dot short\n"
        "    from gregnb.data.cifarr import MARGINS\n    from .... import nothing\n    return MARGINS\n")
    assert unresolved_imports(pkg) == ["gregnb/train/cli.py:8 gregnb.train.data.cifar",
                                       "gregnb/train/cli.py:9 gregnb.data.cifarr",
                                       "gregnb/train/cli.py:10 (above the top package)"]


def test_no_import_cycles_inside_gregnb():
    found = cycles(graph())
    assert not found, f"import cycles (imports inside functions count): {found}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_module_fits_on_a_few_screens(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG.parent)} has {n} lines (> {MAX_LINES}): split it by concern"


@pytest.mark.slow
def test_the_library_imports_without_the_notebook_stack():
    code = ("import sys; sys.modules['nbformat'] = None; sys.modules['nbclient'] = None\n"
            "import gregnb.site, gregnb.homework, gregnb.homework.release, gregnb.widgets, gregnb.experiments\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_the_suite_never_writes_the_checkouts_data_folder():
    """tests/conftest.py gives each session a temporary GREGNB_DATA; subprocesses and notebook kernels inherit it."""
    from gregnb.config import data_dir

    here = data_dir().resolve()
    assert here != (PKG.parent / "data").resolve() and PKG.parent not in here.parents
    out = subprocess.run([sys.executable, "-c", "from gregnb.config import data_dir; print(data_dir())"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and Path(out.stdout.strip()).resolve() == here, out.stderr[-2000:]
