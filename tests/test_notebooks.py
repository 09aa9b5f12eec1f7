"""The walkthrough notebooks run end to end (tiny settings) and are committed without outputs."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_undersampling.ipynb", "02_loss_comparison.ipynb", "03_serving.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before committing"
        assert "class " not in cell.source, f"{path.name}: notebooks import from the package, define no classes"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("KERASRECON_NB_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The notebooks write their runs under tempfile.mkdtemp() for a reader to inspect; under test that
    # is pytest's own tmp_path (pruned by pytest), not the system's temporary directory (~0.5 GB a run).
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    if "mkdtemp" in path.read_text():
        assert any(scratch.glob("kerasrecon-nb*")), "the notebook's output directory is not under TMPDIR"
