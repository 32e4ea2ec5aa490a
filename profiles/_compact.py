"""Physical erasure: no deleted value may survive in the database file.

DuckDB marks deleted rows and keeps their bytes in the row groups and in free
blocks of the file; ``CHECKPOINT``, ``FORCE CHECKPOINT`` and ``VACUUM`` leave
them there (measured with DuckDB 2.0 on a demo store: an erased e-mail still
appeared 6 times in ``cip.duckdb`` after each of them). Copying the database
into a fresh file (``ATTACH`` + ``COPY FROM DATABASE``) writes live rows only,
so :func:`rewrite_duckdb` does that and swaps the copy in atomically.

The swap is guarded by a POSIX lock on the old file (the kind DuckDB takes
itself), so no other process can open it between the copy and the swap; the
old file's blocks are then overwritten with zeros through a descriptor kept
open across ``os.replace`` (best effort: journaling or copy-on-write file
systems and SSD wear levelling may still keep old blocks; backups are out of
reach).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
from cip.profiles.errors import CIPError, ConflictError
from cip.profiles.sql import quote_ident, quote_literal
from cip.profiles.store import Store

__all__ = ["rewrite_duckdb", "vacuum_postgres"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def _counts(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, int]:
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? "
            "AND table_type = 'BASE TABLE' AND table_schema = 'main'",
            [catalog],
        ).fetchall()
    ]
    return {
        n: con.execute(
            f'SELECT count(*) FROM {quote_ident(catalog)}."main".{quote_ident(n)}'
        ).fetchone()[0]
        for n in names
    }


def _zero(fd: int) -> None:
    size = os.fstat(fd).st_size
    os.lseek(fd, 0, os.SEEK_SET)
    block = b"\0" * _CHUNK
    done = 0
    while done < size:
        done += os.write(fd, block[: min(_CHUNK, size - done)])
    os.fsync(fd)


def rewrite_duckdb(path: str | os.PathLike[str], *, retries: int = 20) -> dict[str, Any]:
    """Rewrite the DuckDB file at ``path`` to a fresh file holding live rows only.

    The caller must have closed its own connections to ``path``. Returns sizes
    and timings. Raises :class:`~profiles.errors.ConflictError` when another
    process holds the file (nothing is changed then).
    """
    p = Path(path)
    t0 = time.perf_counter()
    for old in p.parent.glob(f".{p.name}.rewrite-*"):  # a crashed earlier rewrite
        old.unlink(missing_ok=True)
    tmp = p.with_name(f".{p.name}.rewrite-{uuid.uuid4().hex[:8]}")
    before = p.stat().st_size
    try:
        con = duckdb.connect(str(p))
    except duckdb.IOException as exc:
        raise ConflictError(
            f"cannot rewrite the store now ({str(exc).splitlines()[0]}); run the same "
            "`cip forget` again to finish (it reports the person as already erased)"
        ) from None
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("FORCE CHECKPOINT")
        catalog = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH {quote_literal(tmp)} AS cip_fresh")
        con.execute(f"COPY FROM DATABASE {quote_ident(catalog)} TO cip_fresh")
        if _counts(con, catalog) != _counts(con, "cip_fresh"):
            raise CIPError("the rewritten store does not match the original; it was not swapped")
        con.execute("DETACH cip_fresh")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
        raise
    con.close()
    if Path(f"{p}.wal").exists() or Path(f"{tmp}.wal").exists():
        tmp.unlink(missing_ok=True)
        raise CIPError(f"{p.name}: a write-ahead log is left after the checkpoint; not swapped")
    fd = os.open(p, os.O_RDWR)
    try:
        for attempt in range(retries):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt + 1 == retries:
                    tmp.unlink(missing_ok=True)
                    raise ConflictError(
                        f"{p.name} was opened by another process during the rewrite; the erasure "
                        "is committed: run the same `cip forget` again to rewrite the file"
                    ) from None
                time.sleep(0.25)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        _zero(fd)  # the old inode, unreachable now
    finally:
        os.close(fd)
    after = p.stat().st_size
    secs = round(time.perf_counter() - t0, 3)
    log.info("store rewritten: %d -> %d bytes in %.2fs", before, after, secs)
    return {"bytes_before": before, "bytes_after": after, "seconds": secs}


def vacuum_postgres(store: Store, tables: list[str]) -> dict[str, Any]:
    """``VACUUM FULL`` the tables (PostgreSQL rewrites them into new files)."""
    t0 = time.perf_counter()
    for t in tables:
        store.execute(f"VACUUM FULL {quote_ident(t)}")
    return {"tables": len(tables), "seconds": round(time.perf_counter() - t0, 3)}
