"""The distribution installs one namespace, ``cip``, and nothing generic at the top level.

A real, non-editable install of the repository into a fresh virtual environment
(dependencies from the lock), then imports from a folder outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("profiles", "features", "models", "serving", "activation", "pipelines")

pytestmark = pytest.mark.slow


def _uv() -> str:
    uv = Path(sys.executable).with_name("uv")
    found = str(uv) if uv.exists() else shutil.which("uv")
    assert found, "uv is installed by the Makefile into .venv; it is needed to build a fresh venv"
    return found


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(REPO / "requirements.lock"),
            str(REPO),
        ],
        check=True,
        timeout=600,
    )
    return venv


def _run(venv: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def test_import_cip_works_outside_the_repository(fresh_venv: Path, tmp_path: Path) -> None:
    r = _run(fresh_venv, "import cip, cip.pipelines.cli; print(cip.__version__)", tmp_path)
    assert r.returncode == 0, r.stderr
    from cip import __version__

    assert r.stdout.strip() == __version__
    # the code ran from site-packages, not from this checkout
    r = _run(fresh_venv, "import cip.models; print(cip.models.__file__)", tmp_path)
    assert "site-packages" in r.stdout and str(REPO) not in r.stdout


@pytest.mark.parametrize("name", LAYERS)
def test_no_generic_top_level_package(fresh_venv: Path, tmp_path: Path, name: str) -> None:
    r = _run(fresh_venv, f"import {name}", tmp_path)
    assert r.returncode != 0
    assert "ModuleNotFoundError" in r.stderr


def test_site_packages_holds_only_the_cip_namespace(fresh_venv: Path) -> None:
    (site,) = (fresh_venv / "lib").glob("python3.*/site-packages")
    ours = [
        p.name
        for p in site.iterdir()
        if p.name in LAYERS or p.name == "cip" or p.name.startswith("cip_platform")
    ]
    assert sorted(n.split("-")[0] for n in ours) == ["cip", "cip_platform"]
    # every package of the checkout (each layer and its subpackages) is inside the namespace:
    # a subpackage missing from pyproject's package list would be missing here
    for layer in LAYERS:
        for init in (REPO / layer).rglob("__init__.py"):
            rel = init.relative_to(REPO)
            assert (site / "cip" / rel).is_file(), f"{rel} is not installed as cip/{rel}"
