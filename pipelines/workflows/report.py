"""``cip report`` / ``ws.report()``: one self-contained HTML page of what the workspace knows.

Sections, in order (each says in one line when it has no data):

* **Workspace** - profiles, sources, quarantined rows;
* **Models** - a card per champion (holdout metrics, version, data window) and
  the CLV decile chart when a CLV champion exists;
* **Segments** - members at each segment's latest build, and the RFM flows
  (persons moving between segments) since the previous build;
* **Triggers and messages** - the trigger log's decisions (sent, held out,
  capped, ...; delivered) and the message events per campaign and channel
  (sends, deliveries, human opens, clicks, control);
* **Attribution** - orders credited to the last and the first touch (click)
  per campaign and channel (:mod:`cip.activation.measure.attribution`);
* **Lift** - treatment vs control per campaign/trigger with 95 % intervals
  and the minimum-detectable-effect warnings (the figures of ``cip measure lift``);
* **Uplift** - each uplift model's holdout Qini coefficient, AUUC and uplift
  at 30 % vs the baselines, its Qini curve, and the scored persons;
* **Best channel and hour** - how many persons get each channel and send hour
  (their own responses, or the shop's default).

The page has no scripts and loads nothing by URL: CSS is inline, charts are
base64 PNGs (matplotlib). It is written atomically (a temporary file beside the
target, then ``os.replace``). A section whose figures cannot be computed shows
the error in one line (logged with its traceback) and the rest of the page is
still written; ``ReportResult.errors`` lists them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cip.pipelines.files import write_text_atomic
from cip.pipelines.workflows import _report_html as h
from cip.pipelines.workflows.activation import open_quiet
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError

__all__ = ["SECTIONS", "ReportResult", "build_report", "DEFAULT_REPORT"]

log = logging.getLogger(__name__)

#: Section id -> heading, in page order.
SECTIONS: dict[str, str] = {
    "workspace": "Workspace",
    "models": "Models",
    "segments": "Segments",
    "messages": "Triggers and messages",
    "attribution": "Attribution",
    "lift": "Lift",
    "uplift": "Uplift",
    "channels": "Best channel and hour",
}
#: Where the report goes when no ``out`` is given (relative to the workspace).
DEFAULT_REPORT = "reports/report.html"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote."""

    path: str
    bytes: int
    sections: dict[str, bool]  # section id -> has data
    errors: dict[str, str] = field(default_factory=dict)  # section id -> error line

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "bytes": self.bytes,
            "sections": self.sections,
            "errors": self.errors,
        }


@dataclass
class _Data:
    """What the sections read once."""

    ws: Workspace
    facts: Any
    orders: Any
    window_days: float
    effect: float
    tables: dict[str, int]


# -- sections -----------------------------------------------------------------


def _workspace(d: _Data) -> tuple[bool, str]:
    from cip.pipelines.workflows.status import collect_status

    st = collect_status(d.ws)
    quarantined = sum(int(q["n"]) for q in st.quarantine)
    profiles = st.tables.get("profiles", 0)
    kpis = [
        ("profiles", profiles),
        ("sources", len(st.sources)),
        ("orders", st.tables.get("orders", 0)),
        ("events", st.tables.get("events", 0)),
        ("quarantined rows", quarantined),
    ]
    body = (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi" data-kpi="{h.esc(k)}"><b>{h.fmt(v, "int")}</b>{h.esc(k)}</div>'
            for k, v in kpis
        )
        + "</div>"
    )
    if st.sources:
        body += f"<p>Sources: {h.esc(', '.join(st.sources))}.</p>"
    if st.quarantine:
        body += "<h3>Quarantine</h3>" + h.table(
            ["source", "reason", "rows"],
            [(q["source"], q["reason"], h.fmt(q["n"], "int")) for q in st.quarantine[:20]],
            numeric=[2],
        )
    else:
        body += "<p>No row is in quarantine.</p>"
    if not st.sources and not profiles:
        return False, h.empty("Empty workspace: no source declared and no profile yet.")
    return True, body


def _mlflow_ready(ws: Workspace) -> bool:
    uri = ws.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).exists()
    return True


