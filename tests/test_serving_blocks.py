"""Named blocks on ``/recommend``: the block answers, per-request rules, errors, the old path.

The small serving shop (``tests._serving_data``) with blocks fitted from its
store (garden buyers C01-C06, kitchen buyers C07-C12; a6 and b6 out of stock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from types import SimpleNamespace

import pytest
from cip.models.recommender.blocks.inputs import block_inputs_from_store
from cip.models.recommender.blocks.saved import fit_named_blocks, save_blocks
from cip.profiles.store import open_store
from cip.serving.schemas import RecommendRequest

pytest_plugins = ["tests._serving_fixtures"]

SPEC = {
    "cart_cross_sell": {"kind": "bought_together", "k": 3, "rules": {"in_stock_only": True}},
    "again": {"kind": "buy_again", "k": 2},
    "top": {"kind": "popular", "k": 4, "rules": {"max_per_category": 2}},
}


def fit_shop_blocks(shop) -> None:
    st = open_store("duckdb", path=shop.root / "cip.duckdb", read_only=True)
    try:
        lines, products, views = block_inputs_from_store(st)
    finally:
        st.close()
    save_blocks(fit_named_blocks(lines, products, views, SPEC), shop.settings.blocks_path)


@pytest.fixture(scope="module")
def bsvc(_shop_template, tmp_path_factory):
    """One service over a copy of the shop with blocks (the tests only read it)."""
    from cip.serving.service import CIPService
    from cip.serving.settings import ServingSettings

    root = tmp_path_factory.mktemp("bshop") / "shop"
    shutil.copytree(_shop_template, root)
    shop = SimpleNamespace(
        root=root, settings=ServingSettings.for_folder(root, reload_interval_seconds=0)
    )
    fit_shop_blocks(shop)
    s = CIPService.inner(settings=shop.settings, watch=False)
    yield s
    s.holder.stop()


def rec(svc, **kw):
    return asyncio.run(svc.recommend(RecommendRequest(**kw)))


def ids(resp) -> list[str]:
    return [i.item_id for i in resp.items]


def test_named_block_answers_with_its_name_sources_and_version(bsvc) -> None:
    r = rec(bsvc, block="cart_cross_sell", items=["a1"])
    assert r.strategy == "block" and r.block == "cart_cross_sell"
    assert r.model_version.startswith("blocks-")
    assert len(r.items) == 3 and "a1" not in ids(r) and "a6" not in ids(r)
    # every order of this shop holds one line: no co-purchase, so the popular items
    # of the cart's category fill the list, and the answer says so
    assert set(ids(r)) <= {"a2", "a3", "a4", "a5"} and r.fallback == "popular_category"
    assert {i.source for i in r.items} == {"popular_category"}


def test_block_k_default_request_k_and_fallback_named(bsvc) -> None:
    r = rec(bsvc, block="again", customer_id="C01")
    assert (
        r.fallback is None and len(r.items) == 2 and set(ids(r)) <= {"a1", "a2", "a3"}
    )  # C01's own purchases
    r = rec(bsvc, block="again", customer_id="C01", k=5)
    assert len(r.items) == 5 and ids(r)[3:] and r.fallback in ("popular", "popular_category")
    assert [i.source for i in r.items][:3] == ["buy_again"] * 3


def test_request_rules_merge_over_the_block_rules(bsvc) -> None:
    r = rec(bsvc, block="top", k=6, rules={"include_categories": ["kitchen"]})
    assert ids(r) and all(i.startswith("b") for i in ids(r))
    assert len(r.items) == 2  # the block's max_per_category 2 still holds
    r = rec(bsvc, block="top", k=6, rules={"max_per_category": 5, "exclude_items": ["b1"]})
    assert "b1" not in ids(r) and len(r.items) == 6


def test_unknown_block_is_404_naming_the_known_blocks(bsvc) -> None:
    r = rec(bsvc, block="nope")
    assert r.status_code == 404
    assert b"cart_cross_sell" in r.body and b"again" in r.body and b"top" in r.body


def test_rules_leaving_nothing_are_a_clear_400(bsvc) -> None:
    r = rec(bsvc, block="top", rules={"min_price": 100})
    assert r.status_code == 400 and b"min_price" in r.body


def test_no_consent_and_erased_are_anonymous_for_blocks(bsvc) -> None:
    # C03 refused personalisation, U11 is erased: no buy-again history, popular fallback only
    for who in ("C03", "C11"):
        r = rec(bsvc, block="again", customer_id=who, k=3)
        assert r.fallback is not None and "buy_again" not in {i.source for i in r.items}


def test_without_block_the_old_behaviour_stays_and_block_fields_need_a_block(bsvc) -> None:
    r = rec(bsvc, customer_id="C01", n=2)
    assert r.strategy == "personalized" and r.block is None and set(ids(r)) == {"a4", "a5"}
    r = rec(bsvc, customer_id="C01", items=["a1"])
    assert r.status_code == 400 and b"block" in r.body


def test_no_blocks_fitted_is_not_found(bsvc) -> None:
    from cip.profiles.errors import NotFoundError
    from cip.serving import engine

    state = dataclasses.replace(bsvc.holder.state, blocks=None)
    with pytest.raises(NotFoundError, match="fit-blocks"):
        engine.recommend(state, bsvc.holder.sessions, RecommendRequest(block="personal"))


def test_block_over_http_and_bad_rule_key_is_400(client, shop) -> None:
    fit_shop_blocks(shop)
    h = {"X-API-Key": shop.keys["admin"]}
    assert client.post("/admin/reload", json={"force": True}, headers=h).status_code == 200
    h = {"X-API-Key": shop.keys["shop"]}
    body = {"block": "cart_cross_sell", "items": ["b2"], "k": 2, "rules": {"max_price": 10}}
    r = client.post("/recommend", json=body, headers=h)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["block"] == "cart_cross_sell" and len(doc["items"]) == 2
    assert all(i["item_id"].startswith("b") for i in doc["items"])
    r = client.post("/recommend", json={"block": "top", "rules": {"colour": "red"}}, headers=h)
    assert r.status_code == 400 and "colour" in r.text
