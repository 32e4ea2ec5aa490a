"""`bentoml build` works from the repository (deploy/build-bento.sh), in a throwaway BENTOML_HOME.

The build runs on a copy of the tracked files (a clean checkout, and the
repository's own dist/ stays untouched). No container is built or run here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _checkout(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    return dest


@pytest.mark.slow
def test_bentoml_build_from_the_repository(tmp_path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the build test needs the git checkout of the repository")
    repo = _checkout(tmp_path / "repo")
    home = tmp_path / "bentoml-home"
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "PYTHON": sys.executable,
        "UV": str(bin_dir / "uv"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    proc = subprocess.run(
        ["bash", str(repo / "deploy" / "build-bento.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    listed = subprocess.run(
        [str(bin_dir / "bentoml"), "list", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    tags = [b["tag"] for b in json.loads(listed.stdout)]
    assert len(tags) == 1 and tags[0].startswith("cip:")
    bento = home / "bentos" / "cip" / tags[0].split(":", 1)[1]
    meta = yaml.safe_load((bento / "bento.yaml").read_text())
    assert meta["service"] == "cip.serving.service:CIPService"
    routes = {r["route"] for r in meta["schema"]["routes"]}
    assert {"/recommend", "/score", "/events", "/segments"} <= routes
    assert {"name": "CIP_WORKSPACE", "value": "/workspace", "stage": "all"} in meta["envs"]

    # the code ships as the wheel; no cip/ in src/ that would shadow the installed package
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheel = bento / "env" / "python" / "wheels" / f"cip_platform-{version}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "cip/__init__.py",
        "cip/serving/service.py",
        "cip/models/_pyfunc_classifier.py",
        "cip/pipelines/cli.py",
    } <= names
    assert not (bento / "src" / "cip").exists()
    # the locked runtime requirements, as locked
    reqs = (bento / "env" / "python" / "requirements.txt").read_text()
    lock = (ROOT / "requirements.lock").read_text()
    for pin in ("mlflow==", "lightgbm==", "bentoml=="):
        line = next(x for x in lock.splitlines() if x.startswith(pin))
        assert line in reqs.splitlines()
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "libgomp1" in dockerfile and "FROM python:3.11" in dockerfile
