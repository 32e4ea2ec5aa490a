"""MLflow logging of a training run: params, metrics, plots, lineage and the model.

Nothing personal is logged: the input example and every artifact hold feature
values and aggregates only (no unified ids, customer ids or contact data).
Lineage is what makes a model traceable to its data and code:

* feature-set version and snapshot dates (training, validation, holdout);
* identity-graph version: row count and latest timestamp of ``identity_history``
  (else of ``identity_map``) when the store has one;
* data fingerprint: SHA-256 of the row count and latest timestamp of every raw
  table (``customers``, ``orders``, ``order_lines``, ``events``, ``products``);
* code version: the git commit of the CIP source tree, when it is a checkout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cip.models.estimators import load_model
from cip.models.registry import champion_version
from cip.profiles.sql import quote_ident

__all__ = [
    "data_fingerprint",
    "identity_graph_version",
    "code_version",
    "log_model",
    "load_champion",
    "pip_requirements",
]

log = logging.getLogger(__name__)

_RAW_TABLES = ("customers", "orders", "order_lines", "events", "products")
_TS_CANDIDATES = ("ts", "changed_at", "created_at", "updated_at", "valid_from", "ingested_at")
_ENTRY = Path(__file__).with_name("_pyfunc_classifier.py")


def _table_stats(store: Any, table: str) -> dict[str, Any]:
    cols = list(store.sql(f"SELECT * FROM {quote_ident(table)} LIMIT 0").columns)
    ts = next((c for c in _TS_CANDIDATES if c in cols), None)
    sel = "count(*) AS n" + (f", CAST(max({quote_ident(ts)}) AS VARCHAR) AS max_ts" if ts else "")
    row = store.sql(f"SELECT {sel} FROM {quote_ident(table)}").iloc[0]
    return {"rows": int(row["n"]), "max_ts": None if ts is None else _none(row["max_ts"])}


def _none(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v)


def data_fingerprint(store: Any) -> tuple[str, dict[str, Any]]:
    """``(sha256 prefix, {table: {rows, max_ts}})`` over the raw tables present."""
    stats = {t: _table_stats(store, t) for t in _RAW_TABLES if store.has_table(t)}
    digest = hashlib.sha256(json.dumps(stats, sort_keys=True).encode()).hexdigest()[:16]
    return digest, stats


def identity_graph_version(store: Any) -> str:
    """``<table>:<rows>@<max ts>`` of the identity history (or map), else ``none``."""
    for table in ("identity_history", "identity_map"):
        if store.has_table(table):
            s = _table_stats(store, table)
            return f"{table}:{s['rows']}@{s['max_ts'] or '-'}"
    return "none"


def code_version() -> str:
    """The git commit of the source tree (``+dirty`` if modified), else ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc model (no slow inference by MLflow).

    The model's code is the self-contained ``_pyfunc_classifier.py``: it needs no
    ``cip`` at all, only these.
    """
    from importlib.metadata import version

    pkgs = ("lightgbm", "numpy", "pandas", "pyarrow", "mlflow")
    return [f"{p}=={version(p)}" for p in pkgs]


def log_model(
    estimator: Any,
    X_example: pd.DataFrame,
    *,
    name: str = "model",
) -> str:
    """Log ``estimator`` as a pyfunc model (from code, data artifacts); returns its URI.

    The model's code is ``_pyfunc_classifier.py``, which imports nothing from
    ``cip``: the registered model loads outside a CIP installation.

    Must run inside an active MLflow run. ``X_example`` must hold feature columns
    only, typed as the feature set delivers them (it becomes the input example
    and the signature).
    """
    import mlflow
    from mlflow.models import infer_signature

    X_example = X_example[estimator.feature_names_]
    proba = pd.DataFrame({"probability": estimator.predict_proba(X_example)[:, 1]})
    with tempfile.TemporaryDirectory() as tmp:
        path = estimator.save(Path(tmp) / "estimator")
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(_ENTRY),
            artifacts={"model": str(path)},
            signature=infer_signature(X_example, proba),
            input_example=X_example,
            pip_requirements=pip_requirements(),
        )
    return info.model_uri


def load_champion(registry_name: str) -> tuple[str, Any] | None:
    """``(version, fitted estimator)`` of the champion of ``registry_name``, or None.

    The estimator is read from the model's ``model`` artifact (the folder
    :meth:`~cip.models.estimators.ChurnModel.save` wrote), not through the pyfunc
    wrapper: CIP gets the full estimator (reason codes, contributions), and models
    logged by older CIP versions, whatever their wrapper, still load.
    """
    import mlflow
    from mlflow.models import Model

    version = champion_version(registry_name)
    if version is None:
        return None
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{registry_name}/{version}"))
    conf = Model.load(str(local)).flavors["python_function"]
    return version, load_model(local / conf["artifacts"]["model"]["path"])


def log_dict_artifacts(items: Mapping[str, Any]) -> None:
    """Log JSON-able dicts and DataFrames (CSV) as run artifacts."""
    import mlflow

    for fname, obj in items.items():
        if isinstance(obj, pd.DataFrame):
            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / fname
                obj.to_csv(p, index=False)
                mlflow.log_artifact(str(p))
        else:
            mlflow.log_dict(obj, fname)
