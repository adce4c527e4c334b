"""The notebooks run top to bottom against a tiny sweep made here."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import grokjax

pytestmark = pytest.mark.slow  # real processes, a browser or notebooks: pytest -m "not slow" skips them

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from tests.conftest import TINY_SWEEP

    folder = tmp_path_factory.mktemp("nb")
    path = folder / "tiny.toml"
    path.write_text(TINY_SWEEP.replace("steps = 30", "steps = 60") + "[analysis]\nprogress = true\n")
    return grokjax.run_sweep(path, out=folder / "results", progress=False, plots=False).folder


def test_notebooks_are_committed_without_outputs():
    assert [n.name for n in NOTEBOOKS] == ["neurons.ipynb", "phase_diagrams.ipynb", "progress_measures.ipynb",
                                           "training_curves.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        folder = "progress_measures_small" if path.stem == "progress_measures" else "quickstart"
        assert f'RESULTS = "../results/{folder}"' in nb.cells[0].source
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
        markdown = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()]
        assert not [line for line in markdown if line.startswith("md")], "a heading is '# Title', not 'md# Title'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs(path, tiny_folder):
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = f"RESULTS = {str(tiny_folder)!r}"
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    charts = [o for o in outputs if "vegaEmbed" in o.get("data", {}).get("text/html", "")]
    assert len(charts) >= 3, "the notebook draws its charts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_on_the_committed_results(path):
    """As a fresh clone opens them: against results/quickstart (and progress_measures_small) as committed (no
    trained weights there)."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
