"""The deployment recipe: deploy/compose.yaml, the workspace config it seeds, systemd, cron.

No container engine runs here, so nothing is started. The compose file is checked
the way ``docker compose config`` reads it: variables interpolated first, then

* validated against the Compose Specification JSON schema
  (``tests/data/compose_spec.json``: the schema docker-compose 1.29.2 ships on
  PyPI as ``compose/config/compose_spec.json``, Apache-2.0), and
* parsed by ``compose-spec`` (bindings of the Rust ``compose_spec`` parser of the
  current specification, which rejects unknown keys and bad values),

and its wiring (healthchecks, dependencies, volumes, URLs) is checked here.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import compose_spec
import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SCHEMA = Path(__file__).with_name("data") / "compose_spec.json"
ENV = {"POSTGRES_PASSWORD": "s3cret-pw"}
LONG_RUNNING = {"postgres", "redis", "mlflow", "cip"}
ONE_SHOT = {"workspace-owner", "init"}

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_]\w*))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``:-``, ``-``, ``:?``, ``?``."""

    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        val = env.get(name)
        empty = val is None or (val == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and empty:
            return arg
        if op in (":?", "?") and empty:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return val or ""

    return _VAR.sub(repl, text)


def _compose(env: dict[str, str] | None = None) -> tuple[str, dict]:
    text = interpolate((DEPLOY / "compose.yaml").read_text(), ENV if env is None else env)
    return text, yaml.safe_load(text)


def _schema_errors(doc: dict) -> list[str]:
    """Errors of ``doc`` against the vendored schema.

    That schema (2021) predates the top-level ``name`` (the project name) of the
    current specification; ``name`` is checked by the ``compose-spec`` parser instead.
    """
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    doc = {k: v for k, v in doc.items() if k != "name"}
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_follows_the_compose_specification() -> None:
    text, doc = _compose()
    assert _schema_errors(doc) == []
    parsed = compose_spec.PyCompose.from_yaml(text)
    assert parsed.name == "cip"
    assert set(parsed.service_names()) == LONG_RUNNING | ONE_SHOT | {"cli"}
    spec = parsed.to_spec()
    assert spec.services is not None and spec.services["cip"].healthcheck is not None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            '    healthcheck:\n      test: ["CMD", "redis-cli"',
            '    healtcheck:\n      test: ["CMD", "redis-cli"',
        ),
        ("condition: service_healthy", "condition: when_ready"),
        ('      - "3000:3000"', "      bogus: 3000"),
    ],
)
def test_both_checks_reject_a_broken_compose_file(old: str, new: str) -> None:
    text, _ = _compose()
    assert old in text
    broken = text.replace(old, new, 1)
    assert _schema_errors(yaml.safe_load(broken))
    with pytest.raises(ValueError):
        compose_spec.PyCompose.from_yaml(broken)


