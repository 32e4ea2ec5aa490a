"""The CLI contract, checked on the whole command tree (README, "Exit codes").

Every command and group answers ``--help``; usage errors (unknown command or
option, a bad choice, a number out of range, a missing argument) are one line
on stderr and exit 2; ``CIPError``s exit with their class's code; an internal
error is one line naming the log that holds its traceback, exit 70. Every
command with ``--json`` is run on one small simulated shop and its output parsed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from cip.pipelines import _cli_app
from cip.pipelines.cli import app, main
from cip.profiles.errors import exit_codes

from cip import __version__

ROOT = Path(__file__).resolve().parents[1]
TREE = typer.main.get_command(app)


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(TREE))
JSON_COMMANDS = sorted(
    " ".join(path) for path, cmd in COMMANDS if any("--json" in p.opts for p in cmd.params)
)
CHOICES = [
    (path, p.opts[0], tuple(getattr(c, "value", c) for c in p.type_descriptor.choices))
    for path, cmd in COMMANDS
    for p in cmd.params
    if getattr(p, "type_descriptor", None) is not None and p.type_descriptor.is_choice
]
RANGED = [
    (path, p.opts[0], p.min, p.max)
    for path, cmd in COMMANDS
    for p in cmd.params
    if getattr(p, "min", None) is not None or getattr(p, "max", None) is not None
]


def _cip(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cip.pipelines.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


# --- the tree ---------------------------------------------------------------------------------


def test_the_tree_is_the_whole_cli() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "train churn", "segments export", "keys create", "identity show"} <= names
    assert len(COMMANDS) >= 40  # a registration lost on the way would shrink it


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "cip")
def test_every_command_and_group_answers_help(path: tuple[str, ...], capsys) -> None:
    code, out, err = _cip(capsys, *path, "--help")
    assert code == 0, err
    assert "Usage: cip" in out and err == ""


def test_version(capsys) -> None:
    assert _cip(capsys, "--version") == (0, f"cip {__version__}\n", "")


def test_choices_are_choice_types_shown_in_help(capsys, monkeypatch) -> None:
    from cip.activation.export import CONTACT, EXPORT_SCORE_COLUMNS, FORMATS
    from cip.models import ALGORITHMS
    from cip.models.training import HOLDOUT_MODES
    from cip.serving.auth import SCOPES

    got = {(" ".join(path), opt): set(choices) for path, opt, choices in CHOICES}
    expected = {
        ("score", "--reasons"): {"path", "shap"},
        ("segments export", "--format"): set(FORMATS),
        ("segments export", "--changes"): {"entered", "exited", "all"},
        ("segments export", "--purpose"): set(CONTACT),
        ("segments export", "--column"): set(EXPORT_SCORE_COLUMNS),
        ("measure attribution", "--model"): {"last", "first"},
        ("measure attribution", "--touch"): {"click", "open", "send"},
        ("keys create", "--scope"): set(SCOPES),
        ("recommend", "--format"): {"csv", "parquet", "jsonl"},
        **{(f"train {k}", "--holdout"): set(HOLDOUT_MODES) for k in ("churn", "propensity", "clv")},
        **{
            (c, "--algorithm"): {*ALGORITHMS, "auto"}
            for c in ("train-recommender", "train recommender")
        },
    }
    assert got == expected
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps a long metavar at 80 columns
    for path, opt, choices in CHOICES:
        _, out, _ = _cip(capsys, *path, "--help")
        shown = re.escape("|".join(choices))  # a repeatable option: <list[a|b]>
        assert re.search(rf"{opt} .*<(list\[)?{shown}\]?>", out), (path, opt, out)


def test_every_format_option_is_the_one_export_format_type() -> None:
    """Every ``--format`` shows :data:`FORMATS` in its order, and no module spells its own copy.

    typing caches ``Literal[...] | None`` by value (Literals compare as sets) in an LRU cache, so
    two equal Literals in two modules share one union whose order depends on import order and
    cache evictions: the help of ``cip recommend`` showed the other module's order.
    """
    from cip.activation.export import FORMATS, ExportFormat
    from cip.profiles.sources import FileFormat

    assert ExportFormat is FileFormat
    formats = {path: choices for path, opt, choices in CHOICES if opt == "--format"}
    assert set(formats) == {("segments", "export"), ("recommend",)}
    assert all(choices == FORMATS for choices in formats.values()), formats
    copies = []
    for folder in ("activation", "pipelines", "serving", "models", "features", "profiles", "cip"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(), str(file))):
                if (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "Literal"
                ):
                    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
                    values = {e.value for e in elts if isinstance(e, ast.Constant)}
                    if values == set(FORMATS):
                        copies.append(f"{file.relative_to(ROOT)}:{node.lineno}")
    assert len(copies) == 1 and copies[0].startswith("profiles/sources.py:"), copies


# --- usage errors: one line, exit 2 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["bogus"], "Error: No such command 'bogus'. Try 'cip --help'."),
        (["train", "bogus"], "Error: No such command 'bogus'. Try 'cip train --help'."),
        (["status", "--bogus"], "Error: No such option: --bogus"),
        (["train", "churn", "--horizon-days", "0"], "'--horizon-days': Input should be greater"),
        (["train", "churn", "--horizon-days", "x"], "'--horizon-days'"),
        (["models", "promote", "churn"], "Error: Missing argument 'version'."),
        (["keys", "create"], "Error: Missing option '--scope'."),
        (["score", "--as-of", "2024-13-01"], "'2024-13-01' is not a date"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], expected: str, tmp_path, capsys) -> None:
    code, out, err = _cip(capsys, "-w", str(tmp_path / "none"), *args)
    assert code == 2 and out == ""
    assert expected in _one_line_error(err)


@pytest.mark.parametrize(
    ("path", "option", "choices"), CHOICES, ids=[f"{' '.join(c[0])} {c[1]}" for c in CHOICES]
)
def test_a_bad_choice_is_one_line_exit_2(path, option: str, choices, tmp_path, capsys) -> None:
    code, _, err = _cip(capsys, "-w", str(tmp_path), *path, option, "no-such-choice")
    line = _one_line_error(err)
    assert code == 2 and option in line and "'no-such-choice' is not one of" in line
    assert all(repr(c) in line for c in choices) and line.endswith("--help'.")


@pytest.mark.parametrize(
    ("path", "option", "low", "high"), RANGED, ids=[f"{' '.join(r[0])} {r[1]}" for r in RANGED]
)
def test_a_number_out_of_range_is_one_line_exit_2(path, option, low, high, tmp_path, capsys):
    value = low - 1 if low is not None else high + 1
    code, _, err = _cip(capsys, "-w", str(tmp_path), *path, option, str(value))
    line = _one_line_error(err)
    assert code == 2 and f"'{option}'" in line and "Input should be" in line


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["train", "churn", "--horizon-days", "0"],
        ["segments", "export", "x", "--format", "xls", "--out", "x.xls"],
    ],
)
def test_usage_errors_through_the_real_entry_point(args: list[str]) -> None:
    r = _subprocess(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert _one_line_error(r.stderr).startswith("Error: ")


def test_version_through_the_real_entry_point() -> None:
    r = _subprocess("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"cip {__version__}\n", "")


def test_no_command_prints_the_help(capsys) -> None:
    code, out, err = _cip(capsys, "train")
    assert code == 2 and "Usage: cip train" in out and "churn" in out and err.strip() == ""


# --- CIPErrors: one line, the class's exit code --------------------------------------------------


def test_cip_errors_exit_with_their_code(tmp_path, capsys) -> None:
    code, _, err = _cip(capsys, "-w", str(tmp_path / "none"), "status")
    assert code == exit_codes()["NotFoundError"] == 4
    assert _one_line_error(err).startswith("Error: no workspace at")
    assert main(["init", str(tmp_path / "ws")]) == 0
    code, _, err = _cip(capsys, "-w", str(tmp_path / "ws"), "features")
    assert code == exit_codes()["ConfigError"] == 3 and "--as-of" in _one_line_error(err)


def test_the_readme_documents_every_exit_code() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Exit codes") :]
    documented: dict[str, int] = {}
    for row in re.findall(r"^\| (\d+) \|(.*)$", section, re.M):
        for name in re.findall(r"`(\w+Error)`", row[1]):
            documented[name] = int(row[0])
    assert documented == exit_codes()
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", section, re.M)}
    assert {0, 2, 70, 130} <= codes


# --- internal errors: one line with the log, exit 70 --------------------------------------------


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom: something nobody expected\nsecond line")


def test_an_internal_error_is_logged_in_the_workspace(tmp_workspace, monkeypatch, capsys) -> None:
    monkeypatch.setattr(_cli_app.Workspace, "open", _boom)
    code, _, err = _cip(capsys, "-w", str(tmp_workspace.root), "status", "--json")
    log = tmp_workspace.root / "logs" / "cip.log"
    assert code == 70
    assert _one_line_error(err) == (
        "Internal error: RuntimeError: boom: something nobody expected second line "
        f"(traceback in {log.resolve()})"
    )
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    assert _cli_app.log_path() is None  # main() let go of the log


def test_an_internal_error_without_a_workspace_goes_to_the_state_dir(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(_cli_app.Workspace, "open", _boom)
    code, _, err = _cip(capsys, "-w", str(tmp_path / "none"), "keys", "list")
    log = (tmp_path / "state" / "cip" / "cip.log").resolve()
    assert code == 70 and _one_line_error(err).endswith(f"(traceback in {log})")
    assert "RuntimeError: boom" in log.read_text()
    assert not (tmp_path / "none").exists()


def test_an_internal_error_through_a_real_process(tmp_path) -> None:
    script = (
        "import sys\n"
        "from cip.pipelines import _cli_app\n"
        "from cip.pipelines.cli import main\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('boom for ann@example.com')\n"
        "_cli_app.Workspace.open = boom\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    state = tmp_path / "state"
    r = subprocess.run(
        [sys.executable, "-c", script, "-w", str(tmp_path / "none"), "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    )
    log = state / "cip" / "cip.log"
    assert r.returncode == 70 and r.stdout == ""
    line = _one_line_error(r.stderr)
    assert line.startswith("Internal error: RuntimeError: boom") and str(log) in line
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and ", in boom\nRuntimeError: boom" in text
    assert "ann@example.com" not in text  # the traceback is redacted like every log line


# --- every --json output parses ------------------------------------------------------------------

# Covered elsewhere rather than here, with the reason; a new --json command must be added to
# the sequence below or to this dict, or test_every_json_command_is_covered fails.
ELSEWHERE: dict[str, str] = {
    # the table appears with the first merge or split; the demo shop has none (here: exit 4)
    "identity history": "tests/test_identity_cli.py::test_cli_unify_split_show_status",
    # a CLV training run costs more than the demo shop's other commands together
    "train clv": "tests/test_clv_wiring.py::test_train_clv_reports_the_winner_and_registers_cip_clv",
    "triggers test": "tests/test_triggers_worker.py::test_worker_journal_to_signed_webhook_exactly_once",
    # needs a campaign with a control group; the demo shop has none (here: exit 4)
    "train uplift": "tests/test_measure.py::test_train_uplift_on_a_simulated_campaign_registers_gates_and_scores",
    # fits every block twice (block and baseline) on a time split: its own small shop
    "recommend evaluate-blocks": "tests/test_blocks_evaluation.py::test_cli_evaluate_blocks_json",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Any]:
    """A small simulated shop with everything built, through `cip demo --json`."""
    ws = tmp_path_factory.mktemp("contract") / "shop"
    r = _subprocess("-w", str(ws), "demo", "-n", "150", "-d", "365", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return {"ws": ws, "demo": json.loads(r.stdout)}


def _sequence(shop: dict[str, Any], tmp: Path) -> list[tuple[str, list[str]]]:
    """(command, argv) for every --json command, in an order where each one makes sense."""
    as_of = shop["demo"]["as_of"]
    return [
        ("status", ["status", "--json"]),
        ("ingest", ["ingest", "--json"]),
        ("unify", ["unify", "--json"]),
        ("features", ["features", "--as-of", as_of, "--json"]),
        ("features describe", ["features", "describe", "--json"]),
        ("identity blocked", ["identity", "blocked", "--json"]),
        ("identity forbidden", ["identity", "forbidden", "--json"]),
        ("identity show", ["identity", "show", "-u", "{uid}", "--json"]),
        ("identity split", ["identity", "split", "--a", "email:nobody@example.org", "--json"]),
        ("train churn", ["train", "churn", "--json"]),
        ("train propensity", ["train", "propensity", "--json"]),
        ("train recommender", ["train", "recommender", "--algorithm", "popular", "--json"]),
        ("train-recommender", ["train-recommender", "--algorithm", "popular", "--json"]),
        ("recommend fit-blocks", ["recommend", "fit-blocks", "--json"]),
        ("models list", ["models", "list", "--json"]),
        # demo trained propensity v1 (not promoted), `train propensity` above v2
        ("models promote", ["models", "promote", "propensity", "1", "--json"]),
        ("models promote", ["models", "promote", "propensity", "2", "--json"]),
        ("models rollback", ["models", "rollback", "propensity", "--json"]),  # back to v1
        ("score", ["score", "--as-of", as_of, "--json"]),
        ("segments build", ["segments", "build", "--as-of", as_of, "--json"]),
        ("segments list", ["segments", "list", "--json"]),
        (
            "segments export",
            [
                "segments",
                "export",
                "{segment}",
                "-f",
                "jsonl",
                "-o",
                str(tmp / "s.jsonl"),
                "--json",
            ],
        ),  # noqa: E501
        ("segments deliver", ["segments", "deliver", "--json"]),
        (
            "recommend",
            [
                "recommend",
                "--all",
                "--block",
                "popular",
                "--n",
                "3",
                "-o",
                str(tmp / "r.jsonl"),
                "--json",
            ],
        ),  # noqa: E501
        ("measure sync", ["measure", "sync", "--json"]),
        ("measure lift", ["measure", "lift", "--json"]),
        ("measure attribution", ["measure", "attribution", "--by", "campaign,day", "--json"]),
        ("measure preferences", ["measure", "preferences", "--json"]),
        ("report", ["report", "--out", str(tmp / "report.html"), "--json"]),
        ("retention show", ["retention", "show", "--json"]),
        ("retention apply", ["retention", "apply", "--json"]),
        ("keys create", ["keys", "create", "--scope", "shop", "--name", "ci", "--json"]),
        ("keys list", ["keys", "list", "--json"]),
        ("keys revoke", ["keys", "revoke", "ci", "--json"]),
        ("run", ["run", "--json"]),
        # the demo added its triggers to cip.yaml and ran one pass
        ("triggers run", ["triggers", "run", "--once", "--from-ingest", "--json"]),
        ("triggers list", ["triggers", "list", "--json"]),
        ("triggers status", ["triggers", "status", "--json"]),
        ("triggers log", ["triggers", "log", "--trigger", "abandoned_cart", "--json"]),
        ("forget", ["forget", "-u", "{uid}", "--no-rewrite", "--json"]),
    ]


def test_every_json_command_is_covered(shop, tmp_path) -> None:
    covered = {name for name, _ in _sequence(shop, tmp_path)} | {"demo", "simulate"}
    assert sorted(covered | set(ELSEWHERE)) == JSON_COMMANDS


def test_simulate_json_parses(tmp_path, capsys) -> None:
    assert main(["init", str(tmp_path / "ws")]) == 0
    code, out, err = _cip(
        capsys, "-w", str(tmp_path / "ws"), "simulate", "-n", "20", "-d", "30", "--json"
    )  # noqa: E501
    assert code == 0, err
    assert isinstance(json.loads(out), dict)


def test_every_json_output_parses(shop, tmp_path, capsys) -> None:
    ws = str(shop["ws"])
    assert shop["demo"]["as_of"] and shop["demo"]["run"]  # `cip demo --json` parsed
    subs: dict[str, str] = {}
    failures: dict[str, str] = {}
    for step, (name, argv) in enumerate(_sequence(shop, tmp_path)):
        argv = [a.format(**subs) for a in argv]
        code, out, err = _cip(capsys, "-w", ws, *argv)
        try:
            doc = json.loads(out)
        except json.JSONDecodeError as exc:
            failures[f"{step} {name}"] = (
                f"exit {code}, no JSON ({exc}): {out[:200]!r} {err[-300:]!r}"
            )
            continue
        if code != 0:
            failures[f"{step} {name}"] = f"exit {code}: {err[-300:]!r}"
        if name == "status":
            subs["uid"] = _a_person(shop["ws"])
        if name == "segments list":
            subs["segment"] = next(s["segment"] for s in doc if s["members"])
    assert failures == {}
    code, out, err = _cip(capsys, "-w", ws, "identity", "history", "--json")
    assert (code, out) == (4, "") and "no identity history yet" in _one_line_error(err)


def _a_person(ws: Path) -> str:
    from cip.pipelines.workspace import Workspace

    with Workspace.open(ws).open_store(read_only=True) as store:
        return str(store.sql("SELECT min(unified_id) AS u FROM profiles")["u"][0])
