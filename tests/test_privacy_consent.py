"""Consent per purpose at every surface: exports and pages (email, sms, push), the
service's recommendations (personalization) and scores (profiling), and consent
statements sent through ``/events`` by a known customer.

The store-side scoring gate (``cip score`` skips profiles that refused
profiling) is tested in ``test_models_cli.py``; consent survivorship from the
sources in ``test_identity_unify.py``.
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from _segment_data import A1, EVERYONE, new_store
from cip.activation import build_segments, export_segment, segment_page
from cip.serving.schemas import EventIn, EventsRequest, RecommendRequest, ScoreRequest

pytest_plugins = ["tests._serving_fixtures"]


# Members of "everyone" at A1: u1..u6 (see _segment_data). Per purpose, who may be
# released, worked out by hand from _segment_data.profiles() plus the push column below:
#   email: consent u1 u2 u5 u6 (u3 no statement, u4 refused); u5 has no e-mail -> u1 u2 u6
#   sms:   consent u1 only (u2 refused), and u1 has the only phone             -> u1
#   push:  consent u2 u3 (u1 refused, others no statement); contact customer_id -> u2 u3
EXPECTED = {"email": ["u1", "u2", "u6"], "sms": ["u1"], "push": ["u2", "u3"]}


@pytest.fixture
def store():
    st = new_store()
    st.execute(
        "UPDATE profiles SET consent_push = CASE unified_id WHEN 'u1' THEN false "
        "WHEN 'u2' THEN true WHEN 'u3' THEN true END"
    )
    build_segments(st, [EVERYONE], A1)
    return st


@pytest.mark.parametrize("purpose", ["email", "sms", "push"])
def test_exports_and_pages_release_only_consenting_members(store, tmp_path, purpose) -> None:
    out = tmp_path / f"everyone-{purpose}.parquet"
    rep = export_segment(store, "everyone", out, "parquet", purpose=purpose)
    exported = sorted(pd.read_parquet(out)["unified_id"])
    assert exported == EXPECTED[purpose] and rep.exported == len(EXPECTED[purpose])
    assert rep.candidates == 6 and rep.purpose == purpose
    paged: list[str] = []
    cursor = None
    while True:  # one member per page: every page is gated, not only the first
        rows, cursor = segment_page(store, "everyone", limit=1, cursor=cursor, purpose=purpose)
        paged += [r["unified_id"] for r in rows]
        if cursor is None:
            break
    assert paged == EXPECTED[purpose]


def test_withdrawn_consent_disappears_from_the_next_export(store, tmp_path) -> None:
    store.execute("UPDATE profiles SET consent_email = false WHERE unified_id = 'u2'")
    export_segment(store, "everyone", tmp_path / "e.csv", "csv")
    assert list(pd.read_csv(tmp_path / "e.csv")["unified_id"]) == ["u1", "u6"]
    rows, _ = segment_page(store, "everyone", limit=10)
    assert [r["unified_id"] for r in rows] == ["u1", "u6"]


def _rec(svc, **kw):
    return asyncio.run(svc.recommend(RecommendRequest(**kw)))


def _consent(svc, purpose: str, granted: bool, **who) -> None:
    out = svc.events(
        EventsRequest(
            events=[
                EventIn(
                    event_type="consent", properties={"purpose": purpose, "granted": granted}, **who
                )
            ]
        )
    )
    assert out.accepted == 1, out.rejected


def test_service_honours_stored_consent_per_purpose(svc) -> None:
    # the shop fixture: U03 refused personalisation, U04 refused profiling
    assert _rec(svc, customer_id="C01", n=3).strategy == "personalized"
    assert _rec(svc, customer_id="C03", n=3).strategy == "popular"
    assert _rec(svc, customer_id="C04", n=3).strategy == "personalized"  # only profiling refused
    res = asyncio.run(svc.score(ScoreRequest(customer_ids=["C01", "C03", "C04"])))
    scored = {s.customer_id for s in res.scores}
    assert "C01" in scored and "C03" in scored and "C04" not in scored


def test_known_customer_withdraws_and_grants_personalisation_through_events(svc) -> None:
    assert _rec(svc, customer_id="C02", n=3).strategy == "personalized"
    _consent(svc, "personalization", False, customer_id="C02")
    r = _rec(svc, customer_id="C02", n=3)
    assert r.strategy == "popular" and len(r.items) == 3  # at once, still n items
    assert _rec(svc, customer_id="C01", n=3).strategy == "personalized"  # nobody else
    _consent(svc, "personalization", True, customer_id="C02")
    assert _rec(svc, customer_id="C02", n=3).strategy == "personalized"
