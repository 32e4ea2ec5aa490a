"""Erasure outside the store: workspace files that may hold an erased person.

* exports in the workspace's ``exports/`` folder (CSV, Parquet, JSONL written
  by ``cip segments export``, ``cip score --out``, ``cip features --out``);
* the service's rotated HTTP events files (``sources/_http_events/*.jsonl``,
  CIP's own output; files still being written are left to ingest suppression);
* saved recommenders (``model.json`` + ``arrays.npz``) in the MLflow artifact
  folder and the service's model cache: the persons' user rows go
  (:meth:`models.Recommender.drop_users`); item factors are aggregates over
  many people and are refit without them at the next training.

Every file is rewritten next to itself and swapped in with ``os.replace``;
the old file's blocks are overwritten with zeros through a descriptor kept
open across the swap. Filtering runs in DuckDB (vectorised), never per row.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import duckdb
from cip.profiles.errors import CIPError
from cip.profiles.sql import quote_ident, quote_literal

__all__ = ["scrub_exports", "scrub_events_files", "scrub_recommenders", "replace_zeroing"]

log = logging.getLogger(__name__)

_READERS = {
    ".csv": "read_csv({p}, header = true, all_varchar = true)",
    ".parquet": "read_parquet({p})",
    ".jsonl": "read_json({p}, format = 'newline_delimited')",
    ".json": "read_json({p}, format = 'auto')",
}
_WRITERS = {
    ".csv": "FORMAT csv, HEADER true",
    ".parquet": "FORMAT parquet",
    ".jsonl": "FORMAT json",
    ".json": "FORMAT json",
}


def replace_zeroing(tmp: Path, path: Path) -> None:
    """``os.replace(tmp, path)``, then overwrite the replaced file's blocks with zeros."""
    fd = os.open(path, os.O_RDWR) if path.exists() else None
    try:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        if fd is not None:
            size = os.fstat(fd).st_size
            os.lseek(fd, 0, os.SEEK_SET)
            left = size
            while left > 0:
                left -= os.write(fd, b"\0" * min(left, 1 << 20))
            os.fsync(fd)
    finally:
        if fd is not None:
            os.close(fd)


def _filter_file(path: Path, values: list[str]) -> int | None:
    """Rewrite ``path`` without rows where any column equals a value; rows removed (None: unreadable)."""
    ext = path.suffix.lower()
    if ext not in _READERS or not values:
        return 0
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("vals", _values_table(values))
        try:
            con.execute(
                f"CREATE TEMP TABLE f AS SELECT * FROM {_READERS[ext].format(p=quote_literal(path))}"
            )
        except duckdb.Error:
            return None
        cols = con.execute("SELECT column_name, column_type FROM (DESCRIBE f)").fetchall()
        terms = [
            f"list_has_any(CAST({quote_ident(c)} AS VARCHAR[]), (SELECT list(v) FROM vals))"
            if t.endswith("[]")
            else f"CAST({quote_ident(c)} AS VARCHAR) IN (SELECT v FROM vals)"
            for c, t in cols
        ]
        hit = " OR ".join(f"coalesce({x}, FALSE)" for x in terms) or "FALSE"
        n = con.execute(f"SELECT count(*) FROM f WHERE {hit}").fetchone()[0]
        if not n:
            return 0
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            con.execute(
                f"COPY (SELECT * FROM f WHERE NOT ({hit})) TO {quote_literal(tmp)} ({_WRITERS[ext]})"
            )
            replace_zeroing(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return int(n)
    finally:
        con.close()


def _values_table(values: Iterable[str]):  # noqa: ANN202 - a pyarrow table
    import pyarrow as pa

    return pa.table({"v": pa.array(sorted(set(values)), pa.string())})


def scrub_exports(folder: Path, values: list[str]) -> dict[str, int]:
    """Rows removed per export file under ``folder`` (files that cannot be read: -1)."""
    out: dict[str, int] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.suffix.lower() not in _READERS:
            continue
        n = _filter_file(p, values)
        if n is None:
            out[str(p.relative_to(folder))] = -1
            log.warning("export %s cannot be read; check it by hand", p.name)
        elif n:
            out[str(p.relative_to(folder))] = n
    return out


def scrub_events_files(folder: Path, values: list[str]) -> dict[str, int]:
    """Events removed per rotated HTTP events file (``*.jsonl``; ``.part`` files are live)."""
    out: dict[str, int] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.jsonl")):
        if p.name.startswith("_"):
            continue
        n = _filter_file(p, values)
        if n:
            out[p.name] = n
    return out


def _model_dirs(roots: Iterable[Path]) -> list[Path]:
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for meta in root.rglob("model.json"):
            try:
                if json.loads(meta.read_text()).get("format") == "cip-recommender":
                    found.append(meta.parent)
            except (ValueError, OSError):
                continue
    return sorted(set(found))


def scrub_recommenders(roots: Iterable[Path], user_ids: list[str]) -> dict[str, int]:
    """Users dropped per saved recommender folder under ``roots`` (rewritten atomically)."""
    out: dict[str, int] = {}
    wanted = set(user_ids)
    if not wanted:
        return out
    for d in _model_dirs(roots):
        meta = json.loads((d / "model.json").read_text())
        present = [u for u in meta.get("user_ids", []) if str(u) in wanted]
        if not present:
            continue
        from cip.models.recommender import load_recommender  # heavy: only when a model holds them

        model = load_recommender(d)
        n = model.drop_users(present)
        new = d.with_name(f".{d.name}.{uuid.uuid4().hex[:8]}.new")
        old = d.with_name(f".{d.name}.{uuid.uuid4().hex[:8]}.old")
        try:
            model.save(new)
            for f in new.iterdir():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.rename(d, old)
            os.rename(new, d)
        except OSError as exc:
            if old.exists() and not d.exists():
                os.rename(old, d)
            raise CIPError(f"cannot rewrite the saved recommender {d}: {exc}") from None
        finally:
            shutil.rmtree(new, ignore_errors=True)
        for f in old.iterdir():
            replace_zeroing_inplace(f)
        shutil.rmtree(old, ignore_errors=True)
        out[str(d)] = n
    return out


def replace_zeroing_inplace(path: Path) -> None:
    """Overwrite a file that is about to be deleted with zeros."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        left = size
        while left > 0:
            left -= os.write(fd, b"\0" * min(left, 1 << 20))
        os.fsync(fd)
    finally:
        os.close(fd)
