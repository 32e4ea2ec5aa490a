"""Recommendation blocks for pages and campaigns, with business rules applied before top-k.

>>> bs = fit_blocks(lines, products, as_of="2011-09-01")             # doctest: +SKIP
>>> bs.recommend("buy_again", user_id="17850", k=6).item_ids           # doctest: +SKIP
>>> bs.recommend("bought_together", items=["85123A"], k=4,
...              rules={"in_stock_only": True, "max_per_category": 2})  # doctest: +SKIP

Blocks (:data:`BLOCKS`): ``personal`` (a CF recommender), ``similar`` (CF blended
with TF-IDF content similarity), ``bought_together`` (co-purchase lift / LLR),
``buy_again`` (repeat purchases with the item's repurchase cycle), ``popular``
and ``trending`` (time-decayed, per category), ``recently_viewed`` and
``upsell`` (similar and pricier). Each is fitted once on a :class:`History`
cut at ``as_of`` and answers a request with ``k`` items whenever the catalogue
under the rules has ``k``.

Fallback order (each item comes from the first tier that scores it; the
answer's ``sources`` name the tier of every item):

1. the block's own candidates;
2. ``popular_category``: popular items of the request's category, or of its
   context items' categories (skipped when the request has neither);
3. ``popular``: time-decayed popularity over the whole catalogue;
4. ``catalogue``: every other allowed item, in catalogue order (score 0).

The ``popular`` block itself falls back to 3 then 4. Rules
(:class:`~models.recommender.blocks.rules.Rules`) filter every tier, so the
fallbacks never bring back an excluded item; ``upsell``'s price condition
also holds for its fallbacks, and the request's context items are never
recommended (except by ``recently_viewed``, whose candidates they are).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.models.recommender.blocks._base import Block, Queries, Request
from cip.models.recommender.blocks._catalog import Catalog, build_catalog
from cip.models.recommender.blocks._history import DAY, History, build_history
from cip.models.recommender.blocks._many import Dense, Many, Ranked, Sparse, select_many
from cip.models.recommender.blocks._one import ranked, select_one
from cip.models.recommender.blocks._select import BlockResult, select
from cip.models.recommender.blocks.buy_again import BuyAgainBlock
from cip.models.recommender.blocks.personal import PersonalBlock
from cip.models.recommender.blocks.popular import (
    PopularBlock,
    RecentlyViewedBlock,
    TrendingBlock,
    decayed_counts,
    in_categories,
)
from cip.models.recommender.blocks.rules import NoCandidatesError, Rules
from cip.models.recommender.blocks.similar import SimilarBlock, UpsellBlock
from cip.models.recommender.blocks.together import BoughtTogetherBlock
from cip.profiles.errors import ConfigError, NotFoundError

__all__ = [
    "BLOCKS",
    "Block",
    "BlockResult",
    "BlockSet",
    "BoughtTogetherBlock",
    "BuyAgainBlock",
    "Catalog",
    "History",
    "NoCandidatesError",
    "PersonalBlock",
    "PopularBlock",
    "Queries",
    "RecentlyViewedBlock",
    "Request",
    "Rules",
    "SimilarBlock",
    "TrendingBlock",
    "UpsellBlock",
    "build_catalog",
    "build_history",
    "fit_blocks",
    "make_block",
]

#: Block name -> class.
BLOCKS: dict[str, type[Block]] = {
    cls.name: cls
    for cls in (
        PersonalBlock,
        SimilarBlock,
        BoughtTogetherBlock,
        BuyAgainBlock,
        PopularBlock,
        TrendingBlock,
        RecentlyViewedBlock,
        UpsellBlock,
    )
}

#: Distinct rule sets whose masks are kept (requests mostly repeat a few).
_RULE_CACHE = 256

#: Half-life (days) of the popularity behind the ``popular*`` fallbacks.
FALLBACK_HALF_LIFE_DAYS = 90.0


def _frozen(rules: Any) -> Any:
    """A hashable key of request rules (a dict's lists as tuples)."""
    if isinstance(rules, dict):
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in rules.items()))
    return rules


def make_block(name: str, **params: Any) -> Block:
    """A new, unfitted block by name (``params``: its hyperparameters)."""
    try:
        cls = BLOCKS[name]
    except KeyError:
        raise ConfigError(f"unknown block {name!r}; expected one of {', '.join(BLOCKS)}") from None
    unknown = set(params) - set(cls._param_names())
    if unknown:
        raise ConfigError(
            f"block {name} has no parameter(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(cls._param_names()) or 'none'}"
        )
    return cls(**params)


