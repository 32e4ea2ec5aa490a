"""Recommendation-block workflows: fit the named blocks of ``cip.yaml``, recommend for campaigns.

``fit_blocks`` reads completed order lines, product views and the catalogue
from the store (:func:`cip.models.recommender.blocks.block_inputs_from_store`),
fits every block of ``blocks:`` (the ``personal`` kind uses the registry's
champion recommender when there is one, else fits ALS on the purchases),
saves them atomically to ``models/blocks/blocks.pkl`` in the workspace (the
file the service reads) and logs the fit to MLflow (experiment
``cip-blocks``: parameters, sizes, seconds).

``recommend`` writes one row per person for a campaign: ``unified_id,
customer_id, items, scores, sources, block, fallback, model_version``; only
persons whose profile says yes to personalisation (``consent_personalization
IS TRUE``) and who are not erased; the file is written to a temporary name and
renamed into place.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cip.activation.export import FORMATS as EXPORT_FORMATS
from cip.pipelines.workflows.results import AsOf
from cip.pipelines.workspace import Workspace
from cip.profiles.contracts import RECOMMENDER_MODEL
from cip.profiles.errors import ConfigError, DataError, NotFoundError

__all__ = [
    "BLOCKS_FILE",
    "FitBlocksResult",
    "CampaignResult",
    "EvaluateBlocksResult",
    "evaluate_blocks",
    "blocks_path",
    "fit_blocks",
    "load_saved_blocks",
    "forget_in_blocks",
    "campaign_rows",
    "recommend",
    "recommender_for",
]

log = logging.getLogger(__name__)

#: Where the fitted blocks live, relative to the workspace's ``models/`` folder.
BLOCKS_FILE = Path("blocks") / "blocks.pkl"
#: The MLflow experiment of block fits.
EXPERIMENT = "cip-blocks"
FORMATS = EXPORT_FORMATS  # the one list of export formats (cip.activation.export)


def blocks_path(ws: Workspace) -> Path:
    """The workspace's fitted-blocks file."""
    return ws.models_dir / BLOCKS_FILE


@dataclass
class FitBlocksResult:
    """What ``cip recommend fit-blocks`` did."""

    version: str
    path: str
    as_of: str
    blocks: dict[str, str]
    people: int
    items: int
    order_lines: int
    personal_model_version: str | None
    run_id: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CampaignResult:
    """What ``cip recommend --segment/--all`` wrote (counts only, no identifiers)."""

    path: str
    format: str
    block: str
    n: int
    segment: str | None
    candidates: int
    rows: int
    no_consent: int
    empty: int
    model_version: str
    seconds: float
    fallbacks: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvaluateBlocksResult:
    """What ``cip recommend evaluate-blocks`` measured: one row per block, and the MLflow run."""

    split: str
    end: str | None
    k: int
    train_lines: int
    test_lines: int
    rows: list[dict[str, Any]]
    run_id: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _champion_model(ws: Workspace) -> tuple[Any, str | None]:
    """The registry's champion recommender (and its version), or ``(None, None)``."""
    from cip.models import registry
    from cip.models.recommender import load_recommender

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    version = registry.champion_version(RECOMMENDER_MODEL)
    if version is None:
        return None, None
    import mlflow

    with tempfile.TemporaryDirectory(dir=ws.models_dir) as tmp:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{RECOMMENDER_MODEL}/{version}", dst_path=tmp
        )
        for meta in sorted(Path(tmp).rglob("model.json")):
            try:
                return load_recommender(meta.parent), str(version)
            except Exception as exc:  # not the recommender's own folder: keep looking
                log.debug("skipping %s: %s", meta, exc)
    return None, None


