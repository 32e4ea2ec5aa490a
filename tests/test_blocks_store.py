"""The blocks' inputs from the store (DuckDB and PostgreSQL), then fitted blocks on them."""

from __future__ import annotations

import pandas as pd
from cip.models.recommender.blocks import fit_blocks
from cip.models.recommender.blocks.inputs import block_inputs_from_store

from tests.test_recommender_store import _fill


def test_block_inputs_from_store(any_store):
    _fill(any_store)
    lines, products, views = block_inputs_from_store(any_store, as_of="2024-01-31")
    # completed (or status-less) lines of catalogue items before as_of
    got = sorted(zip(lines["user_id"], lines["item_id"], strict=True))
    assert got == [("c1", "A"), ("c1", "B"), ("c2", "A")]
    assert lines.groupby("order_id")["item_id"].size().to_dict() == {"shop:o1": 2, "shop:o2": 1}
    assert sorted(products["item_id"]) == ["A", "B", "C"]
    assert list(views["item_id"]) == ["C", "C"] and set(views["user_id"]) == {"c1"}
    bs = fit_blocks(lines, products, views, as_of="2024-01-31")
    r = bs.recommend("bought_together", items=["A"], k=2)
    assert list(r.item_ids) == ["B", "C"]  # one shared order < min_support 2: fallbacks
    assert list(r.sources) == ["popular", "catalogue"]  # C was only viewed, never sold
    assert list(bs.recommend("recently_viewed", user_id="c1", k=1).item_ids) == ["C"]
    assert bs.as_of == pd.Timestamp("2024-01-31")
