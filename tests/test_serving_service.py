"""The service class called directly: strategies, filters, consent, erasure, scores, segments."""

from __future__ import annotations

import asyncio

import pytest
from cip.serving.schemas import (
    EventIn,
    EventsRequest,
    ForgetRequest,
    RecommendRequest,
    ScoreRequest,
    SegmentMembersRequest,
    SegmentsRequest,
    SimilarItemsRequest,
)
from starlette.responses import JSONResponse

pytest_plugins = ["tests._serving_fixtures"]


def rec(svc, **kw):
    return asyncio.run(svc.recommend(RecommendRequest(**kw)))  # the hot endpoints are coroutines


def ids(resp) -> list[str]:
    return [i.item_id for i in resp.items]


def test_known_customer_is_personalised_without_purchased_or_out_of_stock_items(svc) -> None:
    # C01 bought a1, a2, a3; the other garden buyers also bought a4 and a5; a6 is out of stock
    r = rec(svc, customer_id="C01", n=2)
    assert r.strategy == "personalized" and r.model_version == "1"
    assert set(ids(r)) == {"a4", "a5"}
    r = rec(svc, customer_id="C01", n=8)
    assert len(ids(r)) == 8 and set(ids(r)[:2]) == {"a4", "a5"}
    assert not {"a1", "a2", "a3", "a6", "b6"} & set(ids(r))
    scores = [i.score for i in r.items[:2]]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def test_rebuying_allowed_when_exclude_purchased_is_false(svc) -> None:
    r = rec(svc, customer_id="C01", n=11, exclude_purchased=False)
    assert {"a1", "a2", "a3"} <= set(ids(r))  # all 11 in-stock items when the catalog allows
    assert len(r.items) == 11 and "a6" not in ids(r) and "b6" not in ids(r)


def test_anonymous_id_linked_to_a_profile_is_personalised(svc) -> None:
    assert rec(svc, anonymous_id="anon-known", n=2).strategy == "personalized"


def test_purchases_after_training_fold_in(svc) -> None:
    # C12 is not in the model; their purchases b2, b3, b4 are in the store
    r = rec(svc, customer_id="C12", n=2)
    assert r.strategy == "personalized" and set(ids(r)) == {"b1", "b5"}


def test_no_consent_and_erased_get_popular(svc) -> None:
    popular = rec(svc, n=4)
    assert popular.strategy == "popular" and len(popular.items) == 4
    for cid in ("C03", "C11"):  # U03 refused personalisation, U11 is erased
        r = rec(svc, customer_id=cid, n=4)
        assert r.strategy == "popular" and ids(r) == ids(popular)


def test_popular_per_category_and_catalog_limits(svc) -> None:
    r = rec(svc, category="kitchen", n=10)
    assert r.strategy == "popular" and sorted(ids(r)) == ["b1", "b2", "b3", "b4", "b5"]
    assert sorted(ids(rec(svc, category="kitchen", n=10, in_stock_only=False)))[-1] == "b6"
    assert ids(rec(svc, category="misc", n=3)) == ["z1"]  # nobody bought it: still served
    bad = rec(svc, category="toys")
    assert isinstance(bad, JSONResponse) and bad.status_code == 400
    assert b"unknown category 'toys'" in bad.body


def test_recent_items_in_the_request_give_session_recommendations(svc) -> None:
    r = rec(svc, anonymous_id="visitor-1", recent_items=["b1", "b2"], n=3)
    assert r.strategy == "session" and set(ids(r)) == {"b3", "b4", "b5"}


def test_events_then_recommend_uses_the_session(svc) -> None:
    ev = [
        EventIn(event_type="product_view", anonymous_id="new-visitor", item_id=i)
        for i in ("a1", "a2")
    ]
    out = svc.events(EventsRequest(events=ev))
    assert out.accepted == 2 and out.rejected == []
    r = rec(svc, anonymous_id="new-visitor", n=3)
    assert r.strategy == "session" and set(ids(r)) == {"a3", "a4", "a5"}
    # a consent refusal made in the session switches personalisation off at once
    svc.events(
        EventsRequest(
            events=[
                EventIn(
                    event_type="consent",
                    anonymous_id="new-visitor",
                    properties={"purpose": "personalization", "granted": False},
                )
            ]
        )
    )
    assert rec(svc, anonymous_id="new-visitor", n=3).strategy == "popular"


