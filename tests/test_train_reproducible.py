"""Training is reproducible across processes: same store, same scores, whatever ran before.

``cip run`` resumed after a crash trains the missing models in a new process, which
has not trained (or built the training set of) the models done before the crash,
and has another ``PYTHONHASHSEED``. Two processes here train churn, propensity and CLV
on one store into their own MLflow stores: one in the order of ``cip run`` (churn and
propensity sharing one training set), the other as a resumed run would (each model in
its own training set, CLV first, propensity before churn, string hashing salted
differently). Their champions must score every profile identically, to the bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cip.profiles.store import open_store

from tests._models_support import load_orders, mlflow_db

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import hashlib, json, sys
import pandas as pd
from cip.features import build_features, data_end
from cip.models.clv import train_clv
from cip.models.clv.scoring import score_clv
from cip.models.scoring import load_champions, score_frame
from cip.models.training import shared_training_sets, train_model
from cip.profiles.store import open_store

db, uri, art, order = sys.argv[1:5]
kinds = order.split(",")
out = {}
with open_store("duckdb", path=db, read_only=True) as store:
    def train(kind):
        if kind == "clv":
            r = train_clv(store, None, 60, uri, art, n_snapshots=6)
        else:
            r = train_model(store, kind, None, 60, uri, art, n_snapshots=6)
        metrics = {k: repr(v) for k, v in r.metrics.items()}  # NaN-safe, to the bit
        out[kind] = {"promoted": r.promoted, "winner": r.winner, "metrics": metrics}

    if order.startswith("shared:"):
        kinds = order[len("shared:"):].split(",")
        with shared_training_sets():
            for kind in kinds:
                train(kind)
    else:
        for kind in kinds:
            train(kind)
    as_of = pd.Timestamp(data_end(store)).normalize() + pd.Timedelta(days=1)
    scores = score_frame(build_features(store, as_of), load_champions(uri), as_of)
    clv = score_clv(store, as_of, uri)
cols = ["unified_id", "churn_probability", "purchase_probability", "reasons", "rfm_segment"]
table = scores[cols].sort_values("unified_id", kind="stable").to_csv(index=False, float_format="%.17g")
values = clv[["clv", "expected_orders", "p_alive"]].to_csv(index=True, float_format="%.17g")
out["rows"] = len(scores)
out["scores_sha256"] = hashlib.sha256(table.encode()).hexdigest()
out["clv_sha256"] = hashlib.sha256(values.encode()).hexdigest()
print(json.dumps(out, default=repr))
"""


def _train_and_score(
    tmp: Path, db: Path, name: str, order: str, hash_seed: str
) -> subprocess.Popen[str]:
    """Start a process training the models of ``order`` on ``db``, then scoring."""
    uri = mlflow_db(tmp / name / "mlflow.db")
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(db), uri, str(tmp / name / "art"), order],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )


@pytest.mark.slow
def test_two_processes_train_the_same_models_and_score_the_same(tmp_path: Path) -> None:
    db = tmp_path / "shop.duckdb"
    with open_store("duckdb", path=db) as store:
        load_orders(store, n_customers=400, seed=7)
    procs = {
        "run": _train_and_score(tmp_path, db, "run", "shared:churn,propensity,clv", "1"),
        "resumed": _train_and_score(tmp_path, db, "resumed", "clv,propensity,churn", "2"),
    }
    got = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=1200)
        assert proc.returncode == 0, stderr[-3000:]
        got[name] = json.loads(stdout.strip().splitlines()[-1])
    run, resumed = got["run"], got["resumed"]
    # the premise: every model kind has a champion that scores
    assert all(run[k]["promoted"] for k in ("churn", "propensity", "clv")), run
    assert run["rows"] > 300
    for kind in ("churn", "propensity", "clv"):
        assert resumed[kind] == run[kind], kind
    assert (resumed["scores_sha256"], resumed["clv_sha256"]) == (
        run["scores_sha256"],
        run["clv_sha256"],
    )
