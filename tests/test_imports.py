"""Every ``pointformer`` import in the package, tools/ and tests/ names a module and a name that exist.

import-linter (``make lint``) checks the direction of imports, but an import of a module that no
longer exists (a lazy import inside a function, after a module moved) is invisible to it and fails
only when that code path runs. This test reads the source (nothing is imported) and resolves
``import pointformer.x`` / ``from pointformer.x import y`` against the files of the package.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pointformer"


def _module_file(name: str) -> Path | None:
    """The source file of module ``name`` (a package's ``__init__.py``), None when there is none."""
    path = ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


@functools.cache
def _top_level_names(path: Path) -> frozenset[str] | None:
    """Names a module defines at its top level (definitions, assignments, imports); None when it
    defines a module ``__getattr__`` (lazy names: any name may exist)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
                names.update(e.id for e in elements if isinstance(e, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return None if "__getattr__" in names else frozenset(names)


def _unresolved(path: Path) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [(node.module, a.name) for a in node.names]
        else:
            continue
        for module, name in targets:
            if module != "pointformer" and not module.startswith("pointformer."):
                continue
            if module == "pointformer._C" or name == "_C":
                continue  # the native extension: built, not a source file
            source = _module_file(module)
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno}"
            if source is None:
                problems.append(f"{where}: no module {module}")
            elif name not in (None, "*") and _module_file(f"{module}.{name}") is None:
                defined = _top_level_names(source)
                if defined is not None and name not in defined:
                    problems.append(f"{where}: {module} has no {name}")
    return problems


def test_every_pointformer_import_resolves():
    files = [p for d in ("pointformer", "tools", "tests") for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 100
    problems = [problem for path in files for problem in _unresolved(path)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_stale_import(tmp_path):
    stale = tmp_path / "stale.py"
    stale.write_text(
        "def f():\n"
        "    from pointformer.utils.benchmark import main\n"
        "    from pointformer.data.convert import no_such_name\n"
        "    from pointformer.data.convert import waymo, main\n"
    )
    problems = [p.split(": ", 1)[1] for p in _unresolved(stale)]
    assert problems == ["no module pointformer.utils.benchmark", "pointformer.data.convert has no no_such_name"]
