"""Crash test: the trigger worker (a ``cip triggers run`` subprocess) SIGKILLed at random
moments and restarted; every due message reaches the receiver exactly once after
de-duplication by message id, none for a cart that checked out. The 10,000-cart version
is ``python -m benchmarks.triggers_crash`` (results in benchmarks/RESULTS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.triggers_crash import crash_run

pytestmark = pytest.mark.slow


def _check(res: dict, kills: int) -> None:
    assert res["kills"] == kills
    assert (res["missing"], res["unexpected"], res["for_checked_out_carts"]) == (0, 0, 0), res
    assert res["received_unique"] == res["expected"] == 270
    assert res["bad_signatures"] == 0 and res["worker_exit_on_sigterm"] == 0
    assert res["answers_lost_on_purpose"] > 0  # resends happened and were de-duplicated


def test_sigkilled_worker_sends_every_due_message_once(tmp_path: Path) -> None:
    _check(crash_run(tmp_path, n=300, kills=5, wait="2s", seed=1, lose=0.1, pause=(0.3, 1.5)), 5)


def test_sigkilled_worker_on_redis_stream(tmp_path: Path, redis_url: str) -> None:
    _check(
        crash_run(
            tmp_path,
            n=300,
            kills=3,  # the 5-kill Redis run is the benchmark's (the test stays under a minute)
            wait="2s",
            seed=2,
            lose=0.1,
            redis_url=redis_url,
            pause=(0.3, 1.5),
        ),
        3,
    )
