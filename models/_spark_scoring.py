"""Score a Spark DataFrame of features with the registered champions (``mlflow.pyfunc.spark_udf``).

:func:`score_spark_frame` is the Spark counterpart of
:func:`cip.models.scoring.score_frame`: the same :data:`~cip.models.scoring.SCORE_COLUMNS`
in the same order, the churn and purchase probabilities computed by the
champions' MLflow pyfunc (the self-contained ``_pyfunc_classifier`` model that
repeats the estimator's ``predict_proba``) inside a pandas UDF
(``mlflow.pyfunc.spark_udf(..., env_manager="local", result_type="double")``).
Each champion is addressed by its pinned version (``models:/cip-churn/3``,
resolved from ``@champion`` once on the driver) so one scoring run uses one
model even if the alias moves meanwhile.

Where the work runs
-------------------
* **Driver** -- resolves the champions (the registry look-up and one download
  of each model, to read its feature list and to build the UDF; MLflow ships
  the model folder to the executors).
* **Executors** -- the scoring itself: each task loads the model once (MLflow
  caches it per Python worker) and scores Arrow batches of its partition.
  No shuffle: scoring is a narrow ``select`` on the features' partitioning.
  The executors' Python (``spark.pyspark.python`` / ``PYSPARK_PYTHON``) needs
  mlflow, lightgbm, numpy and pandas (``env_manager="local"``: no environment
  is built at run time).

Not computed here (left null, as the pandas path leaves the columns of a
model without a champion): the reason codes (they need the full estimator's
contributions, not the pyfunc) and the CLV columns (the CLV champion is not a
pyfunc classifier). Consent filtering is the caller's, as in
:func:`cip.models.scoring.score`: pass only the profiles that may be scored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from cip.models.scoring import MODEL_NAMES, SCORE_COLUMNS
from cip.profiles.errors import DataError, NotFoundError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["champion_uris", "score_spark_frame"]

log = logging.getLogger(__name__)

#: Spark types of :data:`SCORE_COLUMNS` (those of the ``scores`` table).
_TYPES: dict[str, str] = {
    "unified_id": "string",
    "as_of": "timestamp",
    "model": "string",
    "model_version": "string",
    "churn_probability": "double",
    "purchase_probability": "double",
    "reasons": "string",
    "rfm_segment": "string",
    "clv": "double",
    "expected_orders": "double",
    "p_alive": "double",
    "next_order_date": "date",
    "clv_model_version": "string",
}


def champion_uris(tracking_uri: str) -> dict[str, tuple[str, str, list[str]]]:
    """``{registry name: (version, pinned model URI, feature names)}`` of the classifier champions.

    Raises:
        NotFoundError: when neither ``cip-churn`` nor ``cip-propensity`` has a champion.
    """
    from cip.models.registry import configure_mlflow
    from cip.models.tracking import load_champion

    configure_mlflow(tracking_uri)
    found = {}
    for name in MODEL_NAMES:
        champ = load_champion(name)
        if champ is not None:
            version, model = champ
            found[name] = (str(version), f"models:/{name}/{version}", list(model.feature_names_))
    if not found:
        raise NotFoundError(
            "no churn or propensity champion: train one first "
            "(`cip train churn` / `cip train propensity`)"
        )
    return found


def _input_types(uri: str) -> dict[str, Any]:
    """Spark types of the model signature's input columns (the pyfunc enforces them)."""
    from mlflow.models import get_model_info

    sig = get_model_info(uri).signature
    if sig is None or sig.inputs is None:
        return {}
    return {
        c.name: c.type.to_spark()
        for c in sig.inputs.inputs
        if c.name and hasattr(c.type, "to_spark")
    }


def score_spark_frame(
    features: DataFrame,
    champions: Mapping[str, tuple[str, str, Sequence[str]]],
    as_of: Any,
) -> DataFrame:
    """Score ``features`` (one row per ``unified_id``) on the executors.

    Args:
        features: Spark DataFrame with ``unified_id`` and the champions'
            feature columns (``rfm_segment`` is carried over when present;
            other columns are ignored).
        champions: ``{registry name: (version, model URI, feature names)}``
            (see :func:`champion_uris`); a model absent leaves its column null.
        as_of: the snapshot date written to ``as_of``.

    Returns:
        Spark DataFrame with :data:`~cip.models.scoring.SCORE_COLUMNS` (the
        columns and types of the ``scores`` table); ``reasons`` and the CLV
        columns are null (see the module docstring).
    """
    import mlflow
    from pyspark.sql import functions as F

    if "unified_id" not in features.columns:
        raise DataError("features lack the column 'unified_id'")
    unknown = set(champions) - set(MODEL_NAMES)
    if unknown:
        raise DataError(
            f"cannot score {', '.join(sorted(unknown))} on Spark: only {', '.join(MODEL_NAMES)}"
        )
    spark = features.sparkSession
    names = [m for m in MODEL_NAMES if m in champions]
    cols: dict[str, Any] = {
        "unified_id": F.col("unified_id").cast("string"),
        "as_of": F.lit(pd.Timestamp(as_of).to_pydatetime()).cast("timestamp"),
        "model": F.lit("+".join(names)),
        "model_version": F.lit("+".join(str(champions[m][0]) for m in names)),
    }
    for name, col in MODEL_NAMES.items():
        if name not in champions:
            cols[col] = F.lit(None)
            continue
        version, uri, feats = champions[name]
        missing = [f for f in feats if f not in features.columns]
        if missing:
            raise DataError(
                f"{name} version {version} needs features the feature set lacks: "
                f"{missing[:10]} (retrain it on the current features)"
            )
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
        types = _input_types(uri)
        cols[col] = udf(F.struct(*[F.col(f).cast(types.get(f, "double")).alias(f) for f in feats]))
        log.info("scoring %s with %s on Spark", col, uri)
    rfm = F.col("rfm_segment") if "rfm_segment" in features.columns else F.lit(None)
    cols["rfm_segment"] = rfm
    return features.select(
        *[(cols[c] if c in cols else F.lit(None)).cast(_TYPES[c]).alias(c) for c in SCORE_COLUMNS]
    )
