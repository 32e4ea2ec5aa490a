"""Registered models load anywhere: in a fresh Python that cannot import the CIP checkout.

The child process runs ``python -I -S``: no PYTHONPATH, no current directory
and no ``site`` processing, so the editable install's ``.pth`` finder (which
makes ``cip`` importable from the repository) is never installed. The venv's
site-packages is appended by hand (third-party libraries only: the check
``find_spec("cip") is None`` runs before the model is loaded). Its working
directory is a temporary folder outside the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cip.models import registry, train_on_frame
from cip.models._synthetic import synthetic_training_frame
from cip.models.recommender.tracking import train_recommender_run
from cip.models.tracking import load_champion

import cip
from tests._models_support import mlflow_db
from tests.test_recommender_tuning import clustered

REPO = Path(cip.__file__).resolve().parents[1]
D = date(2024, 6, 1)
AS_OFS = [D - timedelta(days=30 * k) for k in range(4, -1, -1)]

_CHILD = r"""
import importlib.util, json, sys
site, repo, uri, model, inp, out = sys.argv[1:7]
sys.path.append(site)  # appended, not processed: no .pth file runs, no editable finder
inside = [p for p in sys.path if p == repo or (p.startswith(repo + "/")
          and not p.startswith(repo + "/.venv/"))]
assert not inside, f"the repository is on sys.path: {inside}"
assert importlib.util.find_spec("cip") is None, "cip is importable before the model loads"
import mlflow
import pandas as pd
mlflow.set_tracking_uri(uri)
pm = mlflow.pyfunc.load_model(model)
pm.predict(pd.read_parquet(inp)).to_parquet(out)
cip = sys.modules.get("cip")
json.dump({"cip_file": None if cip is None else cip.__file__}, sys.stdout)
"""


def _load_in_fresh_process(tmp: Path, uri: str, model: str, frame: pd.DataFrame) -> tuple:
    """Load ``model`` in a child Python outside the repository; (predictions, child's report)."""
    work = tmp / "elsewhere"
    work.mkdir(exist_ok=True)
    inp, out = work / "input.parquet", work / "output.parquet"
    frame.to_parquet(inp)
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8"}
    args = [site, str(REPO), uri, model, str(inp), str(out)]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _CHILD, *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not str(work).startswith(str(REPO))
    return pd.read_parquet(out), json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_churn_champion_loads_and_predicts_outside_the_repository(tmp_path) -> None:
    frame = synthetic_training_frame(600, AS_OFS, seed=3)
    frame.attrs["horizon_days"] = 30
    uri = mlflow_db(tmp_path / "mlflow.db")
    res = train_on_frame(
        frame,
        "churn",
        AS_OFS[-1],
        tracking_uri=uri,
        artifact_location=str(tmp_path / "artifacts"),
        model_params={"n_estimators": 60},
    )
    assert res.promoted and registry.champion_version("cip-churn") == res.version
    version, estimator = load_champion("cip-churn")
    hold = frame[frame.as_of == pd.Timestamp(AS_OFS[-1])]
    X = hold[estimator.feature_names_].head(25).reset_index(drop=True)
    X.attrs = {}  # the frame's metadata (snapshot dates) is not model input
    expected = estimator.predict_proba(X)[:, 1]
    assert version == res.version and len(np.unique(expected)) > 1

    got, report = _load_in_fresh_process(tmp_path, uri, "models:/cip-churn@champion", X)
    assert report["cip_file"] is None  # the model's code is self-contained: cip never imported
    assert list(got.columns) == ["probability"]
    np.testing.assert_allclose(got["probability"].to_numpy(), expected, rtol=1e-12, atol=0)


@pytest.mark.slow
def test_recommender_champion_loads_and_recommends_outside_the_repository(tmp_path) -> None:
    import mlflow

    interactions = clustered(n_users=60, n_items=25, per_user=8)
    uri = mlflow_db(tmp_path / "mlflow.db")
    model, _, metrics = train_recommender_run(
        interactions,
        algorithm="itemknn",
        tracking_uri=uri,
        artifact_location=str(tmp_path / "artifacts"),
    )
    assert metrics["promoted"]
    users = pd.DataFrame({"user_id": ["u0", "u7", "nobody"], "n": [4, 4, 4]})
    expected = mlflow.pyfunc.load_model("models:/cip-recommender@champion").predict(users)
    assert len(expected) == 12

    got, report = _load_in_fresh_process(tmp_path, uri, "models:/cip-recommender@champion", users)
    # cip came from the copy the model carries (code_paths), not from the repository
    cip_file = Path(report["cip_file"])
    assert cip_file.parts[-3:] == ("code", "cip", "__init__.py")
    assert REPO not in cip_file.parents
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )


@pytest.mark.parametrize("layout", ["editable", "wheel"])
def test_package_copy_holds_the_layers_up_to_models(tmp_path, monkeypatch, layout) -> None:
    from cip.models import _portable

    root = tmp_path / "src"
    layers = ("profiles", "features", "models", "serving", "activation", "pipelines")
    pkg = root / "cip"
    where = {"cip": pkg}
    for layer in layers:  # editable: folders beside cip/; wheel: inside cip/
        d = (pkg if layout == "wheel" else root) / layer
        (d / "__pycache__").mkdir(parents=True)
        (d / "__init__.py").write_text(f"# {layer}\n")
        (d / "__pycache__" / "x.pyc").write_bytes(b"")
        where[f"cip.{layer}"] = d
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("# cip\n")
    monkeypatch.setattr(_portable, "_folder", lambda module: where[module])

    copy = Path(_portable.package_code_path(tmp_path / "out"))
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert files == [
        "__init__.py",
        "features/__init__.py",
        "models/__init__.py",
        "profiles/__init__.py",
    ]
    assert (copy / "models" / "__init__.py").read_text() == "# models\n"


def test_package_requirements_pin_the_installed_dependencies() -> None:
    from importlib.metadata import version

    from cip.models._portable import package_requirements

    reqs = package_requirements(("threadpoolctl",))
    assert f"mlflow=={version('mlflow')}" in reqs and f"implicit=={version('implicit')}" in reqs
    assert f"threadpoolctl=={version('threadpoolctl')}" in reqs
    assert not any(r.lower().startswith(("cip-platform", "pytest", "pyspark")) for r in reqs)