class BlockSet:
    """Fitted blocks over one :class:`History`, each with its default rules.

    Use :func:`fit_blocks` to build one. ``recommend`` answers one request;
    ``recommend_many`` a batch (campaigns) in chunks, vectorised.
    """

    def __init__(
        self,
        history: History,
        blocks: dict[str, Block],
        rules: dict[str, Rules] | None = None,
    ) -> None:
        self.history = history
        self.blocks = blocks
        self.rules = dict(rules or {})
        self.popularity_ = decayed_counts(history, FALLBACK_HALF_LIFE_DAYS)
        self._rule_cache: dict[Rules, tuple[np.ndarray, np.ndarray | None]] = {}

    @property
    def as_of(self) -> pd.Timestamp:
        return self.history.as_of

    def _block(self, name: str) -> Block:
        if name not in self.blocks:
            raise NotFoundError(
                f"block {name!r} is not fitted here; fitted: {', '.join(self.blocks) or 'none'}"
            )
        return self.blocks[name]

    def queries(
        self,
        user_ids: list[Any],
        items: list[list[Any]] | None = None,
        at: Any = None,
        category: list[str | None] | None = None,
    ) -> Queries:
        """Requests as positions: unknown people get row -1, unknown items are ignored."""
        h, b = self.history, len(user_ids)
        rows = np.full(b, -1, dtype=np.int64)
        given = np.array([u is not None for u in user_ids], dtype=bool)
        if given.any():
            rows[given] = h.user_rows([str(u) for u in user_ids if u is not None])
        lists = items if items is not None else [[] for _ in range(b)]
        lens = np.fromiter((len(x) for x in lists), dtype=np.int64, count=b)
        flat = [str(x) for xs in lists for x in xs]
        pos = h.catalog.positions(flat) if flat else np.zeros(0, dtype=np.int64)
        r = np.repeat(np.arange(b), lens)
        starts = np.repeat(np.cumsum(lens) - lens, lens)
        order = (np.arange(len(flat)) - starts + 1).astype(np.float64)
        ok = pos >= 0
        n = h.catalog.size
        key, o = r[ok] * n + pos[ok], order[ok]
        idx = np.lexsort((o, key))  # an item twice in one request: its latest position counts
        last = np.ones(len(idx), dtype=bool)
        last[:-1] = key[idx][1:] != key[idx][:-1]
        sel = idx[last]
        rr, cc = key[sel] // n, key[sel] % n
        shape = (b, n)
        indptr = np.searchsorted(rr, np.arange(b + 1))  # sel is sorted by row, then column
        ctx = sp.csr_matrix((np.ones(len(sel)), cc, indptr), shape=shape)
        ctx_order = sp.csr_matrix((o[sel], cc, indptr), shape=shape)
        if at is None:
            days = np.zeros(b)
        else:
            t = pd.to_datetime(pd.Series(at if not np.isscalar(at) else [at] * b))
            days = np.maximum(
                (t.to_numpy(dtype="datetime64[us]") - h.as_of.to_datetime64()) / DAY, 0.0
            )
        cats = np.full(b, -1, dtype=np.int64)
        named = [] if category is None else [c for c in category if c is not None]
        if named:
            codes = h.catalog.codes("category", named, keep_unknown=True)
            if (codes < 0).any():
                bad = named[int(np.flatnonzero(codes < 0)[0])]
                raise NotFoundError(f"unknown category {bad!r}")
            cats[[i for i, c in enumerate(category) if c is not None]] = codes
        return Queries(rows, ctx, ctx_order, np.asarray(days, dtype=np.float64), cats)

    def request(
        self, user_id: Any = None, items: Any = (), at: Any = None, category: str | None = None
    ) -> Request:
        """One request as positions (see :meth:`queries`)."""
        h = self.history
        row = -1 if user_id is None else int(h.user_rows([str(user_id)])[0])
        flat = [str(x) for x in items]
        pos = h.catalog.positions(flat) if flat else np.zeros(0, dtype=np.int64)
        seen: dict[int, int] = {}
        for i, p in enumerate(pos.tolist()):  # an item twice: its latest place counts
            if p >= 0:
                seen.pop(p, None)
                seen[p] = i + 1
        ctx = np.fromiter(seen.keys(), dtype=np.int64, count=len(seen))
        order = np.fromiter(seen.values(), dtype=np.int64, count=len(seen))
        days = 0.0
        if at is not None:
            t = pd.to_datetime(pd.Series([at]))
            days = max(
                float((t.to_numpy(dtype="datetime64[us]")[0] - h.as_of.to_datetime64()) / DAY), 0.0
            )
        cat = -1
        if category is not None:
            code = h.catalog.codes("category", [category], keep_unknown=True)
            if code[0] < 0:
                raise NotFoundError(f"unknown category {category!r}")
            cat = int(code[0])
        return Request(row, ctx, order, days, cat)

    def _ranking(self, key: str, r: Rules, pos: np.ndarray, scores: np.ndarray, boost: Any):
        """A request-independent tier ranked once per boost (popular, trending fallbacks)."""
        cache = self.__dict__.setdefault("_rank_cache", {})
        ck = (key, r.boost_field, r.boost_weight)
        if ck not in cache:
            if len(cache) >= _RULE_CACHE:
                cache.clear()
            cache[ck] = ranked(pos, scores if boost is None else scores * boost[pos])
        return cache[ck]

    def _category_mask(self, items: np.ndarray, category: int) -> np.ndarray | None:
        """Items in the request's category or its context items' categories (None: neither)."""
        cat = self.history.catalog
        wanted = cat.category[items]
        if category >= 0:
            wanted = np.append(wanted, category)
        wanted = wanted[wanted >= 0]
        if len(wanted) == 0:
            return None
        table = np.zeros(len(cat.categories) + 1, dtype=bool)
        table[wanted] = True
        return table[cat.category]  # -1 (no category) reads the last, False

    def _tiers_one(
        self,
        name: str,
        block: Block,
        r: Rules,
        boost: np.ndarray | None,
        cats: np.ndarray | None,
        pos: np.ndarray,
        sc: np.ndarray,
    ) -> list:
        """The tiers of one request: the block's candidates, then the popularity fallbacks."""
        if block.global_ranking:
            pos, sc = self._ranking(name, r, pos, sc, boost)
            if cats is not None:
                keep = cats[pos]
                pos, sc = pos[keep], sc[keep]
            tiers = [(block.name, pos, sc, True)]
        else:
            tiers = [(block.name, pos, sc if boost is None else sc * boost[pos], False)]
        pp = self.__dict__.get("_popular_pos")
        if pp is None:
            pp = self._popular_pos = np.flatnonzero(self.popularity_ > 0)
        ppos, psc = self._ranking("", r, pp, self.popularity_[pp], boost)
        if block.name != "popular" and cats is not None:
            keep = cats[ppos]
            tiers.append(("popular_category", ppos[keep], psc[keep], True))
        tiers.append(("popular", ppos, psc, True))
        cat = self.__dict__.get("_catalogue_tier")
        if cat is None:
            n = self.history.catalog.size
            cat = self._catalogue_tier = ("catalogue", np.arange(n), np.zeros(n), True)
        tiers.append(cat)
        return tiers

    def _allowed(
        self, name: str, block: Block, q: Queries, r: Rules, base: np.ndarray, strict: bool
    ) -> np.ndarray:
        """``(b, n)``: the items each request may get (rules, purchases, context, the block's
        own condition); with ``strict``, :class:`NoCandidatesError` naming what left none."""
        h = self.history
        allowed = np.broadcast_to(base, (q.size, h.catalog.size)).copy()
        if r.exclude_purchased:
            known = np.flatnonzero(q.rows >= 0)
            bought = h.counts[q.rows[known]].tocoo()
            allowed[known[bought.row], bought.col] = False
        if block.excludes_context and q.items.nnz:
            ctx = q.items.tocoo()
            allowed[ctx.row, ctx.col] = False
        extra = block.request_mask(q)
        if extra is not None:
            allowed &= extra
        if strict and not allowed.any():
            causes = (
                ("exclude_purchased", bool(r.exclude_purchased)),
                ("the request's own items", block.excludes_context and q.items.nnz > 0),
                (f"the {name} block's condition", extra is not None),
            )
            why = " + ".join(c for c, on in causes if on)
            raise NoCandidatesError(f"no item passes the rules: {why} leave(s) none")
        return allowed

    def _run(self, name: str, q: Queries, k: int, rules: Any, strict: bool) -> list[BlockResult]:
        """A batch: masks and the block's scores vectorised, then top-k per request."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, not {k!r}")
        block = self._block(name)
        h = self.history
        r = self._merged(name, rules)
        base, boost = self._rule_arrays(r)
        allowed = self._allowed(name, block, q, r, base, strict)
        sparse = type(block).candidates is not Block.candidates  # cheap per request
        if block.global_ranking:
            gpos, gsc = block.candidates(Request(-1, np.zeros(0, np.int64), np.zeros(0), 0.0, -1))
        elif not sparse:
            scores = block.scores(q)
        ids, ip, ix = h.catalog.ids, q.items.indptr, q.items.indices
        order = q.item_order.data
        out = []
        for i in range(q.size):
            items = ix[ip[i] : ip[i + 1]]
            cats = self._category_mask(items, int(q.category[i]))
            if block.global_ranking:
                pos, sc = gpos, gsc
            elif sparse:
                o = order[ip[i] : ip[i + 1]]
                srt = np.argsort(o, kind="stable")
                one = Request(int(q.rows[i]), items[srt], o[srt], float(q.at[i]), -1)
                pos, sc = block.candidates(one)
            else:
                row = scores[i]
                pos = np.flatnonzero(row > -np.inf)
                sc = row[pos]
            tiers = self._tiers_one(name, block, r, boost, cats, pos, sc)
            res = select_one(tiers, allowed[i], int(k), h.catalog.category, r.max_per_category)
            out.append(BlockResult(ids[res.item_ids], res.scores, res.sources, name))
        return out

    def _run_many(self, name: str, q: Queries, k: int, rules: Any) -> Many:
        """:meth:`_run` of requests without context items or category (campaigns), vectorised.

        Every row answers exactly what :meth:`recommend` answers for that person
        (:mod:`._many`); a person the rules leave nothing gets no entries.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, not {k!r}")
        block = self._block(name)
        h = self.history
        r = self._merged(name, rules)
        base, boost = self._rule_arrays(r)
        allowed = self._allowed(name, block, q, r, base, strict=False)
        if block.global_ranking:
            gpos, gsc = block.candidates(Request(-1, np.zeros(0, np.int64), np.zeros(0), 0.0, -1))
            one = self._tiers_one(name, block, r, boost, None, gpos, gsc)
            own = Ranked(one[0][0], one[0][1], one[0][2])
        else:
            one = self._tiers_one(name, block, r, boost, None, np.zeros(0, np.int64), np.zeros(0))
            own = block.candidates_many(q)
            if boost is not None:
                if isinstance(own, Sparse):
                    own = own._replace(scores=own.scores * boost[own.pos])
                else:
                    own = own._replace(
                        scores=own.scores * (boost if own.cols is None else boost[own.cols])
                    )
            own = own._replace(name=block.name)
        tiers = [own] + [Ranked(t[0], t[1], t[2]) for t in one[1:]]
        cat = h.catalog.category
        res = select_many(tiers, allowed, int(k), cat, r.max_per_category)
        if not res.retry.any():
            return res
        # the wide retry of select_one, row by row (rare: the cap discarded too many)
        counts, pos, val, tier = res.counts.copy(), [res.pos], [res.scores], [res.tier]
        names = {t[0]: i for i, t in enumerate(tiers)}
        for i in np.flatnonzero(res.retry):
            if isinstance(own, Sparse):
                a, b = own.indptr[i], own.indptr[i + 1]
                p, s = own.pos[a:b], own.scores[a:b]
            elif isinstance(own, Dense):
                p, s = own.row(i)
            else:
                p, s = own.pos, own.scores
            row = [(own.name, p, s, isinstance(own, Ranked))] + list(one[1:])
            x = select_one(row, allowed[i], int(k), cat, r.max_per_category)
            counts[i] = len(x.item_ids)
            pos.append(x.item_ids)
            val.append(x.scores)
            tier.append(np.array([names[str(n)] for n in x.sources], dtype=np.int64))
        # put the retried rows' entries back in row order
        row_of = np.concatenate(
            [np.repeat(np.arange(q.size), res.counts)]
            + [np.full(len(p), i) for i, p in zip(np.flatnonzero(res.retry), pos[1:], strict=True)]
        )
        o = np.argsort(row_of, kind="stable")
        return Many(
            counts,
            np.concatenate(pos)[o],
            np.concatenate(val)[o],
            np.concatenate(tier)[o],
            np.zeros(q.size, dtype=bool),
        )

    def _run_one(self, name: str, req: Request, k: int, rules: Any) -> BlockResult:
        """:meth:`_run` of one request, without dense ``(b, n)`` arrays (same answer)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, not {k!r}")
        block = self._block(name)
        h = self.history
        r = self._merged(name, rules)
        base, boost = self._rule_arrays(r)
        allowed = base.copy()
        if r.exclude_purchased and req.row >= 0:
            allowed[h.purchased(req.row)] = False
        if block.excludes_context and len(req.items):
            allowed[req.items] = False
        extra = block.request_mask_one(req)
        if extra is not None:
            allowed &= extra
        if not allowed.any():
            causes = (
                ("exclude_purchased", bool(r.exclude_purchased)),
                ("the request's own items", block.excludes_context and len(req.items) > 0),
                (f"the {name} block's condition", extra is not None),
            )
            why = " + ".join(c for c, on in causes if on)
            raise NoCandidatesError(f"no item passes the rules: {why} leave(s) none")
        cats = self._category_mask(req.items, req.category)
        pos, sc = block.candidates(req)
        tiers = self._tiers_one(name, block, r, boost, cats, pos, sc)
        res = select_one(tiers, allowed, int(k), h.catalog.category, r.max_per_category)
        return BlockResult(h.catalog.ids[res.item_ids], res.scores, res.sources, name)

    def _tier_names(self, name: str) -> list[str]:
        """The tier names of :meth:`_run_many` for ``name`` (no category: no ``popular_category``)."""
        return [self._block(name).name, "popular", "catalogue"]

    def _merged(self, name: str, rules: Any) -> Rules:
        """The block's rules with the request's over them (cached: requests repeat a few)."""
        try:
            key = (name, _frozen(rules))
            hash(key)
        except TypeError:
            return self.rules.get(name, Rules()).merged(rules)
        cache = self.__dict__.setdefault("_merge_cache", {})
        if key not in cache:
            if len(cache) >= _RULE_CACHE:
                cache.clear()
            cache[key] = self.rules.get(name, Rules()).merged(rules)
        return cache[key]

    def _rule_arrays(self, r: Rules) -> tuple[np.ndarray, np.ndarray | None]:
        """The request-independent filter mask and boost of ``r`` (cached: rules repeat)."""
        if r not in self._rule_cache:
            if len(self._rule_cache) >= _RULE_CACHE:
                self._rule_cache.clear()
            self._rule_cache[r] = (r.allowed(self.history.catalog), r.boost(self.history.catalog))
        return self._rule_cache[r]

    def _tiers(self, block: Block, q: Queries) -> list[tuple[str, np.ndarray]]:
        tiers = [(block.name, block.scores(q))]
        pop = np.where(self.popularity_ > 0, self.popularity_, -np.inf)
        full = np.broadcast_to(pop, (q.size, len(pop)))
        if block.name != "popular":
            cats = in_categories(self.history, q)
            if cats is not None:
                tiers.append(("popular_category", np.where(cats, full, -np.inf)))
        tiers.append(("popular", full))
        tiers.append(("catalogue", np.zeros((q.size, len(pop)))))
        return tiers

    def _run_dense(
        self, name: str, q: Queries, k: int, rules: Any, strict: bool
    ) -> list[BlockResult]:
        """The dense batch path: ``(b, n)`` tiers through :func:`select` (the reference
        :meth:`_run` and :meth:`recommend` agree with, up to the order of tied scores)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, not {k!r}")
        block = self._block(name)
        h = self.history
        r = self.rules.get(name, Rules()).merged(rules)
        base, boost = self._rule_arrays(r)
        allowed = self._allowed(name, block, q, r, base, strict)
        res = select(
            self._tiers(block, q),
            allowed,
            int(k),
            h.catalog.category,
            r.max_per_category,
            boost,
        )
        ids = h.catalog.ids
        return [BlockResult(ids[x.item_ids], x.scores, x.sources, name) for x in res]

    def recommend(
        self,
        block: str,
        user_id: Any = None,
        items: list[Any] | tuple[Any, ...] = (),
        k: int = 10,
        rules: Rules | dict[str, Any] | None = None,
        at: Any = None,
        category: str | None = None,
    ) -> BlockResult:
        """One request: ``k`` items of ``block`` for a person and/or context items.

        Args:
            block: a fitted block's name.
            user_id: the person (unified id), or ``None`` for an anonymous visitor.
            items: context items (the product page's item, the cart, the session; oldest first).
            k: items wanted.
            rules: the request's rules, merged over the block's.
            at: the request time (default ``as_of``), for timing-aware blocks.
            category: restrict the popular fallbacks (and ``popular``) to this category.

        Raises:
            NoCandidatesError: the rules leave no item at all.
        """
        return self._run_one(block, self.request(user_id, items, at, category), k, rules)

    def recommend_flat(
        self,
        block: str,
        user_ids: Any,
        k: int = 10,
        rules: Rules | dict[str, Any] | None = None,
        at: Any = None,
        items: list[list[Any]] | None = None,
        chunk: int = 512,
    ) -> dict[str, np.ndarray]:
        """:meth:`recommend_many` as flat arrays (no DataFrame): ``counts`` per request (in
        request order), then ``item_id``, ``score``, ``source`` of all answers in rank order.

        Requests without context items run the vectorised path (:mod:`._many`).
        """
        users = list(pd.Series(user_ids, dtype=object))
        counts, item, score, source = [], [], [], []
        ids = self.history.catalog.ids
        times = list(at) if pd.api.types.is_list_like(at) else None  # one time per request
        for s in range(0, len(users), chunk):
            part = users[s : s + chunk]
            t = at if times is None else times[s : s + chunk]
            if t is not None and times is None:
                t = [t] * len(part)
            q = self.queries(part, None if items is None else items[s : s + chunk], t)
            if q.items.nnz == 0 and (q.category < 0).all():  # campaigns: the vectorised path
                many = self._run_many(block, q, k, rules)
                names = np.array(self._tier_names(block), dtype=object)
                counts.append(many.counts)
                item.append(ids[many.pos])
                score.append(many.scores)
                source.append(names[many.tier])
                continue
            res = self._run(block, q, k, rules, strict=False)
            counts.append(np.fromiter((len(x.item_ids) for x in res), np.int64, len(res)))
            item.extend(x.item_ids for x in res)
            score.extend(x.scores for x in res)
            source.extend(x.sources for x in res)

        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return {
            "counts": cat(counts, np.int64),
            "item_id": cat(item, object),
            "score": cat(score, np.float64),
            "source": cat(source, object),
        }

    def recommend_many(
        self,
        block: str,
        user_ids: Any,
        k: int = 10,
        rules: Rules | dict[str, Any] | None = None,
        at: Any = None,
        items: list[list[Any]] | None = None,
        chunk: int = 512,
    ) -> pd.DataFrame:
        """A batch (campaigns): DataFrame ``user_id, item_id, score, rank, source``.

        A person for whom the rules leave nothing gets no rows (no error).
        """
        users = np.array(list(pd.Series(user_ids, dtype=object)), dtype=object)
        flat = self.recommend_flat(block, users, k, rules, at, items, chunk)
        n = flat["counts"]
        return pd.DataFrame(
            {
                "user_id": np.repeat(users, n),
                "item_id": flat["item_id"],
                "score": flat["score"],
                "rank": np.arange(int(n.sum()), dtype=np.int64)
                - np.repeat(np.cumsum(n) - n, n)
                + 1,
                "source": flat["source"],
            }
        )


