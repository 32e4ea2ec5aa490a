"""The feature catalog: every feature with description, dtype, window and source table.

The catalog is built from the same spec lists the feature groups use to name
their columns, and a test checks that the computed table has exactly these
columns, so the catalog cannot drift from the definitions.
"""

from __future__ import annotations

from cip.features.behaviour import category_specs, event_specs
from cip.features.rfm import order_specs
from cip.features.segments import SEGMENT_GRID
from cip.features.spec import FEATURE_SET_VERSION, FeatureParams, FeatureSpec

__all__ = ["catalog", "catalog_markdown", "feature_specs", "score_specs"]


def score_specs(p: FeatureParams) -> list[FeatureSpec]:
    """The RFM scores and the named segment."""
    note = "quintile of buyers, 1 + floor(5 * min-rank / n); null: never bought"
    return [
        FeatureSpec("rfm_segment", "Named RFM segment from (R, ceil((F+M)/2)), see the grid below; null: never bought.", "str", None, "orders", "scores"),
        FeatureSpec("r_score", f"Recency score 1-5 (most recent = 5; {note}).", "Int64", None, "orders", "scores"),
        FeatureSpec("f_score", f"Frequency score 1-5 ({note}).", "Int64", p.lookback_days, "orders", "scores"),
        FeatureSpec("m_score", f"Monetary score 1-5 (on monetary rounded to cents; {note}).", "Int64", p.lookback_days, "orders", "scores"),
    ]  # fmt: skip


def feature_specs(
    p: FeatureParams, *, events: bool, products: bool, order_lines: bool
) -> list[FeatureSpec]:
    """The specs of the columns produced for inputs with these tables, in column order."""
    specs = order_specs(p)
    if events:
        specs += event_specs(p, with_products=products)
    if products and order_lines:
        specs += category_specs(p)
    return specs + score_specs(p)


def catalog(params: FeatureParams | None = None) -> list[FeatureSpec]:
    """Every feature of the feature set (all groups; event and category features
    are only produced when events / products exist)."""
    p = params or FeatureParams()
    return feature_specs(p, events=True, products=True, order_lines=True)


def catalog_markdown(params: FeatureParams | None = None) -> str:
    """The catalog as a README-ready markdown document (table plus the segment grid)."""
    p = params or FeatureParams()
    lines = [
        f"## Feature catalog (feature set {FEATURE_SET_VERSION})",
        "",
        "Every feature is computed as of a date `as_of` from records with `ts < as_of`;"
        " a window of *w* days is `[as_of - w days, as_of)`. Keys: `unified_id`, `as_of`."
        " Features from `events` / `products` are absent when those tables are empty.",
        "",
        "| feature | description | dtype | window (days) | source table |",
        "|---|---|---|---|---|",
    ]
    for s in catalog(p):
        window = str(s.window) if s.window is not None else "all history"
        desc = s.description.replace("|", "\\|")
        lines.append(f"| `{s.name}` | {desc} | {s.dtype} | {window} | {s.source_table} |")
    lines += [
        "",
        "### Labels (`build_labels`, `build_training_set`)",
        "",
        "Horizon `[as_of, as_of + horizon)` (the half-open twin of the features' `ts < as_of`:"
        " nothing is counted twice). A label whose horizon ends after the last order/event"
        " raises `DataError`.",
        "",
        "| label | definition |",
        "|---|---|",
        "| `active` | 1 if at least one completed purchase in `[as_of - lookback, as_of)` |",
        "| `churn` | active persons only: 1 if no completed purchase in the horizon, else 0;"
        " NaN when not active |",
        "| `purchase` | 1 if any completed purchase in the horizon (everyone) |",
        "| `future_spend` | net revenue (completed - returned) in the horizon |",
    ]
    lines += ["", "### RFM segments (rows: R score, columns: FM = ceil((F + M) / 2))", ""]
    lines += ["| R \\ FM | 1 | 2 | 3 | 4 | 5 |", "|---|---|---|---|---|---|"]
    for r in sorted(SEGMENT_GRID, reverse=True):
        lines.append(f"| {r} | " + " | ".join(SEGMENT_GRID[r][f] for f in range(1, 6)) + " |")
    return "\n".join(lines) + "\n"
