"""The inspection notebooks run top to bottom on their built-in defaults and draw their figures.

Each notebook is executed in a fresh Jupyter kernel of this interpreter (``sys.executable``,
through a kernel spec written to a temporary folder, so whatever kernels the machine has
installed play no part), after a cell injected below its "parameters" cell points CACHE_DIR at
a folder shared by the whole test run: the first notebook to need the built-in tiny model
trains it (about a minute on two cores, under leafseg.inspect's file lock), the others wait
for it and reuse it, in this process or in other pytest-xdist workers. Any error in a cell
fails the test. Then every section (a "## " heading and the cells up to the next one) must
have produced at least one image/png output. The executed copies are written to tmp_path;
the committed notebooks must hold no outputs.
"""
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("inspect_leaf_data", "inspect_leaf_model", "inspect_training")
KERNEL = "leafseg-test-python"
# A cell that hangs is an error; the slowest cell (training the tiny model on a busy machine)
# takes a few minutes at most.
CELL_TIMEOUT = 900


@pytest.fixture(scope="session")
def kernel_manager_factory(tmp_path_factory):
    """Makes kernel managers of this interpreter, from a kernel spec in a temporary folder;
    the connection file goes to the given folder too (not to the user's Jupyter runtime folder)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    (kernels / KERNEL).mkdir()
    (kernels / KERNEL / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "leafseg tests", "language": "python"}))

    def factory(folder):
        return KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
                             connection_file=str(folder / "kernel-connection.json"))

    return factory


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """The built-in assets' cache folder, one per test run (shared by the xdist workers)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "inspect_cache"
    root.mkdir(exist_ok=True)
    return root


def sections(nb):
    """[(heading, [code cells])] of the "## " sections, in order."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = next((line for line in cell.source.splitlines() if line.startswith("## ")), None)
            if heading:
                found.append((heading[3:].strip(), []))
        elif cell.cell_type == "code" and found:
            found[-1][1].append(cell)
    return found


def images(cells):
    return sum(1 for cell in cells for output in cell.get("outputs", [])
               if "image/png" in output.get("data", {}))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs_and_has_parameters(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), \
        f"{name}.ipynb holds outputs: strip them before committing"
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert "CACHE_DIR = None" in code[0].source
    assert len(sections(nb)) >= 2


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_draws_every_section(name, kernel_manager_factory, shared_cache, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    position = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(f"CACHE_DIR = {str(shared_cache)!r}")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(position + 1, injected)

    started = time.monotonic()
    client = NotebookClient(nb, km=kernel_manager_factory(tmp_path), timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / f"{name}.executed.ipynb")
    print(f"{name}: executed in {time.monotonic() - started:.0f} s -> {tmp_path / f'{name}.executed.ipynb'}")

    found = sections(nb)
    assert found, f"{name} has no '## ' sections"
    missing = [heading for heading, cells in found if images(cells) == 0]
    assert not missing, f"{name}: sections without a figure: {missing}"
    errors = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors
