"""examples/quickstart.ipynb runs top to bottom (so it cannot rot): load, extract, fit, steer, finetune, track."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes(smollm2, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat/nbclient/ipykernel")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("EMPROBE_THREADS", "1")  # the kernel inherits it; the notebook's first cell reads it
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's work directory (tempfile.mkdtemp) lands here
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
    outputs = {i: "".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")) for o in c.get("outputs", []))
               for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    text = "\n".join(outputs.values())
    assert "best layer" in text and "held-out AUROC" in text
    assert "mean margin" in text and "steered" in text
    assert "table.parquet" in text and "summary.json" in text
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
