"""``cip run``: resumable steps, the workspace lock."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import yaml
from cip.pipelines.cli import main
from cip.pipelines.run import Step, last_run, run_pipeline, workspace_lock
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConflictError


def test_a_failed_step_is_resumed_with_the_same_as_of(tmp_workspace: Workspace) -> None:
    calls: list[tuple[str, date | None]] = []
    fail = {"b": True}

    def step(name):
        def fn(ws, as_of):
            calls.append((name, as_of))
            if fail.get(name):
                raise RuntimeError("killed")
            return {"ok": name}

        return Step(name, fn, name)

    steps = [Step("ingest", lambda ws, a: {"n": 0}, "i"), step("a"), step("b"), step("c")]
    with pytest.raises(RuntimeError):
        run_pipeline(tmp_workspace, steps=steps, as_of=date(2024, 1, 1))
    stopped = last_run(tmp_workspace, steps)
    assert (stopped["unfinished_at"], stopped["steps_done"], stopped["steps"]) == ("b", 2, 4)
    assert stopped["as_of"] == "2024-01-01" and stopped["finished_at"] is None
    fail["b"] = False
    res = run_pipeline(tmp_workspace, steps=steps, as_of=date(2030, 1, 1))
    assert res.resumed and res.as_of == date(2024, 1, 1)
    assert res.steps["a"] == {"status": "done earlier"} and res.steps["c"] == {"ok": "c"}
    assert calls == [
        ("a", date(2024, 1, 1)),
        ("b", date(2024, 1, 1)),
        ("b", date(2024, 1, 1)),
        ("c", date(2024, 1, 1)),
    ]
    res = run_pipeline(tmp_workspace, steps=steps, as_of=date(2030, 1, 1))
    assert not res.resumed and res.as_of == date(2030, 1, 1)
    done = last_run(tmp_workspace, steps)
    assert done["unfinished_at"] is None and done["steps_done"] == 4 and done["finished_at"]


def test_second_run_is_refused_while_one_holds_the_lock(tmp_workspace: Workspace, capsys) -> None:
    code = (
        "import sys, time; from pipelines.workspace import Workspace; "
        "from cip.pipelines.run import workspace_lock\n"
        "with workspace_lock(Workspace.open(sys.argv[1])):\n"
        "    print('locked', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_workspace.root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with (
            pytest.raises(ConflictError, match=r"busy: cip run \(pid \d+"),
            workspace_lock(tmp_workspace),
        ):
            pass
        assert main(["--workspace", str(tmp_workspace.root), "run"]) == 75  # busy, retry later
        err = capsys.readouterr().err.strip()
        assert "is busy" in err and "nothing was changed" in err and "\n" not in err
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.1)
    with workspace_lock(tmp_workspace):  # released by the kernel after kill -9
        pass


def test_cip_run_on_an_empty_workspace_says_what_is_missing(tmp_workspace, capsys) -> None:
    assert main(["--workspace", str(tmp_workspace.root), "run", "--json"]) == 3  # ConfigError
    assert "no sources declared" in capsys.readouterr().err


def test_segment_exports_config_is_checked(tmp_path: Path) -> None:
    from cip.pipelines.config import load_config
    from cip.profiles.errors import ConfigError

    cfg = tmp_path / "cip.yaml"

    def exports(*items: dict) -> None:
        cfg.write_text(yaml.safe_dump({"segments": {"exports": list(items)}}))

    exports({"segment": "champions", "path": "out/champions.parquet", "changes": "entered"})
    (e,) = load_config(cfg).segments.exports
    assert (e.format, e.purpose, e.changes) == ("parquet", None, "entered")
    exports({"segment": "champs", "path": "x.csv"})
    with pytest.raises(ConfigError, match=r"cip\.yaml: segments: .*unknown segments \['champs'\]"):
        load_config(cfg)
    exports({"segment": "champions", "path": "x.txt"})
    with pytest.raises(ConfigError, match="cannot tell the format of 'x.txt'"):
        load_config(cfg)


def test_exports_step_writes_built_segments_and_skips_unbuilt_ones(tmp_workspace) -> None:
    from cip.activation import build_segments, default_definitions, select_definitions
    from cip.pipelines.steps import DEFAULT_STEPS

    ws = tmp_workspace
    raw = yaml.safe_load(ws.config_path.read_text()) or {}
    raw["segments"] = {
        "exports": [
            {"segment": "champions", "path": "exports/champions.jsonl"},
            {"segment": "likely_buyers", "path": "exports/likely.csv"},
        ]
    }
    ws.config_path.write_text(yaml.safe_dump(raw))
    ws = Workspace.open(ws.root)
    with ws.open_store() as store:
        store.execute(
            "CREATE TABLE features_default AS SELECT 'u1' AS unified_id, "
            "TIMESTAMP '2024-01-01' AS as_of, 'Champions' AS rfm_segment, 10.0 AS monetary"
        )
        build_segments(
            store, select_definitions(default_definitions(), ["champions"]), "2024-01-01"
        )
    exports = next(s for s in DEFAULT_STEPS if s.name == "exports")
    out = exports.fn(ws, date(2024, 1, 1))
    assert out["exports_written"] == 1 and out["exports_skipped"] == "likely_buyers"
    assert out["export:champions"] == 0  # no profiles: nobody consented, nothing released
    assert (ws.root / "exports" / "champions.jsonl").exists()
    assert not (ws.root / "exports" / "likely.csv").exists()


def test_a_finished_run_of_an_older_step_list_is_not_resumed(tmp_workspace: Workspace) -> None:
    ran: list[str] = []

    def step(name):
        return Step(name, lambda ws, a: ran.append(name) or {}, name)

    old = [step("ingest"), step("unify"), step("score")]
    run_pipeline(tmp_workspace, steps=old, as_of=date(2024, 1, 1))
    new = [step("ingest"), step("retention"), step("unify"), step("score"), step("exports")]
    ran.clear()
    res = run_pipeline(tmp_workspace, steps=new, as_of=date(2024, 2, 1))
    assert not res.resumed and res.as_of == date(2024, 2, 1)
    assert ran == ["ingest", "retention", "unify", "score", "exports"]


@pytest.mark.slow
def test_a_shop_too_young_for_churn_models_still_runs_to_the_end(tmp_path: Path, capsys) -> None:
    """200 days of history: each model is trained with what there is (denser snapshots, the
    best baseline when LightGBM loses) or says why not: too little data, or no skill (a
    churn/propensity champion needs a holdout ROC AUC above models.min_auc, 0.55), and then
    the score step says which output it left null. The run goes to the end either way."""
    root = str(tmp_path / "young")
    assert main(["-w", root, "demo", "-n", "200", "-d", "200", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    outcomes = {k: run["train"][k] for k in ("churn", "propensity", "clv")}
    no_skill = {}
    for kind, said in outcomes.items():
        if said.startswith("not trained: ") or (kind == "clv" and "(champion)" in said):
            continue
        m = re.fullmatch(r"v(\d+) auc=(\d\.\d{3})(?: \(champion\)|; (not promoted: .*))", said)
        assert m, (kind, said)
        if m[3] is None:  # a churn/propensity champion: it has skill
            assert float(m[2]) > 0.55, (kind, said)
        else:
            best = re.fullmatch(
                r"not promoted: (?:best|\w+) holdout AUC (\S+) <= 0.55 \(models.min_auc\)", m[3]
            )
            assert best and float(best[1]) <= 0.55, (kind, said)
            no_skill[kind] = f"version {m[1]} {m[3]}"
    if any("(champion)" in s for s in outcomes.values()):
        assert run["score"]["profiles_scored"] > 0
        column = {"churn": "churn_probability", "propensity": "purchase_probability"}
        for kind, why in no_skill.items():  # the output left null, and why
            assert f"{column[kind]}: cip-{kind} has no champion: {why}" in run["score"]["skipped"]
    else:
        assert run["score"] == {"scored": 0, "reason": "no champion model yet"}
    assert run["segments"]["segments"] >= 11
