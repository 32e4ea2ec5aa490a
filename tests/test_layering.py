"""The layering contract (``make lint`` runs it): it holds here and breaks on a violation.

``.ci/lint_imports.py`` runs import-linter with the contracts of pyproject.toml:
``pipelines > serving > activation > models > features > profiles`` (a lower
layer never imports a higher one) and no import of a ``_private`` module from
outside its own package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "lint_imports.py"


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(project)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_project(dest: Path) -> Path:
    """The package folders and pyproject.toml of this repository, copied under ``dest``."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for folder in set(meta["tool"]["setuptools"]["package-dir"].values()):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_the_contracts_hold_on_this_repository() -> None:
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 2 kept, 0 broken." in r.stdout
    assert "Layers: pipelines > serving > activation > models > features > profiles KEPT" in (
        r.stdout
    )
    # a tree import-linter cannot walk would pass vacuously: it must analyse every module
    analysed = int(r.stdout.split("Analyzed ")[1].split(" files")[0])
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(meta["tool"]["setuptools"]["package-dir"].values())
    assert analysed == sum(len(list((ROOT / f).rglob("*.py"))) for f in folders)


def test_a_deliberate_violation_breaks_each_contract(tmp_path) -> None:
    project = _copy_project(tmp_path)
    with (project / "profiles" / "store.py").open("a") as fh:  # a lower layer imports pipelines
        fh.write("\nfrom cip.pipelines import config as _upward  # noqa: E402\n")
    with (project / "activation" / "export.py").open("a") as fh:  # another package's private
        fh.write("\nfrom cip.models import _run as _private  # noqa: E402\n")
    r = _lint(project)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Contracts: 0 kept, 2 broken." in r.stdout
    assert "cip.profiles is not allowed to import cip.pipelines" in r.stdout
    assert "cip.profiles.store -> cip.pipelines.config" in r.stdout
    assert "cip.activation.export -> cip.models._run" in r.stdout


def test_importing_the_service_does_not_import_pipelines() -> None:
    code = (
        "import sys, cip.serving.service\n"
        "bad = sorted(m for m in sys.modules if m.startswith('cip.pipelines'))\n"
        "assert 'cip.serving.service' in sys.modules\n"
        "print(','.join(bad) or 'none')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "none"
