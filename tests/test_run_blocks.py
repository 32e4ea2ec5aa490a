"""The ``blocks`` step of ``cip run``: fits the blocks of cip.yaml after training, says why not.

Cheap: the small shop of ``tests._blocks_shop`` written straight into the store,
the step run through :func:`run_pipeline` with stub steps around it.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
import yaml
from cip.pipelines.run import Step, last_run, pipeline_state, run_pipeline
from cip.pipelines.steps import DEFAULT_STEPS
from cip.pipelines.workspace import Workspace

from tests._blocks_shop import load_shop

BLOCKS = {"home": {"kind": "popular", "k": 4}, "again": {"kind": "buy_again", "k": 3}}


def _configure(ws: Workspace, **run: object) -> Workspace:
    raw = yaml.safe_load(ws.config_path.read_text()) or {}
    raw["blocks"] = BLOCKS
    if run:
        raw["run"] = run
    ws.config_path.write_text(yaml.safe_dump(raw))
    return Workspace.open(ws.root)


def _blocks_step() -> Step:
    return next(s for s in DEFAULT_STEPS if s.name == "blocks")


def test_blocks_run_after_training_and_before_exports() -> None:
    names = [s.name for s in DEFAULT_STEPS]
    assert names.index("train") < names.index("blocks") < names.index("exports")
    assert names.index("blocks") < names.index("segments")  # exports' recommend columns use them


def test_the_blocks_step_fits_the_configured_blocks_and_resumes_after_a_crash(
    tmp_workspace: Workspace,
) -> None:
    from cip.pipelines.workflows.blocks import blocks_path, load_saved_blocks

    ws = _configure(tmp_workspace)
    lines = load_shop(ws)
    fits: list[date | None] = []
    blocks = _blocks_step()

    def counted(w, as_of):
        fits.append(as_of)
        return blocks.fn(w, as_of)

    crash = {"after": True}

    def after(w, as_of):
        if crash["after"]:
            raise RuntimeError("killed")
        return {}

    steps = [
        Step("ingest", lambda w, a: {}, "stub"),
        Step("blocks", counted, blocks.description),
        Step("after", after, "fails once"),
    ]
    with pytest.raises(RuntimeError):
        run_pipeline(ws, steps=steps, as_of=date(2024, 8, 1))
    assert last_run(ws, steps)["unfinished_at"] == "after"
    saved = load_saved_blocks(ws)
    assert set(saved.kinds) == {"home", "again"} and saved.k == {"home": 4, "again": 3}
    # as_of 2024-08-01: only the lines before it
    assert saved.blocks.history.as_of.date() == date(2024, 8, 1)
    state = pipeline_state(ws)
    summary = json.loads(state.loc[state["step"] == "blocks", "summary"].iloc[0])
    assert summary["fitted"] == 2 and summary["people"] == 80 and summary["items"] == 40
    assert summary["order_lines"] == int((lines["ts"] < "2024-08-01").sum())
    stamp = blocks_path(ws).stat().st_mtime_ns

    crash["after"] = False
    res = run_pipeline(ws, steps=steps, as_of=date(2030, 1, 1))
    assert res.resumed and res.steps["blocks"] == {"status": "done earlier"}
    assert fits == [date(2024, 8, 1)]  # not refitted on resume
    assert blocks_path(ws).stat().st_mtime_ns == stamp

    res = run_pipeline(ws, steps=steps, as_of=date(2024, 9, 1))  # a new run fits again
    s = res.steps["blocks"]
    assert fits == [date(2024, 8, 1), date(2024, 9, 1)] and s["fitted"] == 2
    assert s["order_lines"] == int((lines["ts"] < "2024-09-01").sum()) > summary["order_lines"]
    assert s["version"].startswith("blocks-") and s["version"] != summary["version"]


def test_the_blocks_step_says_why_it_fits_nothing(tmp_workspace: Workspace) -> None:
    step = _blocks_step()
    ws = _configure(tmp_workspace)
    with ws.open_store() as store:
        store.ensure_schema()
    out = step.fn(ws, date(2024, 1, 1))
    assert out["fitted"] == 0 and "no completed order lines" in out["reason"]
    ws = _configure(ws, blocks=False)
    load_shop(ws)
    out = step.fn(ws, date(2024, 9, 1))
    assert out == {"fitted": 0, "reason": "run.blocks is false in cip.yaml"}
    from cip.pipelines.workflows.blocks import blocks_path

    assert not blocks_path(ws).exists()