def test_compose_needs_the_password_and_holds_no_secret() -> None:
    raw = (DEPLOY / "compose.yaml").read_text()
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        _compose(env={})
    assert ENV["POSTGRES_PASSWORD"] not in raw
    assert "POSTGRES_PASSWORD=" in (DEPLOY / "env.example").read_text()
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_compose_wiring() -> None:
    _, doc = _compose()
    services, volumes = doc["services"], set(doc["volumes"])
    for name, svc in services.items():
        for target, dep in svc.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if dep["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if dep["condition"] == "service_completed_successfully":
                assert target in ONE_SHOT and "restart" not in services[target]
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped"

    cip = services["cip"]
    env = cip["environment"]
    assert env["CIP_WORKSPACE"] == "/workspace" and "workspace:/workspace" in cip["volumes"]
    assert "3000:3000" in cip["ports"] and "3000/readyz" in " ".join(cip["healthcheck"]["test"])
    assert env["CIP_STORE_URL"] == "postgresql://cip:s3cret-pw@postgres:5432/cip"
    assert env["CIP_REDIS_URL"].startswith("redis://redis:6379/")

    mlflow = services["mlflow"]
    args = dict(a.removeprefix("--").split("=", 1) for a in mlflow["command"])
    assert args["backend-store-uri"] == "postgresql+psycopg://cip:s3cret-pw@postgres:5432/mlflow"
    assert f"mlartifacts:{args['artifacts-destination']}" in mlflow["volumes"]
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{args['port']}"
    assert "mlflow" in args["allowed-hosts"].split(",")  # MLflow 3 checks the Host header
    assert "CREATE DATABASE mlflow" in (DEPLOY / "postgres-init.sql").read_text()
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "cip"


def test_the_seeded_workspace_gives_the_service_its_settings(tmp_path, monkeypatch, capsys) -> None:
    """What ``init`` does: a workspace from deploy/cip.yaml, then ``cip serve --print-settings``."""
    from cip.pipelines.cli import main
    from cip.pipelines.config import load_config
    from cip.serving.settings import WORKSPACE_SETTINGS, ServingSettings

    _, doc = _compose()
    env = doc["services"]["cip"]["environment"]
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    cfg = load_config(DEPLOY / "cip.yaml")
    assert cfg.store.backend == "postgres" and cfg.store.url == env["CIP_STORE_URL"]
    assert cfg.mlflow.tracking_uri == env["MLFLOW_TRACKING_URI"]
    assert cfg.serving.session_store == "redis" and cfg.serving.redis_url == env["CIP_REDIS_URL"]

    init = doc["services"]["init"]["command"][0]
    target = f"{env['CIP_WORKSPACE']}/{WORKSPACE_SETTINGS}"
    assert "cip serve --print-settings >" in init and init.endswith(f" {target}")
    assert "/etc/cip/cip.yaml" in init and "umask 077" in init
    ws = tmp_path / "workspace"
    ws.mkdir()
    shutil.copyfile(DEPLOY / "cip.yaml", ws / "cip.yaml")
    assert main(["--workspace", str(ws), "serve", "--print-settings"]) == 0
    settings = ServingSettings.model_validate_json(capsys.readouterr().out)
    assert settings.store_backend == "postgres" and settings.store_url == env["CIP_STORE_URL"]
    assert settings.mlflow_tracking_uri == env["MLFLOW_TRACKING_URI"]
    assert settings.session_store == "redis" and settings.redis_url == env["CIP_REDIS_URL"]
    assert settings.keys_path == str(ws / "keys.json")


def _units(tmp_path: Path) -> tuple[Path, Path]:
    """The units with ExecStart pointing at this venv's ``cip`` (verify checks it exists)."""
    cip = Path(sys.executable).with_name("cip")
    assert cip.is_file()
    service = tmp_path / "cip-run.service"
    service.write_text(
        (DEPLOY / "cip-run.service").read_text().replace("/opt/cip/.venv/bin/cip", str(cip))
    )
    timer = tmp_path / "cip-run.timer"
    shutil.copyfile(DEPLOY / "cip-run.timer", timer)
    return service, timer


def test_systemd_units(tmp_path) -> None:
    service, timer = _units(tmp_path)
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(service), str(timer)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # unknown keys are only warnings (exit 0): any output is a failure here
        assert proc.returncode == 0 and proc.stderr.strip() == "" and proc.stdout.strip() == "", (
            proc.stderr
        )
    svc = configparser.ConfigParser(strict=True, interpolation=None)
    svc.read_string((DEPLOY / "cip-run.service").read_text())
    assert svc["Service"]["Type"] == "oneshot"
    assert svc["Service"]["ExecStart"].split()[-2:] == ["cip", "run"] or svc["Service"][
        "ExecStart"
    ].endswith("/cip run")
    assert "75" in svc["Service"]["SuccessExitStatus"].split()  # busy: the next tick retries
    assert svc["Service"]["Environment"].startswith("CIP_WORKSPACE=")
    tim = configparser.ConfigParser(strict=True, interpolation=None)
    tim.read_string((DEPLOY / "cip-run.timer").read_text())
    assert tim["Timer"]["Unit"] == "cip-run.service" and tim["Timer"]["Persistent"] == "true"
    assert tim["Install"]["WantedBy"] == "timers.target"


def _cron_job() -> tuple[list[str], str]:
    jobs = [
        line
        for line in (DEPLOY / "crontab.example").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)
    ]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    return fields[:5], fields[5]


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) is part of util-linux")
def test_crontab_line_skips_a_busy_run_and_reports_failures(tmp_path) -> None:
    schedule, command = _cron_job()
    assert all(re.fullmatch(r"\*|\d+(-\d+)?(,\d+)*(/\d+)?", f) for f in schedule), schedule
    ws = tmp_path / "ws"
    (ws / "logs").mkdir(parents=True)
    stub = tmp_path / "cip"
    marker = tmp_path / "ran"
    line = command.replace("/srv/cip/workspace", str(ws)).replace(
        "/opt/cip/.venv/bin/cip", str(stub)
    )
    assert str(stub) in line and str(ws) in line

    def run(exit_code: int) -> subprocess.CompletedProcess:
        marker.unlink(missing_ok=True)
        stub.write_text(f'#!/bin/sh\necho "cip $*"\ntouch {marker}\nexit {exit_code}\n')
        stub.chmod(0o755)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, env=env, timeout=30
        )

    ok = run(0)
    assert ok.returncode == 0 and ok.stdout == "" and marker.exists()
    assert "cip run" in (ws / "logs" / "cip-run.log").read_text()  # output went to the log
    failed = run(3)
    assert marker.exists() and failed.stdout.strip() == (
        f"cip run failed (exit 3): see {ws}/logs/cip-run.log"
    )
    assert run(75).stdout == ""  # cip's own "busy": silent
    # a run still holding the lock: the new one is skipped, silently
    lock = ws / ".cip-run.cron.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"])
    try:
        for _ in range(100):
            if subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0:
                break
        busy = run(0)
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == 0 and busy.stdout == "" and not marker.exists()