def fit_blocks(
    ws: Workspace, as_of: AsOf | None = None, *, log_mlflow: bool = True
) -> FitBlocksResult:
    """Fit the ``blocks:`` of ``cip.yaml`` on the store, save them, log the fit to MLflow."""
    from cip.models.recommender.blocks.inputs import block_inputs_from_store
    from cip.models.recommender.blocks.saved import fit_named_blocks, save_blocks

    t0 = time.perf_counter()
    cfg = ws.config.blocks
    ws.models_dir.mkdir(parents=True, exist_ok=True)
    cut = None if as_of is None else pd.Timestamp(str(as_of))
    with ws.open_store(read_only=True) as store:
        lines, products, views = block_inputs_from_store(store, cut)
    if lines.empty:
        raise DataError("no completed order lines in the store: run `cip ingest` first")
    champion, champion_version = (None, None)
    if any(b.kind == "personal" for b in cfg.values()):
        try:
            champion, champion_version = _champion_model(ws)
        except Exception as exc:  # registry trouble: the block fits its own ALS
            log.warning("champion recommender not loaded (%s); personal fits ALS", exc)
    spec = {n: b.model_dump() for n, b in cfg.items()}
    saved = fit_named_blocks(lines, products, views, spec, cut, champion, champion_version)
    history = saved.blocks.history
    version = saved.version
    run_id = None
    if log_mlflow:
        run_id = _log_run(ws, saved, len(lines), time.perf_counter() - t0)
        saved.meta["run_id"] = run_id
    path = save_blocks(saved, blocks_path(ws))
    _tell_services(ws)
    log.info(
        "blocks %s fitted: %s", version, ", ".join(f"{n} ({k})" for n, k in saved.kinds.items())
    )
    return FitBlocksResult(
        version=version,
        path=str(path),
        as_of=history.as_of.isoformat(),
        blocks=dict(saved.kinds),
        people=len(history.users),
        items=history.catalog.size,
        order_lines=len(lines),
        personal_model_version=champion_version,
        run_id=run_id,
        seconds=time.perf_counter() - t0,
    )


def _log_run(ws: Workspace, saved: Any, n_lines: int, seconds: float) -> str:
    import mlflow
    from cip.models import registry

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    registry.ensure_experiment(EXPERIMENT, ws.mlflow_artifact_location)
    h = saved.blocks.history
    with mlflow.start_run(run_name=saved.version) as run:
        params: dict[str, Any] = {"as_of": h.as_of.isoformat(), "version": saved.version}
        for name, kind in saved.kinds.items():
            params[f"{name}.kind"] = kind
            params[f"{name}.k"] = saved.k[name]
            for p, v in saved.blocks.blocks[name].get_params().items():
                if p != "model":
                    params[f"{name}.{p}"] = v
        if saved.meta.get("personal_model_version"):
            params["personal_model_version"] = saved.meta["personal_model_version"]
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(
            {
                "people": float(len(h.users)),
                "items": float(h.catalog.size),
                "order_lines": float(n_lines),
                "orders": float(h.baskets.shape[0]),
                "fit_seconds": float(seconds),
            }
        )
        return run.info.run_id


def evaluate_blocks(
    ws: Workspace,
    split: AsOf | None = None,
    end: AsOf | None = None,
    *,
    k: int = 10,
    seed: int = 0,
    log_mlflow: bool = True,
) -> EvaluateBlocksResult:
    """Each block of ``blocks:`` against its baseline on a time split of the store's order lines.

    The protocols are those of :mod:`cip.models.recommender.block_eval` (next
    basket for ``buy_again``, leave one out for ``bought_together``, hidden
    items for ``similar``, new items for ``personal``); kinds without one are
    listed as skipped. The blocks use their ``cip.yaml`` parameters (the
    ``personal`` kind fits its own ``algorithm`` on the training part, not the
    registry's champion, which has seen the test period). The metrics at ``k``
    (``<block>.recall_at_10``, ``<block>.baseline_ndcg_at_10``, ...), the table
    (``blocks_evaluation.csv``) and a bar chart (``blocks_evaluation.png``) are
    logged to a run of the ``cip-blocks`` experiment.
    """
    from cip.models.recommender import block_eval
    from cip.models.recommender.blocks.inputs import block_inputs_from_store

    t0 = time.perf_counter()
    with ws.open_store(read_only=True) as store:
        lines, products, _ = block_inputs_from_store(store, None if end is None else str(end))
    if lines.empty:
        raise DataError("no completed order lines in the store: run `cip ingest` first")
    spec = {n: b.model_dump() for n, b in ws.config.blocks.items()}
    table = block_eval.evaluate_blocks(
        lines,
        products,
        spec,
        None if split is None else str(split),
        None if end is None else str(end),
        k=k,
        seed=seed,
    )
    run_id = _log_evaluation(ws, table, spec, k, seed) if log_mlflow else None
    rows = [
        {c: (None if isinstance(v, float) and np.isnan(v) else v) for c, v in r.items()}
        for r in table.to_dict("records")
    ]
    return EvaluateBlocksResult(
        split=table.attrs["split"],
        end=None if end is None else str(end),
        k=k,
        train_lines=int(table.attrs["train_lines"]),
        test_lines=int(table.attrs["test_lines"]),
        rows=rows,
        run_id=run_id,
        seconds=time.perf_counter() - t0,
    )