def fit_blocks(
    lines: pd.DataFrame,
    products: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    as_of: Any = None,
    blocks: dict[str, dict[str, Any] | Block] | None = None,
    rules: dict[str, Rules | dict[str, Any]] | None = None,
) -> BlockSet:
    """Fit blocks on order lines / events / products before ``as_of``.

    Args:
        lines: order lines ``user_id, item_id, ts[, order_id]`` (completed only).
        products: the catalogue (``item_id, title, category, brand, price, in_stock,
            description, tags`` and numeric columns for boosts), optional.
        events: item views ``user_id, item_id, ts[, event_type]``, optional.
        as_of: point-in-time cut-off (default: just after the last line).
        blocks: block name -> parameters (or a ready :class:`Block`); default every
            block but ``personal`` with its defaults (``personal`` needs a model
            or fits ALS, so it is opt-in: ``{"personal": {}}``).
        rules: block name -> default rules of that block.
    """
    history = build_history(lines, products, events, as_of)
    spec = blocks if blocks is not None else {n: {} for n in BLOCKS if n != "personal"}
    fitted = {}
    for name, params in spec.items():
        b = params if isinstance(params, Block) else make_block(name, **(params or {}))
        fitted[name] = b.fit(history)
    parsed = {n: Rules.from_dict(r) for n, r in (rules or {}).items()}
    unknown = set(parsed) - set(fitted)
    if unknown:
        raise ConfigError(f"rules given for block(s) not fitted: {', '.join(sorted(unknown))}")
    return BlockSet(history, fitted, parsed)
