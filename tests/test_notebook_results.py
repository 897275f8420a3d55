"""notebooks/results.ipynb runs top to bottom on a real run folder (a baseline on iBims-1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from depthlm.evaluation import evaluate, load_datasets
from depthlm.inference import make_backend
from depthlm.settings import RenderSettings

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "results.ipynb"


def test_results_notebook_executes_and_shows_plots_and_worst_images(ibims1_any, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run_dir = tmp_path / "run"
    data = load_datasets([f"ibims1={ibims1_any}"])
    evaluate(
        make_backend(None, "constant:2.0", RenderSettings()), data, run_dir, max_queries=30, progress=False
    )
    monkeypatch.setenv("DEPTHLM_RESULTS", str(run_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # three saved plots and the figure of worst predictions
    text = "".join(o.get("text", "") for o in outputs)
    assert "model constant:2 (constant), 30 predictions" in text
    assert "question: How far is the point marked by the red arrow from the camera?" in text
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("delta1" in o["data"]["text/html"] for o in tables)
