"""Per-person CLV outputs at ``as_of`` with the ``cip-clv`` champion (for ``cip score`` to call).

:func:`score_clv` returns one row per person of the feature population:
``unified_id, as_of, clv, expected_orders, p_alive, expected_spend_per_order,
next_order_days, next_order_date, clv_model_version``. ``next_order_date`` is
``as_of + next_order_days`` (the median waiting time to the next purchase *given
the person is alive*, from BG/NBD; NaT for persons without a completed
purchase); read it together with ``p_alive``. Persons listed in ``exclude``
(e.g. those who objected to profiling) are dropped before anything is computed
for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from cip.features.spec import to_as_of
from cip.models.clv._logging import REGISTRY_NAME, load_clv_champion
from cip.models.clv.frames import clv_score_frame
from cip.models.clv.model import OUTPUT_COLUMNS, CLVModel
from cip.profiles.errors import NotFoundError

__all__ = ["CLV_SCORE_COLUMNS", "score_clv", "predict_clv"]

CLV_SCORE_COLUMNS = (
    "unified_id",
    "as_of",
    *OUTPUT_COLUMNS,
    "next_order_date",
    "clv_model_version",
)


def predict_clv(
    model: CLVModel,
    frame: pd.DataFrame,
    as_of: Any,
    version: str = "",
    *,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """:data:`CLV_SCORE_COLUMNS` for the rows of a :func:`clv_score_frame` frame.

    ``n_jobs``: LightGBM threads of a ``two_part`` model's prediction (None or 0:
    all cores; a registered model was fitted with one thread, and prediction
    per row does not depend on the thread count, so the values are the same).
    """
    ts = to_as_of(as_of)
    if model.two_part is not None:
        model.two_part.set_params(n_jobs=n_jobs or 0)
    out = model.predict(frame)
    out.insert(0, "as_of", ts)
    out.insert(0, "unified_id", frame["unified_id"].to_numpy())
    out["next_order_date"] = ts + pd.to_timedelta(out["next_order_days"], unit="D")
    out["clv_model_version"] = str(version)
    return out.reset_index(drop=True)


def score_clv(
    store: Any,
    as_of: Any,
    tracking_uri: str,
    *,
    exclude: Iterable[str] | None = None,
    feature_params: Any = None,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Score every person at ``as_of`` with the CLV champion (its own horizon).

    ``n_jobs``: LightGBM threads (None: all cores; see :func:`predict_clv`).

    Raises:
        NotFoundError: when ``cip-clv`` has no champion (train one first).
    """
    champ = load_clv_champion(tracking_uri)
    if champ is None:
        raise NotFoundError(f"no champion model {REGISTRY_NAME!r}: run the CLV training first")
    version, model = champ
    frame = clv_score_frame(store, as_of, model.horizon_days, feature_params)
    if exclude is not None:
        frame = frame[~frame["unified_id"].isin(set(exclude))].reset_index(drop=True)
    return predict_clv(model, frame, as_of, version, n_jobs=n_jobs)