def _registry(ws: Workspace) -> Any:
    from cip.models import registry

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    return registry


def _run(run_id: str | None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient().get_run(run_id) if run_id else None


def _shown_metrics(metrics: dict[str, float]) -> list[tuple[str, float]]:
    """The holdout metrics of a run worth a card (top-level and ``holdout.*``)."""
    keep = [
        (k, v)
        for k, v in metrics.items()
        if ("." not in k or k.startswith("holdout.")) and not k.startswith("promotion")
    ]
    return sorted(keep)[:12]


def _artifact(run_id: str, path: str) -> Any:
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
    except Exception as exc:  # noqa: BLE001 - an old run without the artifact
        log.debug("artifact %s of run %s: %s", path, run_id, exc)
        return None
    return Path(local)


def _clv_deciles(run: Any) -> str:
    import pandas as pd

    winner = run.data.tags.get("clv.winner")
    p = _artifact(run.info.run_id, f"deciles_{winner}.csv") if winner else None
    if p is None:
        return h.empty("No decile table was logged with the CLV champion.")
    dec = pd.read_csv(p)
    fig = h.Figure(6.4, 2.8)
    ax = fig.subplots()
    x = dec["decile"].to_numpy()
    ax.bar(x - 0.2, dec["mean_actual"], 0.4, label="actual", color="#9aa7bd")
    ax.bar(x + 0.2, dec["mean_predicted"], 0.4, label="predicted", color="#2457c5")
    ax.set(xlabel="decile of predicted value (1 = highest)", ylabel="mean value",
           xticks=x, title=f"CLV by decile on the holdout ({winner})")  # fmt: skip
    ax.legend()
    return h.chart(fig, "CLV decile chart")


def _classifier_extras(run: Any) -> str:
    """Calibration chart and top features of a churn/propensity champion (its run's
    ``calibration_table.csv`` and ``feature_importance.csv``); '' when not logged."""
    import pandas as pd

    out = ""
    cal = _artifact(run.info.run_id, "calibration_table.csv")
    if cal is not None:
        t = pd.read_csv(cal)
        fig = h.Figure(3.2, 2.6)
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color="#9aa7bd", lw=1, ls="--", label="perfect")
        ax.plot(t["mean_predicted"], t["observed_rate"], "o-", color="#2457c5", label="holdout")
        ax.set(xlabel="predicted probability", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1),
               title="calibration")  # fmt: skip
        ax.legend(fontsize=7)
        out += h.chart(fig, "calibration")
    imp = _artifact(run.info.run_id, "feature_importance.csv")
    if imp is not None:
        top = pd.read_csv(imp).head(5)
        rows = "".join(
            f'<tr data-feature="{h.esc(f)}"><td>{h.esc(f)}</td><td class="n">{h.fmt(v, "p4")}</td></tr>'
            for f, v in zip(top["feature"], top["mean_abs_contribution"], strict=True)
        )
        out += (
            "<table><thead><tr><th>top feature</th><th>mean |contribution|</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    return out


def _models(d: _Data) -> tuple[bool, str]:
    if not _mlflow_ready(d.ws):
        return False, h.empty("No model trained yet (no MLflow store).")
    reg = _registry(d.ws)
    rows = reg.list_models()
    champs = [r for r in rows if r["champion"] and not r["name"].startswith("cip-uplift-")]
    if not champs:
        names = sorted({r["name"] for r in rows})
        what = f" ({len(names)} registered, none promoted)" if names else ""
        return False, h.empty(f"No champion model{what}.")
    cards, extra = [], ""
    for r in champs:
        run = _run(r["run_id"])
        metrics = _shown_metrics(dict(run.data.metrics)) if run else []
        tags = run.data.tags if run else {}
        created = (
            dt.datetime.fromtimestamp(r["created"] / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
            if r["created"]
            else None
        )
        window = (
            tags.get("lineage.holdout_as_of") or tags.get("lineage.as_of") or r["tags"].get("as_of")
        )
        kind = tags.get("clv.winner") or r["tags"].get("kind") or tags.get("cip.kind")
        body = h.table(
            ["metric", "value"], [(k, h.fmt(v, "p4")) for k, v in metrics], numeric=[1]
        ) if metrics else h.empty("No metric logged.")  # fmt: skip
        cards.append(
            f'<div class="card" data-model="{h.esc(r["name"])}"><h3>{h.esc(r["name"])} '
            f"v{h.esc(r['version'])}</h3><p>{h.esc(kind or '')} &middot; registered "
            f"{h.esc(created)}"
            + (f" &middot; holdout as of {h.esc(window)}" if window else "")
            + f"</p>{body}{_classifier_extras(run) if run is not None else ''}</div>"
        )
        if r["name"] == "cip-clv" and run is not None:
            extra = "<h3>CLV deciles</h3>" + _clv_deciles(run)
    return True, f'<div class="cards">{"".join(cards)}</div>{extra}'


def _segments(d: _Data) -> tuple[bool, str]:
    from cip.pipelines.workflows.activation import list_segments

    segs = list_segments(d.ws).segments
    built = [s for s in segs if s.members is not None]
    if not segs:
        return False, h.empty("No segment configured.")
    if not built:
        return False, h.empty(f"{len(segs)} segment(s) configured, none built yet.")
    body = h.table(
        ["segment", "kind", "as of", "members", "entered", "exited"],
        [(s.segment, s.kind, s.as_of, h.fmt(s.members, "int"), h.fmt(s.entered, "int"),
          h.fmt(s.exited, "int")) for s in built],
        numeric=[3, 4, 5],
        attrs=[f'data-segment="{h.esc(s.segment)}" data-members="{int(s.members or 0)}"'
               for s in built],
    )  # fmt: skip
    fig = h.Figure(6.4, max(1.6, 0.32 * len(built) + 0.8))
    ax = fig.subplots()
    ax.barh([s.segment for s in built][::-1], [s.members or 0 for s in built][::-1],
            color="#2457c5")  # fmt: skip
    ax.set(xlabel="members", title="Segment sizes at their latest build")
    return True, body + h.chart(fig, "segment sizes") + _flows(d)


def _flows(d: _Data) -> str:
    """RFM segment moves between the two latest builds (persons who changed segment)."""
    from cip.activation import segment_transitions

    with open_quiet(d.ws) as store:
        tr = segment_transitions(store)
    moves = tr[tr["from_segment"] != tr["to_segment"]] if len(tr) else tr
    if not len(tr):
        return "<h3>RFM flows</h3>" + h.empty(
            "One build only: the flows between two builds appear after the next build."
        )
    if not len(moves):
        return "<h3>RFM flows</h3>" + h.empty("Nobody changed RFM segment since the last build.")
    top = moves.head(20)
    return (
        f"<h3>RFM flows since the previous build</h3><p>{int(moves['n'].sum()):,} persons "
        f"changed segment; the {len(top)} largest moves ('(none)': in no RFM segment):</p>"
        + h.table(
            ["from", "to", "persons"],
            [(r.from_segment, r.to_segment, h.fmt(r.n, "int")) for r in top.itertuples()],
            numeric=[2],
            attrs=[
                f'data-flow-from="{h.esc(r.from_segment)}" data-flow-to="{h.esc(r.to_segment)}" '
                f'data-n="{int(r.n)}"'
                for r in top.itertuples()
            ],
        )
    )


def _message_counts(facts: Any) -> Any:
    """Per campaign and channel: sends, deliveries, human opens, clicks, control."""
    import pandas as pd

    f = facts.assign(human_open=facts["event_type"].eq("open") & ~facts["machine"].astype(bool))
    counts = {
        "sent": f["event_type"].eq("send"),
        "delivered": f["event_type"].eq("delivered"),
        "opens": f["human_open"],
        "clicks": f["event_type"].eq("click"),
        "control": f["event_type"].eq("control"),
    }
    frame = pd.DataFrame({k: v.astype(int) for k, v in counts.items()})
    frame["campaign"] = f["campaign"].fillna("(none)")
    frame["channel"] = f["channel"].fillna("(none)")
    return frame.groupby(["campaign", "channel"], sort=True).sum().reset_index()


def _messages(d: _Data) -> tuple[bool, str]:
    parts = []
    if d.tables.get("messages"):
        with open_quiet(d.ws) as store:
            log_rows = store.sql(
                'SELECT "trigger", channel, decision, count(*) AS n, '
                'count(sent_at) AS delivered FROM messages GROUP BY "trigger", channel, decision'
            )
        piv = log_rows.pivot_table(
            index=["trigger", "channel"], columns="decision", values="n", aggfunc="sum",
            fill_value=0,
        )  # fmt: skip
        dl = log_rows.groupby(["trigger", "channel"])["delivered"].sum()
        cols = [c for c in ("sent", "held_out", "capped", "deferred", "no_consent",
                            "no_contact", "suppressed") if c in piv.columns]  # fmt: skip
        rows = [
            (*key, *(h.fmt(piv.loc[key, c], "int") for c in cols), h.fmt(dl.loc[key], "int"))
            for key in piv.index
        ]
        parts.append(
            "<h3>Trigger decisions</h3>"
            + h.table(
                ["trigger", "channel", *cols, "delivered"],
                rows,
                numeric=list(range(2, 3 + len(cols))),
            )  # fmt: skip
        )
    if len(d.facts):
        mc = _message_counts(d.facts)
        parts.append(
            "<h3>Message events per campaign and channel</h3>"
            + h.table(
                ["campaign", "channel", "sent", "delivered", "opens (human)", "clicks", "control"],
                [
                    (
                        r.campaign,
                        r.channel,
                        *(
                            h.fmt(getattr(r, c), "int")
                            for c in ("sent", "delivered", "opens", "clicks", "control")
                        ),
                    )
                    for r in mc.itertuples(index=False)
                ],
                numeric=[2, 3, 4, 5, 6],
                attrs=[
                    f'data-campaign="{h.esc(r.campaign)}" data-channel="{h.esc(r.channel)}" '
                    f'data-sent="{r.sent}" data-clicks="{r.clicks}"'
                    for r in mc.itertuples(index=False)
                ],
            )  # fmt: skip
            + "<p>Opens made by machines (mail proxies, scanners) are not counted.</p>"
        )
    if not parts:
        return False, h.empty("No message yet: no trigger decision and no message event.")
    return True, "".join(parts)


def _attribution(d: _Data) -> tuple[bool, str]:
    from cip.activation.measure import attribute_orders, summarise_attribution

    if not len(d.facts):
        return False, h.empty("No message events: nothing to attribute orders to.")
    if d.orders is None or not len(d.orders):
        return False, h.empty("No completed order yet.")
    att = attribute_orders(d.facts, d.orders, window_days=d.window_days, touch="click")
    if not len(att):
        return False, h.empty(
            f"None of the {len(d.orders):,} completed orders followed a click within "
            f"{d.window_days:g} days."
        )
    body = (
        f"<p>{len(att):,} of {len(d.orders):,} completed orders (web, app and store, joined "
        f"through the identity graph) followed a click within {d.window_days:g} days. "
        "Facts, not lift: see the Lift section for what the messages caused.</p>"
    )
    per_channel = None
    for model in ("last", "first"):
        s = summarise_attribution(
            att, model=model, by=("campaign", "channel"), orders=len(d.orders),
            window_days=d.window_days,
        )  # fmt: skip
        body += f"<h3>{model.capitalize()} touch</h3>" + h.table(
            ["campaign", "channel", "orders", "revenue", "messages before (mean)"],
            [(r["campaign"], r["channel"], h.fmt(r["orders"], "int"), h.fmt(r["revenue"]),
              h.fmt(r["mean_messages_before"])) for r in s.rows],
            numeric=[2, 3, 4],
            attrs=[f'data-model="{model}" data-campaign="{h.esc(r["campaign"])}" '
                   f'data-channel="{h.esc(r["channel"])}" data-orders="{r["orders"]}" '
                   f'data-revenue="{r["revenue"]}"' for r in s.rows],
        )  # fmt: skip
        if model == "last":
            per_channel = summarise_attribution(att, model="last", by=("channel",)).rows
    if per_channel:
        fig = h.Figure(5.2, 2.4)
        ax = fig.subplots()
        ax.bar([str(r["channel"]) for r in per_channel], [r["orders"] for r in per_channel],
               color="#2457c5")  # fmt: skip
        ax.set(ylabel="orders", title="Orders by last-touch channel")
        body += h.chart(fig, "attribution per channel")
    return True, body


def _lift(d: _Data) -> tuple[bool, str]:
    from cip.pipelines.workflows.measure import lift_report

    if not len(d.facts):
        return False, h.empty("No message events: no campaign or trigger to measure.")
    rep = lift_report(d.facts, d.orders, window_days=d.window_days, effect=d.effect)
    rows = [*rep.campaigns, *([rep.global_control] if rep.global_control else [])]
    if not rows:
        extra = (
            f" Sent without one: {', '.join(rep.without_control)}." if rep.without_control else ""
        )
        return False, h.empty("No campaign or trigger has a control group." + extra)
    trs, attrs = [], []
    for c in rows:
        name = "global control" if c.campaign == "*" else c.campaign
        for m in c.metrics:
            kind = "pct" if m.metric == "conversion_rate" else "num"
            trs.append(
                (name, h.fmt(c.n_treatment, "int"), h.fmt(c.n_control, "int"), m.metric,
                 h.fmt(m.treatment, kind), h.fmt(m.control, kind), h.fmt(m.difference, kind),
                 f"[{h.fmt(m.ci_low, kind)}, {h.fmt(m.ci_high, kind)}]"
                 + (" *" if m.significant else ""))
            )  # fmt: skip
            attrs.append(
                f'data-campaign="{h.esc(c.campaign)}" data-metric="{m.metric}" '
                f'data-difference="{m.difference!r}" data-ci-low="{m.ci_low!r}" '
                f'data-ci-high="{m.ci_high!r}"'
            )
    body = (
        f"<p>Treatment (sent) vs control (held out); outcomes in the {rep.window_days:g} days "
        "after the first decision. 95 % intervals: Newcombe hybrid score for the conversion "
        "rate, Welch t for the means; * the interval excludes zero.</p>"
        + h.table(
            [
                "campaign",
                "treated",
                "control",
                "metric",
                "treatment",
                "control",
                "difference",
                "95 % CI",
            ],
            trs,
            numeric=[1, 2, 4, 5, 6],
            attrs=attrs,
        )  # fmt: skip
    )
    warns = [(c.campaign, w) for c in rows for w in c.warnings]
    if warns:
        body += (
            "<h3>Warnings</h3><ul>"
            + "".join(
                f'<li class="warn" data-warning="{h.esc(c)}">{h.esc(c)}: {h.esc(w)}</li>'
                for c, w in warns
            )
            + "</ul>"
        )
    if rep.without_control:
        body += f"<p>No control group (not measured): {h.esc(', '.join(rep.without_control))}.</p>"
    fig = h.Figure(6.4, max(1.8, 0.45 * len(rows) + 1.0))
    ax = fig.subplots()
    for i, c in enumerate(rows[::-1]):
        m = c.metric("conversion_rate")
        lo = m.ci_low if m.ci_low == m.ci_low else m.difference
        hi = m.ci_high if m.ci_high == m.ci_high else m.difference
        ax.errorbar([m.difference * 100], [i], xerr=[[(m.difference - lo) * 100],
                    [(hi - m.difference) * 100]], fmt="o", color="#2457c5", capsize=4)  # fmt: skip
    ax.axvline(0, color="#999", lw=1, ls="--")
    ax.set_yticks(
        range(len(rows)),
        ["global control" if c.campaign == "*" else c.campaign for c in rows[::-1]],
    )
    ax.set(xlabel="conversion lift, points (95 % CI)", title="Lift per campaign / trigger")
    return True, body + h.chart(fig, "campaign lift with 95 % intervals")


def _uplift(d: _Data) -> tuple[bool, str]:
    from cip.models.uplift.tracking import QINI_CURVE_ARTIFACT

    parts = []
    if _mlflow_ready(d.ws):
        reg = _registry(d.ws)
        rows = [r for r in reg.list_models() if r["name"].startswith("cip-uplift-")]
        by_name: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_name.setdefault(r["name"], []).append(r)
        for name, versions in sorted(by_name.items()):
            champ = next((v for v in versions if v["champion"]), None)
            r = champ or versions[-1]
            run = _run(r["run_id"])
            if run is None:
                continue
            m = run.data.metrics
            who = sorted({k.split(".")[1] for k in m if k.startswith("holdout.")})
            tab = h.table(
                ["targeting", "Qini", "AUUC", "uplift@30%"],
                [(w, h.fmt(m.get(f"holdout.{w}.qini"), "p4"), h.fmt(m.get(f"holdout.{w}.auuc"), "p4"),
                  h.fmt(m.get(f"holdout.{w}.uplift_at_30"), "p4")) for w in who],
                numeric=[1, 2, 3],
                attrs=[f'data-uplift="{h.esc(name)}" data-who="{h.esc(w)}" '
                       f'data-qini="{m.get(f"holdout.{w}.qini")!r}"' for w in who],
            )  # fmt: skip
            status = "champion" if champ else "not promoted"
            learner = run.data.tags.get("uplift.champion", "")
            head = (
                f"<h3>{h.esc(name)} v{h.esc(r['version'])} ({h.esc(learner)}, {status})</h3>"
                f"<p>{h.esc(run.data.tags.get('promotion.reason', ''))}</p>"
            )
            curve = _artifact(run.info.run_id, QINI_CURVE_ARTIFACT)
            img = h.empty("No Qini curve was logged with this model.")
            if curve is not None:
                pts = json.loads(curve.read_text())
                fig = h.Figure(5.2, 3.2)
                ax = fig.subplots()
                ax.plot(pts["x"], pts["y"], color="#2457c5", label=learner or "model")
                if pts["x"]:
                    ax.plot([0, pts["x"][-1]], [0, pts["y"][-1]], "--", color="#999",
                            label="random")  # fmt: skip
                ax.set(xlabel="persons targeted (holdout)", ylabel="incremental conversions",
                       title=f"Qini curve: {name.removeprefix('cip-uplift-')}")  # fmt: skip
                ax.legend()
                img = h.chart(fig, f"Qini curve of {name}")
            parts.append(head + tab + img)
    if d.tables.get("uplift_scores"):
        with open_quiet(d.ws) as store:
            sc = store.sql(
                "SELECT s.campaign, s.as_of, count(*) AS persons, "
                "sum(CASE WHEN s.sleeping_dog THEN 1 ELSE 0 END) AS sleeping_dogs, "
                "sum(CASE WHEN s.uplift > 0 THEN 1 ELSE 0 END) AS positive, "
                "avg(s.uplift) AS mean_uplift FROM uplift_scores s "
                "JOIN (SELECT campaign, max(as_of) AS as_of FROM uplift_scores GROUP BY campaign)"
                " l ON l.campaign = s.campaign AND l.as_of = s.as_of GROUP BY s.campaign, s.as_of "
                "ORDER BY s.campaign"
            )
        parts.append(
            "<h3>Scored persons (latest scores)</h3>"
            + h.table(
                ["campaign", "as of", "persons", "uplift > 0", "sleeping dogs", "mean uplift"],
                [
                    (
                        r.campaign,
                        str(r.as_of)[:10],
                        h.fmt(r.persons, "int"),
                        h.fmt(r.positive, "int"),
                        h.fmt(r.sleeping_dogs, "int"),
                        h.fmt(r.mean_uplift, "p4"),
                    )
                    for r in sc.itertuples(index=False)
                ],
                numeric=[2, 3, 4, 5],
                attrs=[
                    f'data-scores="{h.esc(r.campaign)}" data-persons="{int(r.persons)}" '
                    f'data-sleeping-dogs="{int(r.sleeping_dogs)}"'
                    for r in sc.itertuples(index=False)
                ],
            )  # fmt: skip
        )
    if not parts:
        return False, h.empty(
            "No uplift model yet (`cip train uplift --campaign C` on a campaign with a control "
            "group)."
        )
    return True, "".join(parts)


def _channels(d: _Data) -> tuple[bool, str]:
    from cip.activation.measure import best_channel_and_hour

    sends = d.facts[d.facts["event_type"].eq("send")] if len(d.facts) else d.facts
    if not len(sends):
        return False, h.empty("No message sent yet: no response to learn channels and hours from.")
    best = best_channel_and_hour(d.facts, d.orders)
    counts = best.groupby(["channel", "basis"], dropna=False).size().unstack(fill_value=0)
    for b in ("person", "default"):
        if b not in counts:
            counts[b] = 0
    body = (
        f"<p>{len(best):,} persons messaged; {int((best['basis'] == 'person').sum()):,} have "
        "enough responses (5+) for a channel and hour of their own, the others get the shop's "
        "default.</p>"
        + h.table(
            ["best channel", "own responses", "shop default", "persons"],
            [
                (
                    ch,
                    h.fmt(r["person"], "int"),
                    h.fmt(r["default"], "int"),
                    h.fmt(r["person"] + r["default"], "int"),
                )
                for ch, r in counts.iterrows()
            ],
            numeric=[1, 2, 3],
            attrs=[
                f'data-best-channel="{h.esc(ch)}" data-persons="{int(r["person"] + r["default"])}"'
                for ch, r in counts.iterrows()
            ],
        )  # fmt: skip
    )
    hours = best.dropna(subset=["hour"])
    if len(hours):
        hc = hours.groupby(hours["hour"].astype(int)).size()
        fig = h.Figure(6.4, 2.4)
        ax = fig.subplots()
        ax.bar(hc.index, hc.to_numpy(), color="#2457c5")
        ax.set(xlabel="best send hour (UTC)", ylabel="persons", xlim=(-0.5, 23.5),
               title="Best send hour")  # fmt: skip
        body += h.chart(fig, "best send hour distribution")
    return True, body


_BUILDERS: dict[str, Callable[[_Data], tuple[bool, str]]] = {
    "workspace": _workspace,
    "models": _models,
    "segments": _segments,
    "messages": _messages,
    "attribution": _attribution,
    "lift": _lift,
    "uplift": _uplift,
    "channels": _channels,
}


def build_report(
    ws: Workspace,
    out: str | Path | None = None,
    *,
    window_days: float = 7.0,
    effect: float = 0.10,
) -> ReportResult:
    """Write the workspace report to ``out`` (default ``<workspace>/reports/report.html``).

    ``window_days``: the attribution and lift window; ``effect``: the relative
    conversion lift the minimum-detectable-effect warnings are about.
    """
    import pandas as pd
    from cip.activation.measure import message_facts, person_orders, sync_trigger_log

    if not window_days > 0:
        raise ConfigError(f"window must be a positive number of days (got {window_days})")
    if not effect > 0:
        raise ConfigError(f"effect must be a positive relative lift, e.g. 0.1 (got {effect})")
    path = Path(out) if out is not None else ws.root / DEFAULT_REPORT
    with open_quiet(ws) as store:
        sync_trigger_log(store)
        facts = message_facts(store)
        orders = person_orders(store) if store.has_table("orders") else None
        tables = {t: store.count(t) for t in store.table_names() if not t.startswith("_stage")}
    if orders is None:
        orders = pd.DataFrame(columns=["unified_id", "order_id", "ts", "amount", "order_channel"])
    data = _Data(ws, facts, orders, window_days, effect, tables)
    sections, has, errors = [], {}, {}
    for sid, heading in SECTIONS.items():
        try:
            ok, body = _BUILDERS[sid](data)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            log.exception("report section %s failed", sid)
            ok, body = (
                False,
                h.empty(f"This section could not be built: {type(exc).__name__}: {exc}"),
            )
            errors[sid] = f"{type(exc).__name__}: {exc}"
        has[sid] = ok
        sections.append((sid, heading, body))
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = h.page(
        f"CIP report: {ws.root.name}",
        f"Workspace {ws.root} - generated {now}",
        sections,
        f"Generated by cip report at {now}. Self-contained: no network needed to open it.",
    )
    write_text_atomic(path, text)
    log.info("report written to %s (%s bytes)", path, len(text.encode()))
    return ReportResult(str(path), len(text.encode()), has, errors)
