"""The repository itself: self-contained files and declared dependencies."""
import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not contain them.
FOREIGN_PATHS = ("/" + "work/", ".." + "/shared")


def repository_files():
    """Tracked files plus new ones git does not ignore (what the next commit can hold)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def test_no_file_names_a_path_outside_the_repository():
    found = []
    for path in repository_files():
        for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
            if any(text in line for text in FOREIGN_PATHS):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "paths of a development machine:\n" + "\n".join(found)


def third_party_imports():
    """{top-level module: first file importing it} over leafseg/ and mrcnn/. Left out: the standard
    library, the own packages and optional imports (inside a ``try`` that handles their absence,
    e.g. imgaug for Matterport users' augmenters)."""
    modules = {}
    for path in sorted([*ROOT.glob("leafseg/**/*.py"), *ROOT.glob("mrcnn/**/*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        optional = {id(node) for block in ast.walk(tree) if isinstance(block, ast.Try)
                    for statement in block.body for node in ast.walk(statement)}
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("leafseg", "mrcnn", "__future__"):
                    modules.setdefault(top, path.relative_to(ROOT))
    return modules


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_a_requirement():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    required = {normalise(re.split(r"[<>=!~\[;\s]", line.strip())[0]) for line in lines
                if line.strip() and not line.startswith("#")}
    distributions = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    assert {"PIL", "cv2", "numpy", "tensorflow"} <= set(imports)
    missing = {module: str(path) for module, path in imports.items()
               if not required & {normalise(d) for d in distributions.get(module, [])}}
    assert not missing, f"imported but not in requirements.txt (module: first file): {missing}"


def extras_require():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == "extras_require"))


def test_notebooks_extra_installs_jupyterlab_and_papermill_and_the_readme_says_so():
    extras = extras_require()
    names = {normalise(re.split(r"[<>=!~\[;\s]", requirement)[0]) for requirement in extras["notebooks"]}
    assert {"jupyterlab", "papermill"} <= names
    assert not any(requirement.startswith("papermill") for requirement in extras["test"])
    assert 'pip install -e ".[notebooks]"' in (ROOT / "README.md").read_text(encoding="utf-8")
