"""SQL of recent-event rules (abandoned cart, abandoned browse, ...).

Events belong to a person through ``record_map`` (identity resolution); when
identity has not run, ``customer_id`` stands in for the person. Only events in
``[as_of - within_hours, as_of)`` are read, so a rule is point-in-time correct:
nothing at or after ``as_of`` changes it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cip.activation.definitions import EventRule

__all__ = ["event_rule_select", "event_reason"]


def _persons(table: str, alias: str, has_record_map: bool) -> tuple[str, str]:
    """(join clause, unified_id expression) mapping raw records of ``table`` to persons."""
    if has_record_map:
        return (
            f" JOIN record_map rm_{alias} ON rm_{alias}.source_table = '{table}' "
            f"AND rm_{alias}.record_id = {alias}.record_id",
            f"rm_{alias}.unified_id",
        )
    return "", f"CAST({alias}.customer_id AS VARCHAR)"


def event_rule_select(
    rule: EventRule,
    as_of: dt.datetime,
    *,
    has_record_map: bool,
    erased_pred: str,
) -> tuple[str, list[Any]]:
    """``SELECT unified_id, n, label`` of the persons matching ``rule`` at ``as_of``.

    ``n`` is the number of matching events (in the best group when ``by`` is
    set), ``label`` the group (a category or item id, else null). ``erased_pred``
    is a predicate over the column ``m.unified_id``.
    """
    start = as_of - dt.timedelta(hours=rule.within_hours)
    ev_join, ev_uid = _persons("events", "e", has_record_map)
    types = [rule.event_type, *[t for t in rule.without if t != rule.event_type]]
    ph = ", ".join("CAST(? AS VARCHAR)" for _ in types)
    params: list[Any] = [start, as_of, *types]
    ctes = [
        f"ev AS (SELECT {ev_uid} AS unified_id, e.ts, e.event_type, e.item_id FROM events e{ev_join} "
        f"WHERE e.ts >= CAST(? AS TIMESTAMP) AND e.ts < CAST(? AS TIMESTAMP) "
        f"AND e.event_type IN ({ph}) AND {ev_uid} IS NOT NULL)"
    ]
    stops = []
    if rule.without:
        wph = ", ".join("CAST(? AS VARCHAR)" for _ in rule.without)
        stops.append(f"SELECT unified_id, ts FROM ev WHERE event_type IN ({wph})")
        params += list(rule.without)
    if "purchase" in rule.without:
        o_join, o_uid = _persons("orders", "o", has_record_map)
        stops.append(
            f"SELECT {o_uid} AS unified_id, o.ts FROM orders o{o_join} "
            f"WHERE o.ts >= CAST(? AS TIMESTAMP) AND o.ts < CAST(? AS TIMESTAMP) "
            f"AND COALESCE(o.status, 'completed') = 'completed' AND {o_uid} IS NOT NULL"
        )
        params += [start, as_of]
    if stops:
        ctes.append(
            "stops AS (SELECT unified_id, max(ts) AS last_stop FROM ("
            + " UNION ALL ".join(stops)
            + ") z GROUP BY unified_id)"
        )
    else:
        ctes.append(
            "stops AS (SELECT CAST(NULL AS VARCHAR) AS unified_id, "
            "CAST(NULL AS TIMESTAMP) AS last_stop WHERE FALSE)"
        )
    if rule.by == "category":
        ctes.append(
            "cat AS (SELECT item_id, category FROM (SELECT item_id, category, row_number() OVER "
            "(PARTITION BY item_id ORDER BY ingested_at DESC, record_id DESC) AS rn FROM products "
            "WHERE category IS NOT NULL) c WHERE rn = 1)"
        )
        label, join = "cat.category", " JOIN cat ON cat.item_id = ev.item_id"
    elif rule.by == "item":
        label, join = "ev.item_id", ""
    else:
        label, join = "CAST(NULL AS VARCHAR)", ""
    not_group = label if rule.by != "any" else None
    group = "ev.unified_id" + (f", {not_group}" if not_group else "")
    ctes.append(
        f"m AS (SELECT ev.unified_id, {label} AS label, count(*) AS n, max(ev.ts) AS last_ts "
        f"FROM ev{join} WHERE ev.event_type = CAST(? AS VARCHAR)"
        + (f" AND {not_group} IS NOT NULL" if not_group else "")
        + f" GROUP BY {group} HAVING count(*) >= ?)"
    )
    params += [rule.event_type, rule.min_count]
    stop_ok = (
        "s.last_stop IS NULL OR s.last_stop < m.last_ts"
        if rule.without_since == "last_match"
        else "s.last_stop IS NULL"
    )
    ctes.append(
        "ok AS (SELECT m.unified_id, m.label, m.n, row_number() OVER (PARTITION BY m.unified_id "
        "ORDER BY m.n DESC, m.label) AS rn FROM m LEFT JOIN stops s "
        f"ON s.unified_id = m.unified_id WHERE ({stop_ok}) AND {erased_pred})"
    )
    sql = "WITH " + ", ".join(ctes) + " SELECT unified_id, n, label FROM ok WHERE rn = 1"
    return sql, params


def event_reason(rule: EventRule) -> tuple[str, list[Any]]:
    """SQL text expression (over ``e.n`` and ``e.label``) explaining the match, with params."""
    if rule.by == "any":
        return "CAST(? AS VARCHAR)", [rule.describe()]
    what = "category" if rule.by == "category" else "item"
    rest = EventRule(**{**rule.model_dump(), "by": "any", "min_count": 1}).describe()
    rest = rest.removeprefix(rule.event_type)
    return (
        "CAST(? AS VARCHAR) || e.label || ': ' || CAST(e.n AS VARCHAR) || CAST(? AS VARCHAR)",
        [f"{rule.event_type} of {what} ", f" times{rest}"],
    )
