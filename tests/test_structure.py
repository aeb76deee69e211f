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
    nested = [f"{path.parent.name}/{path.name}" for path in sorted(top.glob("*/*.py")) if path.name != "__init__.py"]
    assert [name for name in nested if name not in page] == []


# leafseg's job packages, bottom up, and the packages each may import. What is not listed is
# forbidden: data and synth never reach training or inference, measure never the command line,
# and only leafseg.cli (the commands), demo, benchmark and inspect sit above everything.
JOBS = {
    "data": set(),
    "models": set(),
    "synth": {"data"},
    "measure": {"data"},
    "inference": {"data", "models", "measure", "synth"},
    "training": {"data", "models", "measure", "synth", "inference"},
}
# Top-level modules every package may use: the presets and the compute precisions.
FOUNDATIONS = {"leafseg.config", "leafseg.precision"}
# The command-line package; training.train's argv API (recipe calls it) builds on its options.
CLI = "leafseg.cli"
CLI_OPTIONS_USERS = {"leafseg.training.train"}


def job_of(module):
    """The job package of a leafseg module ('data', ...), or None for the top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in JOBS else None


def test_every_subpackage_is_a_job_or_a_top_level_part():
    packages = {path.parent.name for path in (ROOT / "leafseg").glob("*/__init__.py")}
    assert packages == set(JOBS) | {"cli", "inspect"}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_job_imports_only_the_jobs_below_it(job):
    graph = import_graph("leafseg")
    offenders = {}
    for module, targets in graph.items():
        if job_of(module) != job:
            continue
        bad = []
        for target in targets:
            target_job = job_of(target)
            if target in FOUNDATIONS or target in ("leafseg", f"leafseg.{job}"):
                continue
            if target == CLI or target.startswith(CLI + "."):
                if not (module in CLI_OPTIONS_USERS and target == "leafseg.cli.options"):
                    bad.append(target)
            elif target_job is None or (target_job != job and target_job not in JOBS[job]):
                bad.append(target)
        if bad:
            offenders[module] = bad
    assert offenders == {}


def test_the_allowed_job_imports_have_no_cycle():
    assert find_cycle({job: sorted(below) for job, below in JOBS.items()}) is None


def test_measure_imports_no_command_line_code():
    graph = import_graph("leafseg")
    assert {module: [t for t in targets if t == CLI or t.startswith(CLI + ".") or t.endswith(".argparse")]
            for module, targets in graph.items() if job_of(module) == "measure"} == {
        module: [] for module in graph if job_of(module) == "measure"}
    for module, path in modules_of("leafseg").items():
        if job_of(module) in ("measure", "data", "synth"):
            assert "argparse" not in imports_of(path, module), f"{module} parses a command line"


def test_each_command_is_a_module_of_the_cli_package():
    from leafseg.cli import COMMANDS

    assert {module for module, _ in COMMANDS.values()} == {f"leafseg.cli.{name}" for name in COMMANDS}
    assert all((ROOT / "leafseg" / "cli" / f"{name}.py").is_file() for name in COMMANDS)


ALIASES = {"dataset": "data.dataset", "cluster": "inference.cluster", "zoo": "models.zoo",
           "loading": "models.loading", "metrics": "measure.metrics", "phenotype": "measure.phenotype"}


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_an_old_module_name_is_the_same_module(old, new):
    import importlib

    assert importlib.import_module(f"leafseg.{old}") is importlib.import_module(f"leafseg.{new}")


def test_the_only_top_level_modules_are_the_aliases_and_the_top_parts():
    top = {path.stem for path in (ROOT / "leafseg").glob("*.py")} - {"__init__"}
    assert top == set(ALIASES) | {"__main__", "config", "precision", "demo", "benchmark"}
    for name in ALIASES:
        assert "Alias of" in (ROOT / "leafseg" / f"{name}.py").read_text()