def _log_evaluation(
    ws: Workspace, table: pd.DataFrame, spec: dict[str, Any], k: int, seed: int
) -> str:
    import mlflow
    from cip.models import registry
    from cip.models.recommender.block_eval import METRICS, evaluation_figure

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    registry.ensure_experiment(EXPERIMENT, ws.mlflow_artifact_location)
    with mlflow.start_run(run_name=f"evaluate {table.attrs['split']}") as run:
        mlflow.set_tags({"kind": "evaluation"})
        params: dict[str, Any] = {
            "split": table.attrs["split"],
            "k": k,
            "seed": seed,
            "train_lines": table.attrs["train_lines"],
            "test_lines": table.attrs["test_lines"],
        }
        for r in table.itertuples():
            params[f"{r.block}.kind"] = r.kind
            if r.skipped:
                params[f"{r.block}.skipped"] = r.skipped
            else:
                params[f"{r.block}.baseline"] = r.baseline
            for p, v in (spec[r.block].get("params") or {}).items():
                params[f"{r.block}.{p}"] = v
        mlflow.log_params({key: str(v)[:500] for key, v in params.items()})
        metrics: dict[str, float] = {}
        for r in table[table["skipped"].isna()].to_dict("records"):
            b = r["block"]
            metrics[f"{b}.queries"] = float(r["queries"])
            for m in METRICS:
                metrics[f"{b}.{m}_at_{k}"] = float(r[m])
                metrics[f"{b}.baseline_{m}_at_{k}"] = float(r[f"baseline_{m}"])
        if metrics:
            mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "blocks_evaluation.csv"
            table.to_csv(csv, index=False)
            mlflow.log_artifact(str(csv))
            if len(metrics):
                png = Path(tmp) / "blocks_evaluation.png"
                evaluation_figure(table, k).savefig(png)
                mlflow.log_artifact(str(png))
        return run.info.run_id


def load_saved_blocks(ws: Workspace) -> Any:
    """The workspace's fitted blocks (:class:`cip.models.recommender.blocks.saved.SavedBlocks`)."""
    from cip.models.recommender.blocks.saved import load_blocks

    return load_blocks(blocks_path(ws))


def _version(saved: Any) -> str:
    pv = saved.meta.get("personal_model_version")
    return saved.version if not pv else f"{saved.version}+{RECOMMENDER_MODEL}:{pv}"


def _people(ws: Workspace, segment: str | None) -> tuple[pd.DataFrame, int]:
    """``(unified_id, customer_id)`` of consenting, non-erased persons; and those without consent."""
    with ws.open_store(read_only=True) as store:
        return _people_in(store, segment)


