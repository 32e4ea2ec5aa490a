"""``cip triggers run|list|status|log|test``: the real-time trigger worker and its views."""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from rich.table import Table

__all__ = ["triggers_app"]

triggers_app = typer.Typer(
    help="Real-time triggers (`triggers:` in cip.yaml): run the worker, list, status, "
    "message log, dry run.",
    no_args_is_help=True,
)
app.add_typer(triggers_app, name="triggers")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@triggers_app.command("run")
def run(
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Process the events there are and the timers due now, deliver, then exit (cron).",
        ),
    ] = False,
    max_event_age: Annotated[
        str | None,
        typer.Option(
            "--max-event-age",
            help="Events older than this never start a journey, e.g. 30m, 24h "
            "(default: trigger_worker.max_event_age, 24h).",
        ),
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option("--poll", min=0.01, help="Seconds between polls of the feed (default 1)."),
    ] = None,
    from_ingest: Annotated[
        bool,
        typer.Option(
            "--from-ingest",
            help="Also feed events loaded by `cip ingest` (within the maximum event age).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the trigger worker: events -> journeys -> timers -> policy -> signed webhooks.

    Reads the service's event journal (or the Redis Stream of trigger_worker.feed),
    asks the running service for recommendations and sends each message to its
    destination once (the message id is the idempotency key). Without --once it
    runs until SIGINT or SIGTERM and finishes the cycle it is in before exiting.
    """
    from cip.activation.policy import parse_duration
    from cip.pipelines.workflows.triggers import run_worker

    if max_event_age is not None:
        try:
            parse_duration(max_event_age)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--max-event-age") from None
    ws = workspace()
    stop = threading.Event()
    got: list[int] = []

    def _stop(signum: int, _frame: object) -> None:
        got.append(signum)
        stop.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not once and not as_json:
            console.print(f"triggers worker: {len(ws.config.triggers)} trigger(s); Ctrl+C stops")
        res = run_worker(
            ws, once=once, max_event_age=max_event_age, poll_seconds=poll,
            from_store=from_ingest, stop=stop,
        )  # fmt: skip
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if as_json:
        emit_json(res.as_dict())
    else:
        decided = ", ".join(f"{k} {v:,}" for k, v in res.decisions.items()) or "none"
        out.print(
            f"{res.cycles:,} cycle(s): {res.events:,} events, {res.started:,} journeys started, "
            f"{res.due:,} timers due, {res.cancelled:,} cancelled; decisions: {decided}; "
            f"{res.delivered:,} delivered, {res.delivery_failed:,} delivery failures"
        )
    if got and got[-1] == signal.SIGINT:
        raise typer.Exit(130)


@triggers_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """The configured triggers: source, journey, channel, destination, control share."""
    from cip.pipelines.workflows.triggers import list_triggers

    rows = list_triggers(workspace())
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no triggers in cip.yaml (add a `triggers:` list; see the README)")
        return
    t = Table("trigger", "when", "journey", "control %", title="Triggers")
    for r in rows:
        name = r["trigger"] + ("" if r["enabled"] else " (disabled)")
        t.add_row(name, json.dumps(r["when"]), r["journey"], f"{r['control_pct']:g}")
    out.print(t)


@triggers_app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Per trigger: journeys waiting/done/cancelled, messages per decision, next due."""
    from cip.pipelines.workflows.triggers import trigger_status

    st = trigger_status(workspace())
    if as_json:
        emit_json(st)
        return
    cols = ("waiting", "done", "cancelled", "sent", "held_out", "capped", "deferred", "no_consent")
    t = Table("trigger", *cols, "next due", title="Trigger status")
    for r in st["triggers"]:
        t.add_row(
            r["trigger"], *(f"{r.get(c) or 0:,}" for c in cols), str(r.get("next_due") or "-")
        )
    out.print(t)
    out.print(f"undelivered messages: {st['undelivered']:,}; feed lag: {st['feed_lag']}")


@triggers_app.command("log")
def log_(
    trigger: Annotated[
        str | None, typer.Option("--trigger", "-t", help="Only this trigger's messages.")
    ] = None,
    customer_id: Annotated[
        str | None, typer.Option("--customer-id", help="Only this customer's messages.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many messages.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The message log, newest first: decision, reason, control flag, items, sent time."""
    from cip.pipelines.workflows.triggers import message_log

    rows = message_log(workspace(), trigger, customer_id, limit)
    if as_json:
        emit_json(rows)
        return
    t = Table(
        "decided", "trigger", "person", "channel", "decision", "reason", "sent", title="Messages"
    )
    for r in rows:
        t.add_row(
            str(r["decided_at"])[:19], r["trigger"], str(r["unified_id"])[:12], r["channel"],
            r["decision"] + (" (control)" if r.get("control") else ""), r.get("reason") or "",
            str(r.get("sent_at") or "-")[:19],
        )  # fmt: skip
    out.print(t)


@triggers_app.command("test")
def test(
    name: Annotated[str, typer.Argument(help="The trigger to try.")],
    customer_id: Annotated[
        str, typer.Option("--customer-id", help="The shop's customer id of the person.")
    ],
    now: Annotated[
        str | None, typer.Option("--now", help="Pretend time, ISO 8601 (default: now, UTC).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Dry run: what NAME would do for the customer now, and why not. Sends nothing."""
    from cip.pipelines.workflows.triggers import test_trigger

    res = test_trigger(workspace(), name, customer_id, now)
    if as_json:
        emit_json(res)
        return
    out.print(
        f"trigger {name} for customer {customer_id} (person {res['unified_id']}) at {res['now']}"
    )
    if res["journeys"]:
        for j in res["journeys"]:
            out.print(
                f"  journey {j['window_key']}: {j['state']} at step {j['step']}"
                + (f", due {j['due_at']}" if j["state"] == "waiting" else "")
                + (f" ({j['reason']})" if j.get("reason") else "")
            )
    else:
        out.print("  no journey of this trigger for the person")
    if res["would_start"]:
        out.print("  events that match the source: " + "; ".join(res["would_start"]))
    for d in res["decisions_now"]:
        out.print(f"  send step {d['step']} ({d['channel']}) now: {d['decision']} - {d['reason']}")


@triggers_app.command("webhook-secret")
def webhook_secret(
    name: Annotated[str, typer.Argument(help="A destination of `destinations:` in cip.yaml.")],
) -> None:
    """Print the signing secret (whsec_...) the receiver of destination NAME verifies with."""
    from cip.pipelines.workflows.triggers import destination_secret

    typer.echo(destination_secret(workspace(), name))
