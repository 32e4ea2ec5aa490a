"""``cip measure lift|attribution|sync|preferences``: what the messages did (control groups, attribution)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.cmd_models import train_app
from rich.table import Table

__all__ = ["measure_app"]

measure_app = typer.Typer(
    help="Measure what works: incremental lift against control groups, attribution of orders "
    "to messages.",
    no_args_is_help=True,
)
app.add_typer(measure_app, name="measure")

_WINDOW = typer.Option(
    "--window", help="Days after a message in which an order counts (default 7).", min=0.001
)


def _num(v: float | None, pct: bool = False) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.2%}" if pct else f"{v:,.2f}"


@measure_app.command("sync")
def sync(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Copy new sent and held-out decisions of the trigger log into message_events."""
    n = workspace().measure.sync()
    if as_json:
        emit_json({"rows_added": n})
        return
    out.print(f"{n:,} message events added from the trigger log")


@measure_app.command("lift")
def lift(
    campaign: Annotated[
        str | None,
        typer.Option("--campaign", help="Only this campaign or trigger (default: every one)."),
    ] = None,
    window: Annotated[float, _WINDOW] = 7.0,
    effect: Annotated[
        float,
        typer.Option(
            "--effect",
            help="Relative lift of the conversion rate you need to detect (0.1 = 10 %); a "
            "warning says when the groups are too small for it.",
            min=0.0001,
        ),
    ] = 0.10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Treatment vs control per campaign/trigger: conversion, revenue and orders per person.

    Differences carry a 95 % interval: Newcombe's hybrid score interval for the
    conversion rate, Welch's t interval for revenue and orders per person. The
    global control group's lift covers all activation together.
    """
    rep = workspace().measure.lift(campaign, window_days=window, effect=effect)
    if as_json:
        emit_json(rep.as_dict())
        return
    rows = [*rep.campaigns, *([rep.global_control] if rep.global_control else [])]
    if not rows:
        console.print(
            "no campaign with a control group in message_events (trigger control groups: "
            "`control_pct` of a trigger; provider exports: `control` events)"
        )
    t = Table(
        "campaign", "treated", "control", "metric", "treatment", "control ", "difference",
        "95 % CI", title=f"Lift ({rep.window_days:g}-day window)",
    )  # fmt: skip
    for c in rows:
        for i, m in enumerate(c.metrics):
            pct = m.metric == "conversion_rate"
            ci = f"[{_num(m.ci_low, pct)}, {_num(m.ci_high, pct)}]" + (
                " *" if m.significant else ""
            )
            t.add_row(
                ("global control" if c.campaign == "*" else c.campaign) if i == 0 else "",
                f"{c.n_treatment:,}" if i == 0 else "",
                f"{c.n_control:,}" if i == 0 else "",
                m.metric,
                _num(m.treatment, pct),
                _num(m.control, pct),
                _num(m.difference, pct),
                ci,
            )
    if rows:
        out.print(t)
        out.print(
            "* the interval excludes zero. Conversion: Newcombe hybrid score; means: Welch t."
        )
    for c in rows:
        for w in c.warnings:
            console.print(f"[yellow]warning[/] {c.campaign}: {w}")
    if rep.without_control:
        console.print(f"no control group (not measured): {', '.join(rep.without_control)}")


@measure_app.command("attribution")
def attribution(
    window: Annotated[float, _WINDOW] = 7.0,
    model: Annotated[
        Literal["last", "first"],
        typer.Option("--model", help="Which touch gets the credit: last or first."),
    ] = "last",
    touch: Annotated[
        Literal["click", "open", "send"],
        typer.Option("--touch", help="What counts as a touch: click, open (not machine) or send."),
    ] = "click",
    by: Annotated[
        str,
        typer.Option(
            "--by", help="Comma-separated: campaign, channel, day, order_channel (web/app/store)."
        ),
    ] = "campaign,channel",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Orders (web, app and store, through the identity graph) attributed to earlier messages.

    Facts, not lift: which campaign's message was the last (or first) touch
    before each order and how many messages the person had been sent.
    """
    dims = tuple(d.strip() for d in by.split(",") if d.strip())
    rep = workspace().measure.attribution(window_days=window, model=model, touch=touch, by=dims)
    if as_json:
        emit_json(rep.as_dict())
        return
    t = Table(
        *dims, "orders", "revenue", "messages before",
        title=f"Attribution ({rep.model} {rep.touch}, {rep.window_days:g}-day window)",
    )  # fmt: skip
    for r in rep.rows:
        t.add_row(
            *(str(r[d]) for d in dims),
            f"{r['orders']:,}",
            f"{r['revenue']:,.2f}",
            f"{r['mean_messages_before']:.2f}",
        )
    out.print(t)
    out.print(f"{rep.attributed:,} of {rep.orders:,} completed orders attributed")


@measure_app.command("preferences")
def preferences(
    min_responses: Annotated[
        int,
        typer.Option(
            "--min-responses",
            help="Responses a person needs for a channel and hour of their own (else the "
            "shop's default).",
            min=1,
        ),
    ] = 5,
    window: Annotated[
        float,
        typer.Option(
            "--window", help="Days after a message in which a purchase is a response.", min=0.001
        ),
    ] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Best channel and send hour per person, stored for `channel: best` / `send_at: best`.

    From clicks (machine opens never count) and purchases after messages; run it
    again (e.g. daily) to refresh what triggers read.
    """
    res = workspace().measure.preferences(min_responses=min_responses, window_days=window)
    if as_json:
        emit_json(res.as_dict())
        return
    out.print(
        f"{res.persons:,} persons: {res.own:,} with a channel and hour of their own, the others "
        f"the shop's default ({res.default_channel or '-'}, "
        f"{'-' if res.default_hour is None else f'{res.default_hour:02d}:00 UTC'})"
    )
    for ch, n in sorted(res.channels.items()):
        out.print(f"  {ch}: {n:,}")


@train_app.command("uplift")
def train_uplift(
    campaign: Annotated[
        str, typer.Option("--campaign", help="Campaign or trigger with a control group.")
    ],
    window: Annotated[float, _WINDOW] = 7.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (split and models).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Uplift model of a campaign: T- and X-learner (LightGBM) on its randomised history.

    Evaluated on a held-out 30 % with scikit-uplift (Qini coefficient, AUUC,
    uplift at 30 %), tracked in MLflow as cip-uplift-<campaign>, promoted only
    if it beats random targeting and "highest purchase probability". Every
    profile is scored into uplift_scores (sleeping dogs flagged).
    """
    res = workspace().measure.train_uplift(campaign, window_days=window, seed=seed)
    if as_json:
        emit_json(res.as_dict())
        return
    r = res.result
    t = Table("targeting", "Qini", "AUUC", "uplift@30%", title=f"Uplift of {campaign} (holdout)")
    for name, m in r["metrics"].items():
        t.add_row(name, f"{m['qini']:.4f}", f"{m['auuc']:.4f}", f"{m['uplift_at_30']:.4f}")
    out.print(t)
    verdict = "[green]promoted to champion[/]" if r["promoted"] else "[yellow]not promoted[/]"
    out.print(
        f"{res.registry_name} version {res.version} ({r['champion']}): {verdict}: {r['reason']}"
    )
    out.print(
        f"{res.scored:,} profiles scored into uplift_scores, {res.sleeping_dogs:,} sleeping dogs"
    )
