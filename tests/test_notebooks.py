"""Every notebook in notebooks/ runs top to bottom on small data (nbclient)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

#: notebooks with a test of their own that also checks what they print
DEDICATED = {"04_segments.ipynb"}
NOTEBOOKS = [
    p
    for p in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    if p.name not in DEDICATED
]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch) -> None:
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    monkeypatch.setenv("CIP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("CIP_NB_CUSTOMERS", "600")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    repo = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
