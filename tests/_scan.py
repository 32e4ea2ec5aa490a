"""Search a workspace for personal data: every table, every file (parquet and zip members decoded)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from cip.pipelines.workspace import Workspace


def pattern(needles: list[str]) -> re.Pattern[bytes]:
    alts = sorted({n.lower() for n in needles}, key=len, reverse=True)
    return re.compile("|".join(re.escape(a) for a in alts).encode())


def table_hits(ws: Workspace, needles: list[str]) -> dict[str, int]:
    """Rows per table (any column cast to text, case-insensitive) holding a needle."""
    rx = "|".join(re.escape(n.lower()) for n in needles).replace("'", "''")
    out = {}
    with ws.open_store(read_only=True) as store:
        tables = store.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = "
            "current_database() AND table_type = 'BASE TABLE'"
        )["table_name"]
        for t in tables:
            cols = store.sql(f'SELECT * FROM "{t}" LIMIT 0').columns
            if not len(cols):
                continue
            cond = " OR ".join(
                f"regexp_matches(lower(CAST(\"{c}\" AS VARCHAR)), '{rx}')" for c in cols
            )
            n = int(store.sql(f'SELECT count(*) AS n FROM "{t}" WHERE {cond}')["n"].iloc[0])
            if n:
                out[t] = n
    return out


def file_hits(
    root: Path, needles: list[str], *, skip: tuple[str, ...] = ("sources",)
) -> dict[str, int]:
    """Files under ``root`` (not under the top folders ``skip``) whose bytes hold a needle.

    Case-insensitive. Compressed containers are opened: the decoded values of
    Parquet files and the members of zip files (``.npz``, ``.zip``) are searched too.
    """
    rx = pattern(needles)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.parts[0] in skip:
            continue
        n = len(rx.findall(p.read_bytes().lower()))
        if p.suffix == ".parquet":
            n += _parquet_hits(p, needles)
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                n += sum(len(rx.findall(z.read(m).lower())) for m in z.namelist())
        if n:
            out[str(rel)] = n
    return out


def _parquet_hits(path: Path, needles: list[str]) -> int:
    import duckdb

    rx = "|".join(re.escape(n.lower()) for n in needles).replace("'", "''")
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE f AS SELECT * FROM read_parquet('{path}')")
        cols = [r[0] for r in con.execute("DESCRIBE f").fetchall()]
        cond = " OR ".join(f"regexp_matches(lower(CAST(\"{c}\" AS VARCHAR)), '{rx}')" for c in cols)
        return int(con.execute(f"SELECT count(*) FROM f WHERE {cond}").fetchone()[0])
    finally:
        con.close()
