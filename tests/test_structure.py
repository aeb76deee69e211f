"""The packages' structure, read from their source with ``ast``: mrcnn never imports leafseg,
neither package has an import cycle among its own modules, and docs/ARCHITECTURE.md maps every
module."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules_of(package):
    """{dotted module name: file} of a package's modules; the package itself is its __init__.py."""
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(path, module, in_functions=True):
    """Dotted names a file imports: ``import a.b`` gives a.b, ``from a import b`` gives a and a.b.

    Relative imports are resolved against ``module``. in_functions: False leaves out the imports
    inside functions (those run when the function is called, not when the module is imported).
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node, in_function):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if in_functions or not nested:
                yield from visit(child, nested)

    return set(visit(ast.parse(path.read_text(), filename=str(path)), False))


def import_graph(package, in_functions=True):
    """{module: sorted modules of the same package it imports}."""
    modules = modules_of(package)
    return {module: sorted((imports_of(path, module, in_functions) & set(modules)) - {module})
            for module, path in modules.items()}


def find_cycle(graph):
    """One import cycle of ``graph`` as [a, b, ..., a], or None when it is acyclic."""
    state = {}  # module -> "open" while on the current path, "done" once fully explored
    path = []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in graph[module]:
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in graph:
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_find_cycle_reports_the_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_imports_inside_functions_count_unless_left_out(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from pkg import a\nimport pkg.b as b\n\ndef f():\n    from pkg.c import x\n    from . import d\n")
    assert imports_of(path, "pkg.m") == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.c.x", "pkg.d"}
    assert imports_of(path, "pkg.m", in_functions=False) == {"pkg", "pkg.a", "pkg.b"}


def test_mrcnn_never_imports_leafseg():
    offenders = {module: sorted(name for name in imports_of(path, module) if name.split(".")[0] == "leafseg")
                 for module, path in modules_of("mrcnn").items()}
    assert {module: names for module, names in offenders.items() if names} == {}


@pytest.mark.parametrize("package", ["mrcnn", "leafseg"])
def test_no_import_cycle(package):
    graph = import_graph(package)
    assert len(graph) > 5  # the package was found
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle)}"


@pytest.mark.parametrize("package", ["mrcnn", "leafseg"])
def test_the_architecture_page_maps_every_module(package):
    """Each module file (``name.py``) and sub-package (``name/``) has its line in the map."""
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    top = ROOT / package
    names = [f"{path.name}/" if path.is_dir() else path.name for path in sorted(top.iterdir())
             if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()]
    assert len(names) > 5
    assert [name for name in names if f"    {name}" not in page] == []
