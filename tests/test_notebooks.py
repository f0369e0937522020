"""Runs every notebook in notebooks/ in fast mode and checks its conventions.

The conventions (Colab badge, install cell, fast-mode switch, no machine paths)
are written down in notebooks/README.md. To refresh a notebook's stored outputs
with a full run, from the repository root:

    python tests/test_notebooks.py notebooks/quickstart.ipynb

(add ``--fast`` to store a fast run instead).
"""

import os
import pathlib
import re
import sys

import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
FAST_ENV = "SAL_NOTEBOOK_FAST"
KERNEL_NAME = "python3"  # the kernel ipykernel ships; no install step needed
CELL_TIMEOUT_S = 600
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_URL = "https://colab.research.google.com/github/sal-optax/sal-optax/blob/main/notebooks/{}"
# The target of every markdown link "[text](target)", images included.
LINK_TARGET = re.compile(r"\]\(([^()\s]+)\)")
# Home folders, temporary folders and drive letters of a particular machine.
MACHINE_PATH = re.compile(
    r"/(home|Users|root|tmp|work|content|private|mnt|opt)/|\b[A-Z]:\\\\"
)


def execute(path: pathlib.Path, *, fast: bool) -> "nbformat.NotebookNode":
    """Runs a notebook top to bottom from notebooks/, as a reader would.

    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell.
    """
    notebook = nbformat.read(path, as_version=4)
    previous = os.environ.get(FAST_ENV)
    os.environ[FAST_ENV] = "1" if fast else "0"  # the kernel inherits it
    try:
        client = nbclient.NotebookClient(
            notebook,
            kernel_name=KERNEL_NAME,
            timeout=CELL_TIMEOUT_S,
            record_timing=False,  # no timestamps in the stored file
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    finally:
        if previous is None:
            del os.environ[FAST_ENV]
        else:
            os.environ[FAST_ENV] = previous
    return notebook


def _ids(paths):
    return [p.stem for p in paths]


def _texts(notebook) -> list[str]:
    # Sources and text outputs; images are skipped, since base64 can spell a path.
    texts = []
    for cell in notebook.cells:
        texts.append(cell.source)
        for output in cell.get("outputs", []):
            texts.append(str(output.get("text", "")))
            texts.append(str(output.get("traceback", "")))
            data = output.get("data", {})
            texts.extend(str(v) for k, v in data.items() if k.startswith("text/"))
    return texts


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR.name}/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_fast_mode(path):
    notebook = execute(path, fast=True)

    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_follows_the_conventions(path):
    notebook = nbformat.read(path, as_version=4)
    cells = notebook.cells

    title = cells[0]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    links = LINK_TARGET.findall(title.source)
    assert BADGE_IMAGE in links
    assert BADGE_URL.format(path.name) in links, f"badge links to {links}"

    install, parameters = [c for c in cells if c.cell_type == "code"][:2]
    assert 'find_spec("sal_optax") is None' in install.source
    assert "pip install" in install.source

    assert f'os.environ.get("{FAST_ENV}")' in parameters.source
    assert "FAST" in parameters.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_keeps_outputs_and_no_machine_paths(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]

    counts = [cell.execution_count for cell in code]
    assert None not in counts, "store the outputs of a run (see module docstring)"
    assert counts == sorted(counts), "outputs must come from one top-to-bottom run"

    found = [m.group(0) for t in _texts(notebook) for m in MACHINE_PATH.finditer(t)]
    assert not found, f"absolute machine paths in sources or outputs: {found}"


def test_badge_check_can_fail():
    badge = f"[![Open In Colab]({BADGE_IMAGE})]({BADGE_URL.format('a.ipynb')})"
    assert LINK_TARGET.findall(badge) == [BADGE_IMAGE, BADGE_URL.format("a.ipynb")]
    doubled = badge.replace("a.ipynb", "a.ipynb.ipynb")
    assert BADGE_URL.format("a.ipynb") not in LINK_TARGET.findall(doubled)


def test_machine_path_check_can_fail():
    # Built from parts so that this file itself holds no machine path.
    home, temp = "/" + "home/me/sal-optax", "/" + "tmp/ipykernel_1/123.py"
    assert MACHINE_PATH.search(f'sys.path.insert(0, "{home}")')
    assert MACHINE_PATH.search(f"File {temp}, line 4")
    assert MACHINE_PATH.search('"C:\\\\Users\\\\me"')
    assert not MACHINE_PATH.search('sys.path.insert(0, str(pathlib.Path("..")))')


if __name__ == "__main__":
    fast = "--fast" in sys.argv[1:]
    for name in (arg for arg in sys.argv[1:] if arg != "--fast"):
        target = pathlib.Path(name).resolve()
        nbformat.write(execute(target, fast=fast), target)
        print(f"stored the outputs of a {'fast' if fast else 'full'} run in {name}")
