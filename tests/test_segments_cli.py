"""``cip segments ...`` end to end on a workspace, and the ``segments:`` config section."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _segment_data import load
from cip.pipelines.cli import main
from cip.pipelines.config import load_config
from cip.profiles.errors import ConfigError

CONFIG = """\
version: 1
segments:
  include_defaults: true
  definitions:
    - name: big_spenders
      kind: rule
      purpose: email
      score: monetary
      conditions:
        - {field: monetary, op: ">=", value: 800}
        - any:
            - {field: country, op: in, value: [GB]}
            - {field: churn_probability, op: ">", value: 0.5}
"""


def _ws(tmp_workspace, config=CONFIG, **kw):
    tmp_workspace.config_path.write_text(config)
    ws = tmp_workspace.reload()
    with ws.open_store() as store:
        load(store, **kw)
    return ws


def run(ws, capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--workspace", str(ws.root), *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_build_list_export_through_the_cli(tmp_workspace, capsys, tmp_path):
    ws = _ws(tmp_workspace)
    code, out, _ = run(ws, capsys, "segments", "build", "--as-of", "2024-03-01", "--json")
    assert code == 0
    rep = json.loads(out)
    sizes = {s["segment"]: s["members"] for s in rep["segments"]}
    assert len(sizes) == 16 and sizes["big_spenders"] == 2  # u1 (GB), u6 (churn 0.7)
    # the fixture's scores have no CLV outputs: the two CLV defaults wait for them
    assert sizes["abandoned_cart"] == 2 and set(rep["skipped"]) == {"high_clv", "replenishment_due"}
    code, out, _ = run(ws, capsys, "segments", "build", "--as-of", "2024-04-01")
    assert code == 0 and "16 segments built" in out
    code, out, _ = run(ws, capsys, "segments", "list", "--json")
    rows = {r["segment"]: r for r in json.loads(out)}
    assert rows["champions"]["members"] == 1 and rows["champions"]["exited"] == 1
    assert rows["big_spenders"]["description"].startswith("monetary >= 800 and (country in [GB]")
    dest = tmp_path / "out" / "champions_exited.csv"
    code, out, _ = run(
        ws,
        capsys,
        "segments",
        "export",
        "champions",
        "--changes",
        "exited",
        "--format",
        "csv",
        "--out",
        str(dest),
    )
    assert code == 0 and "Exported 1 exited changes of champions" in out
    assert list(pd.read_csv(dest)["unified_id"]) == ["u1"]
    code, _, err = run(
        ws, capsys, "segments", "export", "champions", "--format", "xls", "--out", str(dest)
    )
    assert code == 2 and "'xls' is not one of 'csv', 'parquet', 'jsonl'" in err  # usage error


def test_cli_says_why_nothing_is_exportable_without_profiles(tmp_workspace, capsys, tmp_path):
    ws = _ws(tmp_workspace, "version: 1\n", identity=False)
    assert run(ws, capsys, "segments", "build", "--as-of", "2024-03-01")[0] == 0
    code, out, err = run(
        ws,
        capsys,
        "segments",
        "export",
        "champions",
        "--format",
        "jsonl",
        "--out",
        str(tmp_path / "c.jsonl"),
    )
    assert code == 0 and "Exported 0 members" in out and "2 without email consent" in out
    assert "no profiles table" in err and "cip unify" in err


def test_cli_errors_are_one_line(tmp_workspace, capsys):
    ws = _ws(tmp_workspace)
    code, _, err = run(ws, capsys, "segments", "build", "--as-of", "2030-01-01")
    assert code == 3 and err.startswith("Error: no rows in 'features_default' at as_of")
    code, _, err = run(
        ws, capsys, "segments", "export", "nope", "--format", "csv", "--out", "x.csv"
    )
    assert code == 4 and "no segments have been built yet" in err


def test_config_rejects_unknown_webhooks_and_bad_definitions(tmp_path):
    p = tmp_path / "cip.yaml"
    p.write_text(
        "segments:\n  webhooks:\n    crm: {url: 'http://127.0.0.1:1/x'}\n"
        "  definitions:\n    - {name: a, kind: rfm, rfm_segments: [Loyal], purpose: sms, webhook: crn}\n"
    )
    with pytest.raises(
        ConfigError, match=r"cip.yaml: segments: segment 'a': webhook 'crn'.*did you mean crm"
    ):
        load_config(p)
    p.write_text("segments:\n  definitions:\n    - {name: b, kind: rfm, rfm_segments: [Loyl]}\n")
    with pytest.raises(ConfigError, match=r"segments.definitions.0: .*unknown RFM segment"):
        load_config(p)
    p.write_text(
        "segments:\n  definitions:\n    - name: c\n      kind: predictive\n"
        "      conditions: [{field: x, op: '~=', value: 1}]\n"
    )
    with pytest.raises(ConfigError, match="unknown op '~='"):
        load_config(p)
    p.write_text(
        "segments:\n  definitions:\n    - {name: Bad Name, kind: rfm, rfm_segments: [Loyal]}\n"
    )
    with pytest.raises(ConfigError, match="'bad_name'"):
        load_config(p)
    p.write_text("version: 1\n")
    names = [d.name for d in load_config(p).segments.effective()]
    assert names[:2] == ["champions", "loyal"] and len(names) == 17


def test_build_delivers_to_configured_webhooks(tmp_workspace, capsys):
    from _webhook_receiver import Receiver
    from standardwebhooks import Webhook

    with Receiver(fail_rate=0.3, seed=5) as rx:
        config = (
            "version: 1\nsegments:\n  webhooks:\n    crm: {url: '" + rx.url + "', batch_size: 1, "
            "backoff_base_s: 0.001, max_attempts: 10}\n  definitions:\n"
            "    - {name: champions, kind: rfm, rfm_segments: [Champions], purpose: email, webhook: crm}\n"
        )
        ws = _ws(tmp_workspace, config)
        code, secret, _ = run(ws, capsys, "segments", "webhook-secret", "crm")
        rx.verifier = Webhook(secret.strip())  # the receiver checks every signature
        code, out, _ = run(ws, capsys, "segments", "build", "--as-of", "2024-03-01", "--json")
        assert code == 0
        [d] = json.loads(out)["deliveries"]
        assert (d["batches"], d["delivered"], d["failed"]) == (2, 2, 0)
        code, out, _ = run(ws, capsys, "segments", "deliver", "--json")
        assert code == 0 and json.loads(out)[0]["already_delivered"] == 2
    assert sorted(c[2] for c in rx.changes()) == ["u1", "u6"] and rx.rejected == 0


def test_example_segments_config_loads():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "segments.yaml")
    names = [d.name for d in cfg.segments.effective()]
    assert names[-3:] == ["vip_win_back", "at_risk_loyals", "cart_sms"] and len(names) == 20
    assert cfg.segments.webhooks["crm"].batch_size == 500
