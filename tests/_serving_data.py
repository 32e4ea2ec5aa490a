"""Fixtures of the serving tests: a small shop in a real store and a small real recommender.

The shop has two tastes: customers C01-C06 buy garden items (a1-a5), C07-C12
buy kitchen items (b1-b5); a6 and b6 are out of stock, z1 nobody bought.
Identity resolution maps C<k> to U<k> (``identity_map`` + ``record_map``).
``TinyItemKNN`` is an item-item cosine recommender in numpy implementing the
recommender interface the service uses (the shared contract of ``models``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiles.store import open_store

GARDEN = [f"a{i}" for i in range(1, 7)]
KITCHEN = [f"b{i}" for i in range(1, 7)]
CUSTOMERS = [f"C{k:02d}" for k in range(1, 13)]


def uid(customer: str) -> str:
    return "U" + customer[1:]


def purchases() -> pd.DataFrame:
    """Each customer buys 3 of the 5 in-stock items of their taste (rotating)."""
    rows = []
    for k, c in enumerate(CUSTOMERS):
        items = GARDEN[:5] if k < 6 else KITCHEN[:5]
        for j in range(3):
            rows.append((c, items[(k + j) % 5]))
    return pd.DataFrame(rows, columns=["customer_id", "item_id"])


class TinyItemKNN:
    """Item-item cosine recommender (binary interactions), numpy only.

    score(u, i) = sum over the user's items j of cos(i, j); popular items
    (share of users) backfill to ``n``.
    """

    def fit(self, interactions: pd.DataFrame) -> TinyItemKNN:
        users = pd.Index(sorted(interactions["user_id"].astype(str).unique()))
        items = pd.Index(sorted(interactions["item_id"].astype(str).unique()))
        x = np.zeros((len(users), len(items)), np.float32)
        x[
            users.get_indexer(interactions["user_id"]), items.get_indexer(interactions["item_id"])
        ] = 1
        self._set(users.to_numpy(dtype=object), items.to_numpy(dtype=object), x)
        return self

    def _set(self, users: np.ndarray, items: np.ndarray, x: np.ndarray) -> None:
        self.user_ids_, self.item_ids_, self.x_ = users, items, x
        norm = np.sqrt((x * x).sum(0)) + 1e-9
        s = (x.T @ x) / np.outer(norm, norm)
        np.fill_diagonal(s, 0.0)
        self.sim_ = s
        self.pop_ = x.sum(0) / max(1, len(users))
        self._uidx = pd.Index(users)
        self._iidx = pd.Index(items)

    def _reset_caches(self) -> None:
        pass

    # -- the interface --------------------------------------------------------
    def known_users(self, ids: Any) -> np.ndarray:
        return self._uidx.get_indexer(pd.Index([str(i) for i in np.atleast_1d(ids)])) >= 0

    def _rank(self, scores: np.ndarray, seen: np.ndarray, n: int, items: Any) -> pd.DataFrame:
        allowed = np.ones(len(self.item_ids_), bool)
        cold: list[str] = []
        if items is not None:
            wanted = [str(i) for i in items]
            pos = self._iidx.get_indexer(wanted)
            allowed[:] = False
            allowed[pos[pos >= 0]] = True
            cold = [w for w, p in zip(wanted, pos, strict=True) if p < 0]
        allowed &= ~seen
        personal = np.flatnonzero(allowed & (scores > 0))
        personal = personal[np.lexsort((personal, -scores[personal]))][:n]
        rest = np.flatnonzero(allowed & ~np.isin(np.arange(len(allowed)), personal))
        rest = rest[np.lexsort((rest, -self.pop_[rest]))][: n - len(personal)]
        ids = list(self.item_ids_[personal]) + list(self.item_ids_[rest])
        sc = list(scores[personal]) + list(self.pop_[rest])
        filled = [False] * len(personal) + [True] * len(rest)
        ids += cold[: n - len(ids)]
        sc += [0.0] * (len(ids) - len(sc))
        filled += [True] * (len(ids) - len(filled))
        return pd.DataFrame(
            {
                "item_id": ids,
                "score": np.asarray(sc, float),
                "rank": np.arange(1, len(ids) + 1),
                "backfilled": filled,
            }
        )

    def recommend(
        self, user_ids: Any, n: int = 10, exclude_seen: bool = True, items: Any = None
    ) -> pd.DataFrame:
        parts = []
        for u in np.atleast_1d(user_ids):
            r = self._uidx.get_indexer([str(u)])[0]
            if r < 0:
                df = self._rank(
                    np.zeros(len(self.item_ids_)), np.zeros(len(self.item_ids_), bool), n, items
                )
            else:
                row = self.x_[r]
                df = self._rank(row @ self.sim_, row > 0 if exclude_seen else row < 0, n, items)
            parts.append(df.assign(user_id=str(u)))
        return pd.concat(parts, ignore_index=True)[
            ["user_id", "item_id", "score", "rank", "backfilled"]
        ]

    def recommend_for_items(
        self, item_ids: Any, n: int = 10, exclude_seen: bool = True, items: Any = None
    ) -> pd.DataFrame:
        pos = self._iidx.get_indexer([str(i) for i in item_ids])
        row = np.bincount(pos[pos >= 0], minlength=len(self.item_ids_)).astype(np.float32)
        return self._rank(row @ self.sim_, row > 0 if exclude_seen else row < 0, n, items)

    def similar_items(self, item_ids: Any, n: int = 10, items: Any = None) -> pd.DataFrame:
        parts = []
        for i in np.atleast_1d(item_ids):
            p = self._iidx.get_indexer([str(i)])[0]
            seen = np.zeros(len(self.item_ids_), bool)
            if p < 0:
                df = self._rank(np.zeros(len(self.item_ids_)), seen, n, items)
            else:
                seen[p] = True
                df = self._rank(self.sim_[p], seen, n, items)
            parts.append(df.rename(columns={"item_id": "similar_item_id"}).assign(item_id=str(i)))
        return pd.concat(parts, ignore_index=True)[
            ["item_id", "similar_item_id", "score", "rank", "backfilled"]
        ]

    def popular_items(self, n: int = 10, items: Any = None) -> pd.DataFrame:
        none = np.zeros(len(self.item_ids_), bool)
        return self._rank(np.zeros(len(self.item_ids_)), none, n, items)[
            ["item_id", "score", "rank"]
        ]

    def drop_users(self, user_ids: Any) -> int:
        gone = self._uidx.get_indexer([str(u) for u in np.atleast_1d(user_ids)])
        gone = gone[gone >= 0]
        keep = np.ones(len(self.user_ids_), bool)
        keep[gone] = False
        self.user_ids_, self.x_ = self.user_ids_[keep], self.x_[keep]
        self._uidx = pd.Index(self.user_ids_)
        return int(len(gone))

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "arrays.npz", x=self.x_)
        meta = {
            "format": "cip-recommender",
            "format_version": 1,
            "algorithm": "tiny-itemknn",
            "user_ids": list(map(str, self.user_ids_)),
            "item_ids": list(map(str, self.item_ids_)),
        }
        (d / "model.json").write_text(json.dumps(meta))
        return d

    @classmethod
    def load(cls, path: str | Path) -> TinyItemKNN:
        d = Path(path)
        meta = json.loads((d / "model.json").read_text())
        m = cls()
        m._set(
            np.asarray(meta["user_ids"], object),
            np.asarray(meta["item_ids"], object),
            np.load(d / "arrays.npz")["x"],
        )
        return m


def train(exclude_customers: tuple[str, ...] = ("C12",)) -> TinyItemKNN:
    p = purchases()
    p = p[~p["customer_id"].isin(exclude_customers)]
    return TinyItemKNN().fit(
        pd.DataFrame({"user_id": p["customer_id"].map(uid), "item_id": p["item_id"]})
    )


def build_store(path: Path) -> None:
    """The shop in a DuckDB store, as after ingest, unify, score and segments."""
    st = open_store("duckdb", path=path)
    try:
        st.ensure_schema()
        p = purchases()
        lines = pd.DataFrame(
            {
                "source": "shop",
                "record_id": [f"r{i}" for i in range(len(p))],
                "source_record_id": [f"r{i}" for i in range(len(p))],
                "order_id": [f"o-{c}-{i}" for i, c in enumerate(p["customer_id"])],
                "ts": pd.Timestamp("2024-05-01"),
                "customer_id": p["customer_id"],
                "item_id": p["item_id"],
                "quantity": 1.0,
                "unit_price": 2.5,
                "status": "completed",
            }
        )
        st.load_arrow("order_lines", lines)
        items = [*GARDEN, *KITCHEN, "z1"]
        st.load_arrow(
            "products",
            pd.DataFrame(
                {
                    "source": "catalog",
                    "record_id": items,
                    "item_id": items,
                    "title": [f"Item {i}" for i in items],
                    "category": ["garden"] * 6 + ["kitchen"] * 6 + ["misc"],
                    "price": 3.0,
                    "in_stock": [i not in ("a6", "b6") for i in items],
                    "ingested_at": pd.Timestamp("2024-05-01"),
                }
            ),
        )
        ids = pd.DataFrame(
            {
                "identifier_type": "customer_id",
                "identifier_value": CUSTOMERS,
                "unified_id": [uid(c) for c in CUSTOMERS],
            }
        )
        ids.loc[len(ids)] = ["anonymous_id", "anon-known", "U01"]
        st.load_arrow("identity_map", ids, mode="create")
        st.execute(
            "CREATE TABLE record_map AS SELECT 'orders' AS source_table, o.record_id, "
            "'U' || substr(o.customer_id, 2) AS unified_id FROM orders o"
        )
        prof = pd.DataFrame(
            {
                "unified_id": [uid(c) for c in CUSTOMERS],
                "customer_id": CUSTOMERS,
                "email": [f"{c.lower()}@example.com" for c in CUSTOMERS],
            }
        )
        prof["consent_personalization"] = prof["unified_id"] != "U03"
        prof["consent_personalization_at"] = pd.Timestamp("2024-01-01")
        prof["consent_profiling"] = prof["unified_id"] != "U04"
        prof["consent_profiling_at"] = pd.Timestamp("2024-01-01")
        prof["consent_email"] = prof["unified_id"] != "U05"
        st.load_arrow("profiles", prof, mode="create")
        scores = pd.DataFrame(
            {
                "unified_id": [uid(c) for c in CUSTOMERS[:10]],
                "as_of": pd.Timestamp("2024-06-01"),
                "model": "cip-churn+cip-propensity",
                "model_version": "3+2",
                "churn_probability": np.linspace(0.1, 0.9, 10),
                "purchase_probability": np.linspace(0.9, 0.1, 10),
                "reasons": json.dumps({"churn": ["few orders lately"]}),
                "rfm_segment": "loyal",
            }
        )
        old = scores.iloc[:1].assign(as_of=pd.Timestamp("2024-05-01"), churn_probability=0.5)
        st.load_arrow("scores", pd.concat([old, scores], ignore_index=True), mode="create")
        st.load_arrow(
            "erased",
            pd.DataFrame({"unified_id": ["U11"], "erased_at": [pd.Timestamp("2024-06-02")]}),
            mode="create",
        )
        members = pd.DataFrame(
            {
                "segment": "at_risk",
                "unified_id": [uid(c) for c in CUSTOMERS[:7]],
                "as_of": pd.Timestamp("2024-06-01"),
                "score": np.linspace(0.9, 0.3, 7),
                "reasons": json.dumps(["churn risk high"]),
                "model_version": "3",
            }
        )
        st.load_arrow("segment_members", members, mode="create")
        st.load_arrow(
            "segment_builds",
            pd.DataFrame(
                {
                    "segment": ["at_risk"],
                    "as_of": [pd.Timestamp("2024-06-01")],
                    "kind": ["predictive"],
                    "purpose": ["email"],
                    "description": ["churn_probability >= 0.3"],
                    "members": [7],
                    "entered": [7],
                    "exited": [0],
                    "previous_as_of": [pd.NaT],
                    "digest": ["d"],
                    "built_at": [pd.Timestamp("2024-06-01 01:00")],
                }
            ),
            mode="create",
        )
    finally:
        st.close()


def register(
    model: Any, tracking_uri: str, name: str = "cip-recommender", promote: bool = True
) -> str:
    """Log ``model`` as an MLflow pyfunc (artifact ``model`` = its folder), register it."""
    import tempfile

    import mlflow

    from models.registry import configure_mlflow, ensure_experiment, register_model, set_champion

    artifacts = str(Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts")
    configure_mlflow(tracking_uri, artifacts)
    ensure_experiment("serving-tests", artifacts)
    entry = Path(__file__).with_name("_serving_pyfunc_entry.py")
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run():
        folder = model.save(Path(tmp) / "recommender")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(entry),
            artifacts={"model": str(folder)},
            pip_requirements=["mlflow"],
        )
    version = register_model(info.model_uri, name)
    if promote:
        set_champion(name, version)
    return version