def _people_in(store: Any, segment: str | None) -> tuple[pd.DataFrame, int]:
    if not store.has_table("profiles"):
        raise DataError("no profiles table: run `cip unify` (identity) before `cip recommend`")
    pcols = set(store.sql("SELECT * FROM profiles LIMIT 0").columns)
    consent = "p.consent_personalization IS TRUE" if "consent_personalization" in pcols else "FALSE"
    cust = "CAST(p.customer_id AS VARCHAR)" if "customer_id" in pcols else "NULL"
    gone = (
        "NOT EXISTS (SELECT 1 FROM erased x_ WHERE x_.unified_id = p.unified_id)"
        if store.has_table("erased")
        else "TRUE"
    )
    where, params = f"WHERE {gone}", []
    if segment is not None:
        if not store.has_table("segment_members"):
            raise NotFoundError(f"segment {segment!r} is not built: run `cip segments build`")
        n = store.sql("SELECT count(*) AS n FROM segment_members WHERE segment = ?", [segment])[
            "n"
        ].iloc[0]
        if int(n) == 0:
            raise NotFoundError(f"segment {segment!r} has no members (or is not built)")
        where += (
            " AND p.unified_id IN (SELECT unified_id FROM segment_members WHERE segment = ? "
            "AND as_of = (SELECT max(as_of) FROM segment_members WHERE segment = ?))"
        )
        params = [segment, segment]
    rows = store.sql(
        f"SELECT CAST(p.unified_id AS VARCHAR) AS unified_id, {cust} AS customer_id, "
        f"({consent}) AS ok FROM profiles p {where} ORDER BY p.unified_id",
        params,
    )
    ok = rows["ok"].fillna(False).astype(bool).to_numpy()
    return rows.loc[ok, ["unified_id", "customer_id"]].reset_index(drop=True), int((~ok).sum())


_FORKED: dict[str, Any] = {}


def _part(bounds: tuple[int, int]) -> pd.DataFrame:
    """One worker's share of :func:`campaign_rows` (the state was inherited by fork)."""
    saved, people, block, n, chunk = _FORKED["args"]
    return _rows(saved, people.iloc[bounds[0] : bounds[1]], block, n, chunk)


