"""notebooks/quickstart.ipynb runs top to bottom (small setting): data, a rendered query, the tiny
model, the SFT recipe in the kernel, vLLM evaluation, table and pictures (about 90 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes_end_to_end(tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("DEPTHLM_QUICKSTART_OUT", str(tmp_path / "run"))
    monkeypatch.setenv("DEPTHLM_QUICKSTART_TRAIN_IMAGES", "16")
    monkeypatch.setenv("DEPTHLM_QUICKSTART_HELDOUT_IMAGES", "8")
    monkeypatch.setenv("DEPTHLM_QUICKSTART_STEPS", "80")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "16 training records" in text
    assert "Q: How far is the point marked by the red arrow from the camera?" in text
    assert "depthlm sft --config" in text and '"f_uni": 150' in text
    assert "same settings as the preview: True" in text  # what it showed is what it trained on
    tables = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| tiny model after SFT |" in tables and "| constant (training median) |" in tables
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # the rendered query and the four pictures
    assert (tmp_path / "run" / "sft" / "model.safetensors").is_file()
