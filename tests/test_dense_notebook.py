"""notebooks/dense.ipynb runs top to bottom: dry run, tiny model, interpolation scores, PLY."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "dense.ipynb"


@pytest.mark.slow
def test_dense_notebook_executes(tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("DEPTHLM_DENSE_NB_OUT", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "'points': 192, 'answered_points': 192" in text  # the dry run answers every pixel
    assert "24 points," in text and "without a distance" in text
    assert "jbu    delta1" in text and "linear delta1" in text
    assert "76800 vertices" in text or "vertices; max re-projection error 0.00" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert (tmp_path / "dry" / "cloud.ply").is_file()