def campaign_rows(
    saved: Any, people: pd.DataFrame, block: str, n: int, chunk: int = 1024, workers: int = 1
) -> pd.DataFrame:
    """One row per person: ``items, scores, sources, block, fallback, model_version``.

    ``fallback`` names the first fallback tier that filled a place in the list
    (``None``: the block's own candidates filled all ``n``). Persons whom the
    rules leave nothing get no row. ``workers`` > 1 splits the persons over
    forked processes (POSIX only; the fitted blocks are shared copy-on-write).
    """
    if block not in saved.blocks.blocks:
        raise NotFoundError(f"unknown block {block!r}; known: {', '.join(saved.names)}")
    workers = max(1, min(int(workers), len(people) // max(chunk, 1) or 1))
    if workers == 1 or "fork" not in __import__("multiprocessing").get_all_start_methods():
        return _rows(saved, people, block, n, chunk)
    import multiprocessing as mp

    edges = np.linspace(0, len(people), workers + 1).astype(int)
    _FORKED["args"] = (saved, people, block, n, chunk)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_part, list(zip(edges[:-1], edges[1:], strict=True)))
    finally:
        _FORKED.clear()
    return pd.concat(parts, ignore_index=True)


_COLUMNS = [
    "unified_id",
    "customer_id",
    "items",
    "scores",
    "sources",
    "block",
    "fallback",
    "model_version",
]


def _rows(saved: Any, people: pd.DataFrame, block: str, n: int, chunk: int) -> pd.DataFrame:
    uids = people["unified_id"].astype(str).to_numpy(dtype=object)
    flat = saved.blocks.recommend_flat(block, uids, k=n, chunk=chunk)
    counts = flat["counts"]
    has = counts > 0
    if not has.any():
        return pd.DataFrame(columns=_COLUMNS)
    # per person: a slice of the flat answers (list slicing beats np.split per person)
    ends = np.cumsum(counts)[has]
    starts = ends - counts[has]
    bounds = list(zip(starts.tolist(), ends.tolist(), strict=True))
    item_l, score_l = flat["item_id"].tolist(), flat["score"].tolist()
    src = flat["source"]
    src_l = src.tolist()
    kind = saved.kinds.get(block, block)
    # the first fallback per person: the first source that is not the block's own
    other = np.where(src != kind, np.arange(len(src)), len(src))
    first = np.minimum.reduceat(np.append(other, len(src)), starts)
    fallback = [
        src_l[f] if f < e else None for f, e in zip(first.tolist(), ends.tolist(), strict=True)
    ]
    persons = uids[has]
    cust = people.drop_duplicates("unified_id").set_index("unified_id")["customer_id"]
    return pd.DataFrame(
        {
            "unified_id": persons,
            "customer_id": cust.reindex(persons).to_numpy(),
            "items": [item_l[a:b] for a, b in bounds],
            "scores": [score_l[a:b] for a, b in bounds],
            "sources": [src_l[a:b] for a, b in bounds],
            "block": block,
            "fallback": fallback,
            "model_version": _version(saved),
        }
    )


def recommender_for(ws: Workspace, store: Any, block: str, n: int) -> Any:
    """``unified ids -> top-n item ids`` of ``block`` for segment exports.

    Only persons with personalisation consent (as for ``cip recommend``) get items.
    """
    saved = load_saved_blocks(ws)
    if block not in saved.blocks.blocks:
        raise NotFoundError(f"unknown block {block!r}; known: {', '.join(saved.names)}")
    consenting, _ = _people_in(store, None)
    allowed = consenting.set_index("unified_id")

    def recommend(uids: list[str]) -> dict[str, list[str]]:
        people = allowed.reindex([u for u in uids if u in allowed.index]).reset_index()
        rows = campaign_rows(saved, people, block, n)
        return dict(zip(rows["unified_id"], rows["items"], strict=True))

    return recommend


def _write(df: pd.DataFrame, out: Path, fmt: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            flat = df.copy()
            for c in ("items", "scores", "sources"):
                flat[c] = [
                    " ".join(str(x) for x in v)
                    if c != "scores"
                    else " ".join(f"{x:.6g}" for x in v)
                    for v in flat[c]
                ]
            flat.to_csv(tmp, index=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def recommend(
    ws: Workspace,
    block: str,
    *,
    segment: str | None = None,
    all_people: bool = False,
    n: int | None = None,
    out: str | Path | None = None,
    fmt: str | None = None,
) -> tuple[CampaignResult, pd.DataFrame]:
    """Top-``n`` of ``block`` per consenting person of ``segment`` (or everyone); write ``out``.

    Returns the report and the rows (also written to ``out`` when given).
    """
    t0 = time.perf_counter()
    if (segment is None) == (not all_people):
        raise ConfigError("give --segment NAME or --all (one of them)")
    saved = load_saved_blocks(ws)
    if block not in saved.blocks.blocks:
        raise NotFoundError(f"unknown block {block!r}; known: {', '.join(saved.names)}")
    k = n or saved.k.get(block, 10)
    if k < 1:
        raise ConfigError(f"--n must be >= 1, not {k}")
    path, form = None, None
    if out is not None:
        path = Path(out)
        form = fmt or path.suffix.lower().lstrip(".")
        if form not in FORMATS:
            raise ConfigError(
                f"cannot tell the format of {path.name}: use .parquet, .csv or .jsonl (or --format)"
            )
    people, no_consent = _people(ws, segment)
    rows = campaign_rows(saved, people, block, k)
    if path is not None:
        _write(rows, path, form or "parquet")
    fb = rows["fallback"].fillna("none").value_counts().to_dict() if len(rows) else {}
    return (
        CampaignResult(
            path=str(path) if path else "",
            format=form or "",
            block=block,
            n=int(k),
            segment=segment,
            candidates=len(people),
            rows=len(rows),
            no_consent=no_consent,
            empty=len(people) - len(rows),
            model_version=_version(saved),
            seconds=time.perf_counter() - t0,
            fallbacks={str(a): int(b) for a, b in fb.items()},
        ),
        rows,
    )


def forget_in_blocks(ws: Workspace, unified_ids: list[str]) -> int | None:
    """Remove persons from the saved blocks (``cip forget``); None when no blocks are fitted."""
    from cip.models.recommender.blocks.saved import forget_users, load_blocks, save_blocks

    p = blocks_path(ws)
    if not p.is_file() or not unified_ids:
        return None if not p.is_file() else 0
    saved = load_blocks(p)
    n = forget_users(saved, [str(u) for u in unified_ids])
    if n:
        save_blocks(saved, p)
        _tell_services(ws)
    return n


def _tell_services(ws: Workspace) -> None:
    """Touch the reload stamp: running services load the new blocks within a second."""
    from cip.pipelines.workflows.setup import serving_settings

    stamp = Path(serving_settings(ws).reload_stamp)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
