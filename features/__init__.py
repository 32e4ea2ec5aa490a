"""Point-in-time features and labels (RFM, behavioural, RFM segments).

Feature definitions are portable Ibis expressions, pure functions
``(tables, as_of, params) -> table``, that run on DuckDB (default), PostgreSQL
and Spark. A feature only reads records with ``ts < as_of``; labels read the
horizon ``[as_of, as_of + horizon)`` (see :mod:`features.spec`).

Typical use::

    from cip.features import build_features, build_training_set
    df = build_features(store, "2011-09-01")
    train = build_training_set(store, ["2011-03-01", "2011-06-01"], horizon_days=90)
"""

from cip.features.build import (
    DEFAULT_FEATURE_TABLE,
    build_features,
    build_training_set,
    compute_features,
    compute_rfm,
    profiling_objections,
    write_features,
)
from cip.features.catalog import catalog, catalog_markdown
from cip.features.inputs import FeatureInputs, inputs_from_ibis, load_inputs
from cip.features.labels import LABEL_COLUMNS, build_labels, compute_labels, data_end
from cip.features.segments import SEGMENT_GRID, SEGMENTS, rfm_segment
from cip.features.spec import FEATURE_SET_VERSION, RFM_COLUMNS, FeatureParams, FeatureSpec

__all__ = [
    "FeatureParams",
    "FeatureSpec",
    "FeatureInputs",
    "FEATURE_SET_VERSION",
    "RFM_COLUMNS",
    "LABEL_COLUMNS",
    "SEGMENTS",
    "SEGMENT_GRID",
    "DEFAULT_FEATURE_TABLE",
    "compute_features",
    "compute_rfm",
    "compute_labels",
    "build_features",
    "build_labels",
    "build_training_set",
    "profiling_objections",
    "write_features",
    "data_end",
    "catalog",
    "catalog_markdown",
    "rfm_segment",
    "load_inputs",
    "inputs_from_ibis",
]