def test_events_are_validated_one_by_one(svc) -> None:
    ev = [
        EventIn(event_type="product_view", anonymous_id="v", item_id="a1"),
        EventIn(event_type="product_view", anonymous_id="v"),
        EventIn(event_type="page_view", item_id="a1"),
        EventIn(event_type="page_view", anonymous_id="v", ts="yesterday"),
        EventIn(event_type="page_view", anonymous_id="v", ts="2999-01-01T00:00:00Z"),
        EventIn(event_type="review", anonymous_id="v", item_id="a1", rating=9),
        EventIn(event_type="consent", anonymous_id="v", properties={"purpose": "x"}),
        EventIn(event_type="page_view", anonymous_id="C11", event_id="e1"),
        EventIn(event_type="page_view", customer_id="C11"),
    ]
    out = svc.events(EventsRequest(events=ev))
    reasons = {r.index: r.reason for r in out.rejected}
    assert out.accepted == 2  # the first and the anonymous "C11" (an anonymous id, not erased)
    assert "needs item_id" in reasons[1] and "customer_id or anonymous_id" in reasons[2]
    assert "ISO 8601" in reasons[3] and "future" in reasons[4] and "rating" in reasons[5]
    assert "consent event" in reasons[6] and "erased" in reasons[8]  # C11 -> U11, erased
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 8]


def test_similar_items(svc) -> None:
    r = asyncio.run(svc.similar_items(SimilarItemsRequest(item_id="b1", n=3)))
    assert r.strategy == "similar" and set(ids(r)) <= {"b2", "b3", "b4", "b5"}
    assert "b1" not in ids(r)
    r = asyncio.run(svc.similar_items(SimilarItemsRequest(item_id="unknown-item", n=3)))
    assert r.strategy == "popular" and len(r.items) == 3


def test_scores_latest_snapshot_unknown_consent_and_erasure(svc) -> None:
    r = asyncio.run(
        svc.score(ScoreRequest(customer_ids=["C01", "C04", "C11", "nobody", "C01", "C12"]))
    )
    assert [s.customer_id for s in r.scores] == ["C01"]
    s = r.scores[0]
    assert s.unified_id == "U01" and s.churn_probability == pytest.approx(0.1)
    assert s.as_of.startswith("2024-06-01") and s.model_version == "3+2"
    assert s.reasons == {"churn": ["few orders lately"]} and s.rfm_segment == "loyal"
    assert r.no_consent == ["C04"] and r.unknown == ["C11", "nobody", "C12"]
    # the CLV outputs, when the scores carry them; null for persons scored without a CLV champion
    assert (s.clv, s.expected_orders, s.p_alive) == (250.0, 3.5, 0.95)
    assert s.next_order_date == "2024-06-09" and s.clv_model_version == "4"
    r = asyncio.run(svc.score(ScoreRequest(customer_ids=["C02", "C03"])))
    assert [(x.customer_id, x.next_order_date, x.p_alive) for x in r.scores] == [
        ("C02", "2024-07-30", 0.2),
        ("C03", None, None),
    ]
    assert r.scores[1].clv is None and r.scores[1].churn_probability is not None


def test_segments_and_pages(svc) -> None:
    segs = svc.segments(SegmentsRequest()).segments
    assert [(s.segment, s.members) for s in segs] == [("at_risk", 7)]
    seen, cursor, pages = [], None, 0
    while True:
        page = svc.segment_members(SegmentMembersRequest(segment="at_risk", limit=3, cursor=cursor))
        assert len(page.members) <= 3 and page.as_of.startswith("2024-06-01")
        seen += [m.unified_id for m in page.members]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    # U05 gave no e-mail consent (the build's purpose): never released
    assert seen == ["U01", "U02", "U03", "U04", "U06", "U07"] and pages == 2
    first = svc.segment_members(SegmentMembersRequest(segment="at_risk", limit=1)).members[0]
    assert first.email == "c01@example.com" and first.reasons == ["churn risk high"]
    assert first.score == pytest.approx(0.9) and first.model_version == "3"
    missing = svc.segment_members(SegmentMembersRequest(segment="nope"))
    assert isinstance(missing, JSONResponse) and missing.status_code == 404


def test_forget_stops_serving_a_person_at_once(svc) -> None:
    assert rec(svc, customer_id="C02", n=2).strategy == "personalized"
    svc.events(
        EventsRequest(events=[EventIn(event_type="product_view", customer_id="C02", item_id="a1")])
    )
    out = svc.admin_forget(ForgetRequest(unified_ids=["U02"], customer_ids=["C02"]))
    assert out.identifiers == 2 and out.sessions_deleted == 1
    assert rec(svc, customer_id="C02", n=2).strategy == "popular"
    assert asyncio.run(svc.score(ScoreRequest(customer_ids=["C02"]))).unknown == ["C02"]
    model = svc.holder.state.champion.model
    assert not model.known_users(["U02"])[0] and model.known_users(["U01"])[0]
