"""The shop simulator: messy multi-source customer data with planted, learnable signal.

:func:`simulate` writes the files of eight sources (a CRM export, web and app
click-streams, an e-mail tool log, online order lines, till receipts, reviews and
the product catalog), each in its own column names and format, and returns their
``cip.yaml`` declarations. A truth folder (``_truth/``) records which person
every record belongs to, and each person's latent traits; the pipeline never
reads it, tests and benchmarks do.

What is planted:

* **taste** -- each person prefers three categories and a style; views and
  purchases are drawn from it (so collaborative filtering beats popularity);
* **churn** -- a proportional daily hazard that rises with bad experiences (late
  deliveries, returns) and time since the last purchase, and falls with latent
  engagement (which also drives visits and e-mail opens); see
  :mod:`pipelines.simulator._activity`;
* **identity mess** -- several records per person, e-mails in various spellings,
  phones in national and international formats, anonymous cookies and devices
  stitched only by logins, guest checkouts, a placeholder phone shared by a few
  dozen people and one family sharing a phone;
* **bad rows** -- about 0.1% per source (no identifier, unparseable timestamp,
  non-numeric price, missing product), listed in ``_truth/bad_rows.parquet``.

People are simulated in chunks of :data:`CHUNK_PEOPLE` (bounded memory); the
output depends only on the arguments (same bytes for the same arguments).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from cip.pipelines.simulator import _decl, _run
from cip.pipelines.simulator._catalog import UPDATE_SOURCE, catalog_update, update_declaration
from cip.pipelines.simulator._io import Sink
from cip.pipelines.simulator._run import CHUNK_PEOPLE
from cip.profiles.errors import ConfigError

__all__ = [
    "simulate",
    "SimulationResult",
    "CHUNK_PEOPLE",
    "TRUTH_DIR",
    "catalog_update",
    "update_declaration",
    "UPDATE_SOURCE",
]

log = logging.getLogger(__name__)

TRUTH_DIR = "_truth"
_README = """\
Ground truth of the simulated shop (written by `cip simulate`).

The CIP pipeline never reads this folder: it is for tests, benchmarks and
notebooks that measure identity resolution, churn and recommendation quality.

person_truth.parquet  one row per person-linked record:
    source, table, source_record_id, person_id
    `table` is the canonical table (customers, order_lines, orders, events);
    order-level rows use the order id (the `orders` view's source_record_id).
persons.parquet       one row per person: latent taste, behaviour, churn date,
                      experience counts, final consent per purpose.
bad_rows.parquet      the deliberately broken rows: source, source_record_id, defect.
"""


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote."""

    out_dir: Path
    sources: list[dict[str, Any]]  # declarations for cip.yaml (SourceConfig-valid dicts)
    counts: dict[str, int]  # rows per source
    people: int
    truth_rows: int
    elapsed_s: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)


def simulate(
    out_dir: Path,
    *,
    customers: int = 2000,
    days: int = 365,
    seed: int = 0,
    end: date = date(2025, 12, 31),
    path_prefix: str = "sources",
    progress: Callable[[int, int], None] | None = None,
    campaigns: int = 0,
) -> SimulationResult:
    """Simulate ``customers`` people over the ``days`` ending on ``end`` and write the sources.

    Args:
        out_dir: Folder for the source files (created); ``_truth/`` goes inside.
        customers: Number of simulated people (shop customers, guests, newsletter
            subscribers and anonymous visitors).
        days: Length of the simulated window in days.
        seed: Random seed; the same arguments give byte-identical files.
        end: Last day of the window (UTC).
        path_prefix: Folder prefix of the ``path`` in the returned declarations
            (relative to the workspace: ``sources`` for ``<workspace>/sources``).
        progress: Called as ``progress(people_done, people_total)`` as the work advances.
        campaigns: Randomised e-mail campaigns with a control group and ground truth
            (:mod:`pipelines.simulator.campaigns`); 0: none.

    Returns:
        The declarations, row counts and paths.

    Raises:
        ConfigError: On arguments out of range.
    """
    if customers < 1:
        raise ConfigError(f"customers must be at least 1 (got {customers})")
    if not 7 <= days <= 3660:
        raise ConfigError(f"days must be between 7 and 3660 (got {days})")
    if seed < 0:
        raise ConfigError(f"seed must be non-negative (got {seed})")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    tmp = out_dir / ".simulate-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # left over by a crashed run
    (tmp / TRUTH_DIR).mkdir(parents=True)
    sinks = {name: Sink(tmp / file, file.rsplit(".", 1)[1]) for name, file in _decl.FILES.items()}
    truth_sinks = {
        key: Sink(tmp / TRUTH_DIR / f"{key}.parquet", "parquet")
        for key in ("person_truth", "persons", "bad_rows")
    }
    try:
        run = _run.Run(customers=customers, days=days, seed=seed, end=end)
        sinks["products"].write(run.products_table())
        n_chunks = -(-customers // CHUNK_PEOPLE)
        for c in range(n_chunks):
            lo, hi = c * CHUNK_PEOPLE, min(customers, (c + 1) * CHUNK_PEOPLE)
            report = None
            if progress is not None:
                report = lambda f, lo=lo, hi=hi: progress(int(lo + f * (hi - lo)), customers)  # noqa: E731
            out = run.chunk(c, np.arange(lo, hi, dtype=np.int64), report)
            for name, table in out.tables.items():
                sinks[name].write(table)
            for key, table in out.truth.items():
                truth_sinks[key].write(table)
            log.info("simulated people %d..%d of %d", lo, hi, customers)
            if progress is not None:
                progress(hi, customers)
        for s in (*sinks.values(), *truth_sinks.values()):
            s.close()
        (tmp / TRUTH_DIR / "README.txt").write_text(_README)
        files = _publish(tmp, out_dir)
    finally:
        for s in (*sinks.values(), *truth_sinks.values()):
            s.abort()
        shutil.rmtree(tmp, ignore_errors=True)
    counts = {name: s.rows for name, s in sinks.items()}
    sources = _decl.declarations(path_prefix)
    if campaigns > 0:  # the campaign sources and their truth (pipelines.simulator.campaigns)
        from cip.pipelines.simulator.campaigns import write_campaign_sources

        extra, more, rows = write_campaign_sources(
            out_dir, campaigns=campaigns, seed=seed, end=end, path_prefix=path_prefix,
            truth_dir=TRUTH_DIR,
        )  # fmt: skip
        sources += extra
        files |= more
        counts |= rows
    elapsed = time.perf_counter() - started
    log.info("simulation of %d people over %d days done in %.1f s", customers, days, elapsed)
    return SimulationResult(
        out_dir=out_dir,
        sources=sources,
        counts=counts,
        people=customers,
        truth_rows=truth_sinks["person_truth"].rows,
        elapsed_s=elapsed,
        files=files,
    )


def _publish(tmp: Path, out_dir: Path) -> dict[str, Path]:
    """Move the finished files from the staging folder into place."""
    files: dict[str, Path] = {}
    for name, file in _decl.FILES.items():
        dest = out_dir / file
        (tmp / file).replace(dest)
        files[name] = dest
    truth = out_dir / TRUTH_DIR
    if truth.exists():
        shutil.rmtree(truth)
    (tmp / TRUTH_DIR).replace(truth)
    files["_truth"] = truth
    return files
