"""Business rules applied before top-k: filters, a category cap and a boost.

A :class:`Rules` value is set per block (in ``cip.yaml``) and per request; the
request's rules are merged over the block's with :meth:`Rules.merged` (a field
the request sets replaces the block's; ``exclude_items`` lists are joined).

Filters (an item must pass every one; an item lacking the field fails an
include or range rule and passes an exclude rule):

* ``include_tags`` / ``exclude_tags``: has any of / none of these tags;
* ``include_brands`` / ``exclude_brands``, ``include_categories`` /
  ``exclude_categories``;
* ``min_price`` / ``max_price`` (inclusive);
* ``in_stock_only``; ``exclude_purchased`` (the person's purchases before
  ``as_of``); ``exclude_items`` (e.g. what is already in the cart).

Ranking rules: ``max_per_category`` caps items of one category in the list
(diversity; items without a category are not capped); ``boost_field`` names a
numeric product column (margin, promotion) and multiplies scores by
``1 + boost_weight * v`` with ``v`` the field scaled to [0, 1] over the
catalogue (missing: 0).

When the filters leave no item at all, :class:`NoCandidatesError` says which
rule emptied the list. When they leave fewer than ``k``, fewer are returned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from cip.models.recommender.blocks._catalog import Catalog
from cip.profiles.errors import ConfigError, DataError

__all__ = ["NoCandidatesError", "Rules"]

_LISTS = (
    "include_tags",
    "exclude_tags",
    "include_brands",
    "exclude_brands",
    "include_categories",
    "exclude_categories",
    "exclude_items",
)


class NoCandidatesError(DataError):
    """The rules of a request leave no item of the catalogue to recommend."""


@dataclass(frozen=True)
class Rules:
    """Business rules of a block or a request (see the module docstring)."""

    include_tags: tuple[str, ...] | None = None
    exclude_tags: tuple[str, ...] | None = None
    include_brands: tuple[str, ...] | None = None
    exclude_brands: tuple[str, ...] | None = None
    include_categories: tuple[str, ...] | None = None
    exclude_categories: tuple[str, ...] | None = None
    min_price: float | None = None
    max_price: float | None = None
    in_stock_only: bool | None = None
    exclude_purchased: bool | None = None
    exclude_items: tuple[str, ...] | None = None
    max_per_category: int | None = None
    boost_field: str | None = None
    boost_weight: float | None = None

    def __post_init__(self) -> None:
        for name in _LISTS:
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, str):
                    v = (v,)
                object.__setattr__(self, name, tuple(str(x) for x in v))
        lo, hi = self.min_price, self.max_price
        for name, v in (("min_price", lo), ("max_price", hi)):
            if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ConfigError(f"rule {name} must be a number >= 0, not {v!r}")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"rule min_price {lo} is above max_price {hi}")
        cap = self.max_per_category
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ConfigError(f"rule max_per_category must be an integer >= 1, not {cap!r}")
        w = self.boost_weight
        if w is not None and not (isinstance(w, (int, float)) and np.isfinite(w) and w > -1):
            raise ConfigError(f"rule boost_weight must be a number > -1, not {w!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | Rules | None) -> Rules:
        """Rules from a mapping (config or request body); unknown keys are a ConfigError."""
        if values is None:
            return cls()
        if isinstance(values, Rules):
            return values
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def merged(self, request: Rules | dict[str, Any] | None) -> Rules:
        """These (block) rules with a request's rules over them."""
        req = Rules.from_dict(request)
        out = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(req, f.name)
            if f.name == "exclude_items" and mine is not None and theirs is not None:
                out[f.name] = mine + theirs
            else:
                out[f.name] = theirs if theirs is not None else mine
        return Rules(**out)

    def filter_masks(self, catalog: Catalog) -> list[tuple[str, np.ndarray]]:
        """``(rule, mask of items passing it)`` for every request-independent filter set."""
        masks: list[tuple[str, np.ndarray]] = []
        for kind, inc, exc in (
            ("tag", self.include_tags, self.exclude_tags),
            ("brand", self.include_brands, self.exclude_brands),
            ("category", self.include_categories, self.exclude_categories),
        ):
            for name, values, keep in (
                (f"include_{kind}s", inc, True),
                (f"exclude_{kind}s", exc, False),
            ):
                if values is None:
                    continue
                codes = catalog.codes(kind, values)
                if kind == "tag":
                    hit = catalog.has_any_tag(codes)
                else:
                    arr = catalog.category if kind == "category" else catalog.brand
                    hit = np.isin(arr, codes) if len(codes) else np.zeros(catalog.size, bool)
                masks.append((f"{name}={list(values)}", hit if keep else ~hit))
        price = catalog.price
        if self.min_price is not None:
            masks.append((f"min_price={self.min_price}", price >= self.min_price))
        if self.max_price is not None:
            masks.append((f"max_price={self.max_price}", price <= self.max_price))
        if self.in_stock_only:
            masks.append(("in_stock_only", catalog.in_stock))
        if self.exclude_items:
            m = np.ones(catalog.size, dtype=bool)
            pos = catalog.positions(list(self.exclude_items))
            m[pos[pos >= 0]] = False
            masks.append(("exclude_items", m))
        return masks

    def allowed(self, catalog: Catalog, purchased: np.ndarray | None = None) -> np.ndarray:
        """Mask of items passing every filter (``purchased``: the person's item positions).

        Raises:
            NoCandidatesError: no item passes; the message names the rule that emptied it.
        """
        mask = np.ones(catalog.size, dtype=bool)
        steps = self.filter_masks(catalog)
        if self.exclude_purchased and purchased is not None and len(purchased):
            m = np.ones(catalog.size, dtype=bool)
            m[purchased] = False
            steps.append(("exclude_purchased", m))
        for name, m in steps:
            before = int(mask.sum())
            mask &= m
            if not mask.any():
                raise NoCandidatesError(
                    f"no item passes the rules: {name} leaves 0 of the {before} items "
                    "the earlier rules allowed"
                    + (" (the catalogue is empty)" if catalog.size == 0 else "")
                )
        if catalog.size == 0:
            raise NoCandidatesError("no item to recommend: the catalogue is empty")
        return mask

    def boost(self, catalog: Catalog) -> np.ndarray | None:
        """Score multipliers per item, or ``None`` without a boost rule."""
        if self.boost_field is None:
            return None
        if self.boost_field not in catalog.fields:
            known = ", ".join(sorted(catalog.fields)) or "none"
            raise ConfigError(
                f"boost_field {self.boost_field!r} is not a numeric product column (known: {known})"
            )
        v = catalog.fields[self.boost_field]
        finite = np.isfinite(v)
        lo, hi = (v[finite].min(), v[finite].max()) if finite.any() else (0.0, 0.0)
        scaled = np.where(finite, (v - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
        w = 1.0 if self.boost_weight is None else float(self.boost_weight)
        return 1.0 + w * scaled
