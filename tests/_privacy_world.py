"""A simulated shop with every pipeline step run, shared by the privacy tests.

Built once per test session (simulate -> ingest -> unify -> features -> train ->
score -> segments) and copied for each module, so erasure tests never see each
other's changes. :func:`pick_person` chooses a person with an e-mail, a phone,
a customer id, anonymous ids, scores and segment memberships, and reads every
spelling of their identifiers from the raw tables (as the source files have
them) plus the normalised forms.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from cip.pipelines.run import Step, run_pipeline
from cip.pipelines.simulator import simulate
from cip.pipelines.steps import DEFAULT_STEPS
from cip.pipelines.workflows.setup import register_sources
from cip.pipelines.workspace import Workspace

CUSTOMERS = 160
DAYS = 240


@dataclass
class Person:
    unified_id: str
    email: str  # normalised
    phone: str  # E.164
    customer_id: str
    anonymous_ids: list[str]
    raw: dict[str, list[str]]  # identifier column -> spellings in the raw tables
    address: str | None

    @property
    def needles(self) -> list[str]:
        """Every string that must vanish (raw spellings, normalised forms, the id)."""
        vals = {self.unified_id, self.email, self.phone, self.customer_id, *self.anonymous_ids}
        vals |= {v for vs in self.raw.values() for v in vs}
        if self.address:
            vals.add(self.address)
        return sorted(v for v in vals if v)


def build_world(root: Path) -> Workspace:
    ws = Workspace.init(root)
    res = simulate(
        ws.sources_dir,
        customers=CUSTOMERS,
        days=DAYS,
        seed=3,
        path_prefix=os.path.relpath(ws.sources_dir, ws.root),
    )
    register_sources(ws, res.sources)
    ws.reload()
    steps = list(DEFAULT_STEPS)
    at = [s.name for s in steps].index("score")
    run_pipeline(ws, steps=steps[:at] + [Step("promote", _promote, "champions")] + steps[at:])
    return ws


def _promote(ws: Workspace, as_of: object) -> dict:
    """A small shop's first models may not beat the baselines: make them champions anyway."""
    from cip.models import registry

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    for name in ("cip-churn", "cip-propensity", "cip-recommender"):
        if registry.champion_version(name) is None:
            registry.set_champion(name, "1")
    return {}


def pick_person(ws: Workspace) -> Person:
    """A person with every kind of identifier, scores and segments (most records first)."""
    with ws.open_store() as store:
        row = store.sql(
            """
            SELECT m.unified_id,
                   max(identifier_value) FILTER (WHERE identifier_type = 'email') AS email,
                   max(identifier_value) FILTER (WHERE identifier_type = 'phone') AS phone,
                   max(identifier_value) FILTER (WHERE identifier_type = 'customer_id') AS cid,
                   list(identifier_value) FILTER (WHERE identifier_type = 'anonymous_id') AS anon
            FROM identity_map m
            WHERE m.unified_id IN (SELECT unified_id FROM scores)
              AND m.unified_id IN (SELECT unified_id FROM segment_members)
            GROUP BY m.unified_id
            HAVING count(DISTINCT identifier_type) FILTER (
                       WHERE identifier_type IN ('email', 'phone', 'customer_id', 'anonymous_id')) = 4
               AND count(*) FILTER (WHERE identifier_type = 'email') = 1
               AND count(*) FILTER (WHERE identifier_type = 'phone') = 1
               AND count(*) FILTER (WHERE identifier_type = 'customer_id') = 1
            ORDER BY sum(record_count) DESC, m.unified_id LIMIT 1
            """
        )
        assert len(row), "the simulated shop has no person with every kind of identifier"
        r = row.iloc[0]
        uid = str(r["unified_id"])
        raw: dict[str, list[str]] = {}
        for col in ("customer_id", "email", "phone", "anonymous_id"):
            vals = store.sql(
                f"SELECT DISTINCT x.{col} AS v FROM (SELECT record_id, {col} FROM customers "
                f"UNION ALL SELECT record_id, {col} FROM events UNION ALL SELECT record_id, {col} "
                f"FROM orders) x JOIN record_map m ON m.record_id = x.record_id "
                f"WHERE m.unified_id = ? AND x.{col} IS NOT NULL",
                [uid],
            )["v"]
            raw[col] = sorted(set(vals.astype(str)))
        addr = store.sql(
            "SELECT address FROM profiles WHERE unified_id = ? AND address IS NOT NULL", [uid]
        )["address"]
        address = str(addr.iloc[0]) if len(addr) else None
        if address is not None:
            n = store.sql("SELECT count(*) AS n FROM customers WHERE address = ?", [address])
            if int(n["n"].iloc[0]) != 1:  # a street shared with others is not a trace
                address = None
    return Person(
        unified_id=uid,
        email=str(r["email"]),
        phone=str(r["phone"]),
        customer_id=str(r["cid"]),
        anonymous_ids=sorted(str(a) for a in r["anon"]),
        raw=raw,
        address=address,
    )


@pytest.fixture(scope="session")
def privacy_world_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("privacy-world") / "ws"
    build_world(root)
    return root


def _rebase_mlflow(db: Path, old: Path, new: Path) -> None:
    """Point the copied MLflow store's artifact paths at the copy's folder."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cols = [
                r[1]
                for r in con.execute(f'PRAGMA table_info("{table}")')
                if "CHAR" in r[2].upper() or r[2].upper() == "TEXT"
            ]
            for c in cols:
                con.execute(
                    f'UPDATE "{table}" SET "{c}" = replace("{c}", ?, ?) WHERE "{c}" LIKE ?',
                    [str(old), str(new), f"%{old}%"],
                )
        con.commit()
    finally:
        con.close()


@pytest.fixture(scope="module")
def privacy_world(
    privacy_world_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    """A private copy of the simulated workspace for one test module."""
    root = tmp_path_factory.mktemp("privacy") / "ws"
    shutil.copytree(privacy_world_template, root)
    _rebase_mlflow(root / "mlflow.db", privacy_world_template, root)
    return Workspace.open(root)
