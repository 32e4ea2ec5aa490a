"""The Spark store: the workspace's tables as versioned Parquet tables under a warehouse folder.

Layout (one directory per table)::

    <warehouse>/<table>/v-<stamp>-<id>/part-*.parquet   a version (immutable once published)
    <warehouse>/<table>/_CURRENT                        pointer: the name of the current version
    <warehouse>/_views/<name>.sql                       a view (its SELECT, in DuckDB's dialect)

A write never touches a published version: it writes a new version directory,
fsyncs it, then replaces the pointer with ``os.replace`` (atomic on POSIX);
readers only ever follow the pointer, so no half-written table is read. Old
versions are removed after a successful swap. :meth:`SparkStore.transaction`
stages the new versions of every table it writes and swaps all pointers at
commit (an exception discards them).

The SQL the steps send is written for DuckDB. Queries are transpiled with
sqlglot (``read="duckdb", write="spark"``) and run by Spark over temporary
views of each table's current version. DML that Spark cannot do on plain
Parquet (INSERT, DELETE, UPDATE, CREATE TABLE AS, ALTER TABLE) is rewritten
from its parse tree into a SELECT that yields the table's new contents, which
becomes the next version. A statement sqlglot cannot express in Spark SQL
(e.g. an ordered ``array_agg``), or that Spark rejects, runs driver-side in
an in-process DuckDB over the same Parquet files; :attr:`SparkStore.stats`
counts where each statement ran.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from cip.profiles.errors import CIPError, ConfigError, NotFoundError
from cip.profiles.store import Store, scratch_duckdb
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

__all__ = ["SparkStore", "spark_session", "SPARK_DEFAULT_MASTER"]

log = logging.getLogger(__name__)

SPARK_DEFAULT_MASTER = "local[*]"
POINTER = "_CURRENT"
VIEWS = "_views"
_TEMP = "_temp"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a query reading more rows than this reaches the driver through Parquet files
COLLECT_VIA_FILES_ROWS = 2_000_000

# SQL settings the store relies on (set on the session, also when it was made elsewhere)
_SESSION_SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",  # DuckDB's TIMESTAMP has no time zone
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.ansi.enabled": "false",  # DuckDB-like: a failed cast is NULL, not an error
    "spark.sql.caseSensitive": "false",
}

_session_lock = threading.Lock()
_session: Any = None


def _ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _local_defaults() -> dict[str, str]:
    """Local mode: the driver JVM is also the executor, so Spark's 1 GB default heap is far
    too small (a collect of a few million rows fails, "TaskResultLost"): 40 % of the RAM,
    half of it for results collected to Python; few shuffle partitions for 2-8 cores."""
    heap = max(1, int(_ram_gib() * 0.4))
    return {
        "spark.driver.memory": f"{heap}g",
        "spark.driver.maxResultSize": f"{max(1, heap // 2)}g",
        "spark.sql.shuffle.partitions": "4",
        # an idle driver (identity, training run in Python) gives its heap back to the OS
        "spark.driver.extraJavaOptions": (
            "-XX:+UseG1GC -XX:G1PeriodicGCInterval=10000 "
            "-XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"
        ),
    }


def _gib(size: str) -> float:
    """A JVM memory size (``"9g"``, ``"4096m"``, ``"2t"``, bytes) in GiB."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", str(size).lower())
    if m is None:
        raise ConfigError(f"spark: cannot read the memory size {size!r} (e.g. '8g', '4096m')")
    scale = {"": 2**-30, "k": 2**-20, "m": 2**-10, "g": 1.0, "t": 2**10}[m.group(2)]
    return float(m.group(1)) * scale


def driver_duckdb_limit(master: str, conf: dict[str, str] | None = None) -> str:
    """The memory bound of the driver-side DuckDB next to a Spark driver on this machine.

    DuckDB's own default (80 % of the RAM) next to a driver JVM of 40 % sent the machine
    into swap-less memory pressure at 50 M events. The JVM takes its heap plus about a
    quarter more off-heap; DuckDB gets what is left of 80 % of the RAM (at least 1 GiB)
    and spills to disk past it.
    """
    conf = conf or {}
    if "spark.driver.memory" in conf:
        heap = _gib(conf["spark.driver.memory"])
    elif master.startswith("local"):
        heap = _gib(_local_defaults()["spark.driver.memory"])
    else:
        heap = 1.0  # Spark's default driver heap
    return f"{max(1.0, 0.8 * _ram_gib() - 1.25 * heap):.1f}GiB"


def spark_session(master: str = SPARK_DEFAULT_MASTER, conf: dict[str, str] | None = None) -> Any:
    """The process's one SparkSession, created lazily (UTC, UI off); an active one is reused."""
    global _session
    with _session_lock:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise ConfigError(
                "engine 'spark' needs pyspark: pip install 'cip[spark]' (and Java 17)"
            ) from None
        active = SparkSession.getActiveSession()
        if active is not None:
            _session = active
        if _session is None:
            if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
                raise ConfigError("engine 'spark' needs Java 17 (no `java` on PATH, no JAVA_HOME)")
            builder = (
                SparkSession.builder.master(master)
                .appName("cip")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
            )
            defaults = _local_defaults() if master.startswith("local") else {}
            for k, v in {**defaults, **_SESSION_SQL_CONF, **(conf or {})}.items():
                builder = builder.config(k, str(v))
            _session = builder.getOrCreate()
            _session.sparkContext.setLogLevel("ERROR")
        for k, v in _SESSION_SQL_CONF.items():
            _session.conf.set(k, v)
        for k, v in (conf or {}).items():
            if k.startswith("spark.sql."):
                _session.conf.set(k, str(v))
        return _session


@contextmanager
def _quiet_rejections() -> Iterator[None]:
    """PySpark logs every statement its analyser rejects at ERROR (JSON on stderr) before
    raising; here a rejection is not an error, the statement runs driver-side (logged at
    INFO), and any other failure is still raised."""
    from pyspark.logger import PySparkLogger

    logger = PySparkLogger.getLogger("SQLQueryContextLogger")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Fallback(Exception):
    """A statement Spark cannot run as written: run it driver-side in DuckDB."""


class SparkStore(Store):
    """Versioned Parquet tables under ``warehouse``, queried by Spark (see the module doc)."""

    backend = "spark"
    dialect = "duckdb"  # the dialect the callers write; transpiled to Spark SQL here

    def __init__(
        self,
        warehouse: str | os.PathLike[str],
        *,
        master: str = SPARK_DEFAULT_MASTER,
        conf: dict[str, str] | None = None,
        session: Any = None,
    ) -> None:
        self.warehouse = Path(warehouse).resolve()
        self.warehouse.mkdir(parents=True, exist_ok=True)
        (self.warehouse / VIEWS).mkdir(exist_ok=True)
        self._master, self._conf = master, dict(conf or {})
        self.scratch_memory_limit = driver_duckdb_limit(master, self._conf)
        self._spark = session
        self._lock = threading.RLock()
        self._depth = 0
        self._staged: dict[str, Path | None] = {}  # table -> new version (None: dropped)
        self._staged_views: dict[str, str | None] = {}
        self._temp: dict[str, Path] = {}  # temporary tables of this store object
        self._tempdir = self.warehouse / _TEMP / uuid.uuid4().hex[:12]
        self._frames: dict[str, Any] = {}  # version dir -> Spark DataFrame over it
        self._nrows: dict[str, int] = {}  # version dir -> its rows
        self._duck: duckdb.DuckDBPyConnection | None = None
        self._ibis: Any = None
        self.stats = {"spark": 0, "driver": 0, "meta": 0}
        #: (statement head, reason) of every statement that ran driver-side
        self.fallbacks: list[tuple[str, str]] = []

    # -- session -------------------------------------------------------------
    @property
    def spark(self) -> Any:
        """The SparkSession (created on first use)."""
        if self._spark is None:
            self._spark = spark_session(self._master, self._conf)
        else:
            for k, v in _SESSION_SQL_CONF.items():
                self._spark.conf.set(k, v)
        return self._spark

    # -- catalog -------------------------------------------------------------
    def _tdir(self, name: str) -> Path:
        if not _NAME.match(name) or name.startswith("_views") or name == _TEMP:
            raise CIPError(f"invalid table name {name!r}")
        return self.warehouse / name.lower()

    def _published(self, name: str) -> Path | None:
        ptr = self._tdir(name) / POINTER
        try:
            version = ptr.read_text().strip()
        except FileNotFoundError:
            return None
        return self._tdir(name) / version

    def _version(self, name: str) -> Path | None:
        """The version a reader in this store sees (temp, then staged, then published)."""
        key = name.lower()
        if key in self._temp:
            return self._temp[key]
        if key in self._staged:
            return self._staged[key]
        return self._published(key)

    def _view_sql(self, name: str) -> str | None:
        key = name.lower()
        if key in self._staged_views:
            return self._staged_views[key]
        f = self.warehouse / VIEWS / f"{key}.sql"
        return f.read_text() if f.is_file() else None

    def table_names(self) -> list[str]:
        """The store's tables and views (published, or staged in this transaction)."""
        names = {p.name for p in self.warehouse.iterdir() if (p / POINTER).is_file()}
        names |= {p.stem for p in (self.warehouse / VIEWS).glob("*.sql")}
        names |= {k for k, v in self._staged.items() if v is not None}
        names |= {k for k, v in self._staged_views.items() if v is not None}
        names -= {k for k, v in self._staged.items() if v is None}
        names -= {k for k, v in self._staged_views.items() if v is None}
        return sorted(names)

    def _new_version(self, name: str, *, temp: bool = False) -> Path:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        base = self._tempdir / name.lower() if temp else self._tdir(name)
        d = base / f"v-{stamp}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def _set(self, name: str, version: Path | None, *, temp: bool = False) -> None:
        """Make ``version`` the table's contents (staged in a transaction, else published)."""
        key = name.lower()
        if temp:
            old = self._temp.pop(key, None)
            if version is not None:
                self._temp[key] = version
            if old is not None and old != version:
                shutil.rmtree(old, ignore_errors=True)
            return
        if self._depth:
            old = self._staged.get(key)
            self._staged[key] = version
            if old is not None and old != version:
                shutil.rmtree(old, ignore_errors=True)
        else:
            self._publish(key, version)

    def _publish(self, name: str, version: Path | None) -> None:
        """Swap the pointer to ``version`` atomically, then remove the other versions."""
        tdir = self._tdir(name)
        if version is None:
            with contextlib.suppress(FileNotFoundError):
                (tdir / POINTER).unlink()
            shutil.rmtree(tdir, ignore_errors=True)
            self._frames.clear()
            return
        _fsync_tree(version)
        tmp = tdir / f".{POINTER}.{uuid.uuid4().hex[:8]}"
        with open(tmp, "w") as fh:
            fh.write(version.name)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, tdir / POINTER)
        _fsync_dir(tdir)
        for old in tdir.iterdir():  # garbage: superseded versions and crashed writes
            if old.name.startswith("v-") and old != version:
                shutil.rmtree(old, ignore_errors=True)

    @contextmanager
    def _outermost_transaction(self) -> Iterator[None]:
        """Stage every table written inside; swap all pointers at the end (discard on error)."""
        try:
            yield
        except BaseException:
            for v in self._staged.values():
                if v is not None:
                    shutil.rmtree(v, ignore_errors=True)
            raise
        else:
            for name, v in self._staged.items():
                self._publish(name, v)
            for name, sql in self._staged_views.items():
                self._write_view(name, sql)
        finally:
            self._staged.clear()
            self._staged_views.clear()

    def _write_view(self, name: str, sql: str | None) -> None:
        f = self.warehouse / VIEWS / f"{name}.sql"
        if sql is None:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
            return
        tmp = f.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(sql)
        os.replace(tmp, f)

    # -- writing versions ----------------------------------------------------
    def _schema(self, name: str) -> pa.Schema:
        v = self._version(name)
        if v is None:
            raise NotFoundError(f"table {name!r} does not exist in the store")
        return pq.read_schema(next(iter(sorted(v.glob("*.parquet")))))

    def _write_arrow(
        self, data: pa.Table, name: str, *, temp: bool = False, base: Path | None = None
    ) -> Path:
        """A new version holding ``base``'s files (hard links) plus ``data``."""
        d = self._new_version(name, temp=temp)
        if base is not None:
            for f in sorted(base.glob("*.parquet")):
                _link(f, d / f.name)
        if base is None or data.num_rows:
            pq.write_table(_normalise(data), d / f"part-{uuid.uuid4().hex[:12]}.parquet")
        return d

    def _write_spark(
        self, df: Any, name: str, *, temp: bool = False, base: Path | None = None
    ) -> Path:
        """A new version holding ``base``'s files plus the rows of the Spark DataFrame ``df``."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import TimestampNTZType, TimestampType

        if any(isinstance(f.dataType, TimestampType) for f in df.schema.fields):
            # DuckDB's TIMESTAMP: naive UTC (the session time zone is UTC)
            df = df.select(
                *(
                    F.col(f"`{f.name}`").cast(TimestampNTZType()).alias(f.name)
                    if isinstance(f.dataType, TimestampType)
                    else F.col(f"`{f.name}`")
                    for f in df.schema.fields
                )
            )
        d = self._new_version(name, temp=temp)
        out = d / "_spark_out"
        df.write.mode("overwrite").parquet(str(out))
        parts = sorted(out.glob("part-*.parquet"))
        for f in parts:
            os.replace(f, d / f"part-{uuid.uuid4().hex[:12]}.parquet")
        shutil.rmtree(out, ignore_errors=True)
        if base is not None:
            for f in sorted(base.glob("*.parquet")):
                _link(f, d / f.name)
        if not any(d.glob("*.parquet")):
            pq.write_table(_normalise(df.limit(0).toArrow()), d / "part-empty.parquet")
        return d

    # -- running SQL ---------------------------------------------------------
    def _refs(self, tree: exp.Expression) -> list[str]:
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        out: list[str] = []
        for t in tree.find_all(exp.Table):
            n = t.name.lower()
            if n and not t.args.get("db") and n not in ctes and n not in out:
                out.append(n)
        return out

    def _closure(self, names: Sequence[str]) -> Iterator[tuple[str, Path | None, Any]]:
        """``(name, version, view)`` for ``names`` and, before each view, what it reads.

        Depth first, each name once; a table gives its version, a view ``(DuckDB SQL,
        parsed tree)``; an unknown name is left out (the engine names it in its error).
        """
        seen: set[str] = set()

        def walk(ns: Sequence[str]) -> Iterator[tuple[str, Path | None, Any]]:
            for n in ns:
                if n in seen:
                    continue
                seen.add(n)
                v = self._version(n)
                if v is not None:
                    yield n, v, None
                    continue
                view = self._view_sql(n)
                if view is not None:
                    tree = sqlglot.parse_one(view, read="duckdb")
                    yield from walk(self._refs(tree))
                    yield n, None, (view, tree)

        return walk(names)

    def _register_spark(self, names: Sequence[str]) -> list[Path]:
        """Temp views for ``names`` and what they read; returns the table versions read."""
        versions = []
        for n, v, view in self._closure(names):
            if v is not None:
                key = str(v)
                if key not in self._frames:
                    self._frames[key] = self.spark.read.parquet(key)
                self._frames[key].createOrReplaceTempView(n)
                versions.append(v)
            else:
                self.spark.sql(_to_spark(view[1])).createOrReplaceTempView(n)
        return versions

    def _rows_of(self, version: Path) -> int:
        """Rows of a table version, from the Parquet footers once (a version never changes)."""
        key = str(version)
        if key not in self._nrows:
            self._nrows[key] = _rows_in(version)
        return self._nrows[key]

    def _register_duck(self, names: Sequence[str]) -> duckdb.DuckDBPyConnection:
        if self._duck is None:
            self._duck = scratch_duckdb(self.scratch_memory_limit)
        for n, v, view in self._closure(names):
            if v is not None:
                glob = str(v / "*.parquet").replace("'", "''")
                sql = f"SELECT * FROM read_parquet('{glob}')"
            else:
                sql = view[0]
            self._duck.execute(f'CREATE OR REPLACE TEMP VIEW "{n}" AS {sql}')
        return self._duck

    def _query(self, tree: exp.Expression, *, literal: bool = False) -> tuple[str, Any, list[Path]]:
        """Run a SELECT: ``("spark", DataFrame, table versions it reads)`` or, driver-side,
        ``("driver", pa.Table, [])``.

        ``literal``: rows given in the statement (``INSERT ... VALUES``) are made
        on the driver, a Spark job would only add latency.
        """
        refs = self._refs(tree)
        if literal and not refs:
            self.stats["meta"] += 1
            return "driver", self._register_duck([]).sql(tree.sql("duckdb")).to_arrow_table(), []
        try:
            spark_sql = _to_spark(tree)
            versions = self._register_spark(refs)
            with _quiet_rejections():
                df = self.spark.sql(spark_sql)
            self.stats["spark"] += 1
            return "spark", df, versions
        except (SqlglotError, _Fallback) as exc:
            reason = str(exc).splitlines()[0][:200]
        except Exception as exc:  # AnalysisException, ParseException: Spark rejects it
            if type(exc).__name__ not in ("AnalysisException", "ParseException"):
                raise
            reason = str(exc).splitlines()[0][:200]
        head = " ".join(tree.sql("duckdb").split())[:160]
        log.info("spark store: driver-side DuckDB for %s (%s)", head, reason)
        self.stats["driver"] += 1
        self.fallbacks.append((head, reason))
        con = self._register_duck(refs)
        return "driver", con.sql(tree.sql("duckdb")).to_arrow_table(), []

    def _rows(self, tree: exp.Expression) -> pa.Table:
        quick = self._shortcut(tree)
        if quick is not None:
            return quick
        kind, res, versions = self._query(tree)
        if kind != "spark":
            return res
        inputs = sum(self._rows_of(v) for v in versions)
        return self._collect_via_files(res) if inputs > COLLECT_VIA_FILES_ROWS else res.toArrow()

    def _collect_via_files(self, df: Any) -> pa.Table:
        """The rows of ``df`` on the driver through Parquet files the tasks write.

        ``toArrow()`` sends every row through the driver JVM as task results, bounded by
        ``spark.driver.maxResultSize`` (identity's 61 M raw records at 1 M customers were
        4.1 GiB); files bypass it and the JVM heap. Columns are renamed for the write
        (Parquet refuses names such as ``count(*)`` or duplicates) and back after it; the
        part files are read in partition order, so an ORDER BY holds.
        """
        names = list(df.columns)
        out = self._tempdir / f"collect-{uuid.uuid4().hex[:12]}"
        try:
            df.toDF(*[f"c{i}" for i in range(len(names))]).write.parquet(str(out))
            parts = sorted(out.glob("part-*.parquet"))
            if not parts:
                return df.limit(0).toArrow()
            # decoded once into an uncompressed Arrow file and memory-mapped: the rows are
            # page cache the kernel can drop and read again, not anonymous memory beside
            # the driver JVM (a 61 M-row result got the driver killed by the OOM killer)
            schema = pq.read_schema(parts[0])
            path = str(out / "rows.arrow")
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                for f in parts:
                    for batch in pq.ParquetFile(f).iter_batches(batch_size=1 << 17):
                        writer.write_batch(batch)
            return pa.ipc.open_file(pa.memory_map(path)).read_all().rename_columns(names)
        finally:
            shutil.rmtree(out, ignore_errors=True)  # a mapped file lives on until unmapped

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self._lock:
            return self._rows(_parse(sql, params))

    def sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._lock:
            tree = _parse(sql, params)
            if _is_catalog_query(tree):
                return self._catalog_query(tree)
            # pandas types exactly as DuckDBStore.sql returns them (nullable booleans, ...)
            return self._register_duck([]).from_arrow(self._rows(tree)).df()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        with self._lock:
            tree = _parse(sql, params)
            if isinstance(tree, exp.Create):
                return self._create(tree)
            if isinstance(tree, exp.Insert):
                return self._insert(tree)
            if isinstance(tree, exp.Delete):
                return self._delete(tree)
            if isinstance(tree, exp.Update):
                return self._update(tree)
            if isinstance(tree, exp.Drop):
                return self._drop(tree)
            if isinstance(tree, exp.Alter):
                return self._alter(tree)
            if isinstance(
                tree, exp.Set | exp.Transaction | exp.Commit | exp.Rollback | exp.Command
            ):
                self.stats["meta"] += 1
                return -1  # session settings and transaction verbs: the store's own business
            self._rows(tree)
            return -1

    # -- DML rewritten as new versions ---------------------------------------
    def _materialise(
        self,
        name: str,
        select: exp.Expression,
        *,
        temp: bool = False,
        base: Path | None = None,
        literal: bool = False,
    ) -> tuple[Path, int]:
        kind, res, _ = self._query(select, literal=literal)
        if kind == "spark":
            if base is not None:
                res = _conform_spark(res, self._schema(name))
            version = self._write_spark(res, name, temp=temp, base=base)
            return version, self._rows_of(version) - (
                self._rows_of(base) if base is not None else 0
            )
        if base is not None:
            res = _conform_arrow(res, self._schema(name), name)
        return self._write_arrow(res, name, temp=temp, base=base), res.num_rows

    def _create(self, tree: exp.Create) -> int:
        kind = (tree.args.get("kind") or "").upper()
        if kind == "INDEX":
            self.stats["meta"] += 1
            return -1  # Parquet has no indexes; Spark scans
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        name = target.name.lower()
        props = tree.args.get("properties")
        temp = props is not None and any(
            isinstance(p, exp.TemporaryProperty) for p in props.expressions
        )
        exists = self._version(name) is not None or self._view_sql(name) is not None
        if exists and tree.args.get("exists"):
            return -1
        if exists and not tree.args.get("replace") and not temp:
            raise CIPError(f"table {name!r} already exists")
        if kind == "VIEW":
            self.stats["meta"] += 1
            sql = tree.expression.sql("duckdb")
            if self._depth:
                self._staged_views[name] = sql
            else:
                self._write_view(name, sql)
            self._frames.clear()
            return -1
        if kind != "TABLE":
            raise CIPError(f"the spark store cannot run CREATE {kind}")
        if tree.expression is not None:
            select = tree.expression
        else:
            cols = [c for c in tree.this.expressions if isinstance(c, exp.ColumnDef)]
            arrow_schema = _arrow_schema(cols)
            if arrow_schema is not None:  # no engine needed for an empty table
                self.stats["meta"] += 1
                self._set(
                    name, self._write_arrow(arrow_schema.empty_table(), name, temp=temp), temp=temp
                )
                return -1
            select = exp.select(
                *(exp.cast(exp.null(), c.args["kind"]).as_(c.name, quoted=True) for c in cols)
            ).limit(0)
        version, _ = self._materialise(name, select, temp=temp)
        self._set(name, version, temp=temp)
        return -1

    def _insert(self, tree: exp.Insert) -> int:
        if tree.args.get("conflict") or tree.args.get("alternative"):
            raise CIPError("the spark store cannot run INSERT OR REPLACE / ON CONFLICT")
        target = tree.this
        cols = None
        if isinstance(target, exp.Schema):
            cols = [c.name for c in target.expressions]
            target = target.this
        name = target.name.lower()
        base = self._version(name)
        if base is None:
            raise NotFoundError(f"table {name!r} does not exist in the store")
        schema = self._schema(name)
        cols = cols or schema.names
        src = tree.expression
        if isinstance(src, exp.Values):
            src = exp.select("*").from_(src.as_("_v", table=False))
            alias = src.args["from_"].this
            alias.set(
                "alias",
                exp.TableAlias(
                    this=exp.to_identifier("_v"),
                    columns=[exp.to_identifier(c, quoted=True) for c in cols],
                ),
            )
        new = exp.select(
            *(exp.column(c, table="_n", quoted=True).as_(c, quoted=True) for c in cols)
        ).from_(
            exp.Subquery(
                this=_renamed(src, cols), alias=exp.TableAlias(this=exp.to_identifier("_n"))
            )
        )
        literal = isinstance(tree.expression, exp.Values)
        version, n = self._materialise(name, new, base=base, literal=literal)
        self._set(name, version)
        return n

    def _delete(self, tree: exp.Delete) -> int:
        name = tree.this.name.lower()
        base = self._version(name)
        if base is None:
            raise NotFoundError(f"table {name!r} does not exist in the store")
        where = tree.args.get("where")
        before = self._count(name)
        if where is None:
            select = exp.select("*").from_(tree.this.copy()).where("FALSE")
        else:
            keep = exp.not_(exp.func("coalesce", exp.paren(where.this.copy()), exp.false()))
            select = exp.select("*").from_(tree.this.copy()).where(keep)
        version, after = self._materialise(name, select)
        self._set(name, version)
        return before - after

    def _update(self, tree: exp.Update) -> int:
        table = tree.this
        name = table.name.lower()
        if self._version(name) is None:
            raise NotFoundError(f"table {name!r} does not exist in the store")
        ref = table.alias_or_name
        schema = self._schema(name)
        sets = {e.this.name.lower(): e.expression for e in tree.expressions}
        where = tree.args.get("where")
        cond = where.this.copy() if where is not None else exp.true()
        src = tree.args.get("from_")
        select = exp.select().from_(table.copy())
        if src is not None:  # UPDATE ... FROM: at most one matching row per target row
            other = src.this
            alias = other.alias_or_name
            hit = exp.select(exp.Star(), exp.true().as_("_cip_hit")).from_(other.copy())
            select = select.join(
                exp.Subquery(this=hit, alias=exp.TableAlias(this=exp.to_identifier(alias))),
                on=cond,
                join_type="left",
            )
            cond = exp.column("_cip_hit", table=alias).eq(exp.true())
        hits = exp.func("coalesce", exp.paren(cond.copy()), exp.false())
        out = []
        for c in schema.names:
            col = exp.column(c, table=ref, quoted=True)
            val = sets.get(c.lower())
            e = col if val is None else exp.If(this=hits.copy(), true=val.copy(), false=col)
            out.append(e.as_(c, quoted=True))
        select = select.select(*out)
        version, _ = self._materialise(name, select)
        self._set(name, version)
        return -1  # the rows changed are not counted (the callers do not use it)

    def _drop(self, tree: exp.Drop) -> int:
        kind = (tree.args.get("kind") or "TABLE").upper()
        targets = tree.args.get("tables") or ([tree.this] if tree.this is not None else [])
        for target in targets:
            self._drop_one(target.name.lower(), kind, bool(tree.args.get("exists")))
        return -1

    def _drop_one(self, name: str, kind: str, if_exists: bool) -> None:
        if kind == "VIEW":
            if self._view_sql(name) is None and not if_exists:
                raise NotFoundError(f"view {name!r} does not exist in the store")
            if self._depth:
                self._staged_views[name] = None
            else:
                self._write_view(name, None)
            return
        if name in self._temp:
            self._set(name, None, temp=True)
            return
        if self._version(name) is None:
            if if_exists:
                return
            raise NotFoundError(f"table {name!r} does not exist in the store")
        self._set(name, None)

    def _alter(self, tree: exp.Alter) -> int:
        name = tree.this.name.lower()
        base = self._version(name)
        if base is None:
            raise NotFoundError(f"table {name!r} does not exist in the store")
        for action in tree.args.get("actions") or []:
            if isinstance(action, exp.AlterRename):
                new = action.this.name.lower()
                d = self._new_version(new)
                for f in sorted(base.glob("*.parquet")):
                    _link(f, d / f.name)
                self._set(new, d)
                self._set(name, None)
                return -1
            if isinstance(action, exp.ColumnDef):
                select = exp.select(
                    exp.Star(),
                    exp.cast(exp.null(), action.args["kind"]).as_(action.name, quoted=True),
                ).from_(name)
                version, _ = self._materialise(name, select)
                self._set(name, version)
                base = version
                continue
            raise CIPError(f"the spark store cannot run ALTER TABLE ... {action.sql('duckdb')}")
        return -1

    def _count(self, name: str) -> int:
        v = self._version(name)
        return self._rows_of(v) if v else 0

    def _shortcut(self, tree: exp.Expression) -> pa.Table | None:
        """Answers from Parquet metadata: ``count(*)`` of a table, ``LIMIT 0`` / ``WHERE FALSE``."""
        if not isinstance(tree, exp.Select) or tree.args.get("joins") or tree.args.get("with_"):
            return None
        src = tree.args.get("from_")
        if src is None or not isinstance(src.this, exp.Table) or src.this.args.get("db"):
            return None
        name = src.this.name.lower()
        v = self._version(name)
        if v is None:
            return None
        where, limit = tree.args.get("where"), tree.args.get("limit")
        sel = tree.expressions
        if (
            where is None
            and limit is None
            and not tree.args.get("group")
            and len(sel) == 1
            and isinstance(sel[0].unalias(), exp.Count)
            and isinstance(sel[0].unalias().this, exp.Star)
        ):
            self.stats["meta"] += 1
            return pa.table({sel[0].alias_or_name: pa.array([self._rows_of(v)], pa.int64())})
        empty = (
            where is not None and isinstance(where.this, exp.Boolean) and not where.this.this
        ) or (limit is not None and limit.expression is not None and limit.expression.sql() == "0")
        if empty and len(sel) == 1 and isinstance(sel[0], exp.Star):
            self.stats["meta"] += 1
            return self._schema(name).empty_table()
        return None

    # -- information_schema --------------------------------------------------
    def _catalog_query(self, tree: exp.Expression) -> pd.DataFrame:
        """``information_schema`` queries, answered from the Parquet schemas in a DuckDB catalog."""
        self.stats["meta"] += 1
        con = duckdb.connect()
        try:
            for n in self.table_names():
                v = self._version(n)
                if v is not None:
                    glob = str(v / "*.parquet").replace("'", "''")
                    con.execute(
                        f"CREATE TABLE \"{n}\" AS SELECT * FROM read_parquet('{glob}') LIMIT 0"
                    )
            return con.sql(tree.sql("duckdb")).df()
        finally:
            con.close()

    # -- the rest of the interface -------------------------------------------
    def load_arrow(self, table: str, data: pa.Table | pd.DataFrame, *, mode: str = "append") -> int:
        tbl = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        name = table.lower()
        with self._lock:
            if mode == "append":
                base = self._version(name)
                if base is None:
                    raise NotFoundError(f"table {name!r} does not exist in the store")
                version = self._write_arrow(
                    _conform_arrow(tbl, self._schema(name), name), name, base=base
                )
            elif mode in ("replace", "create"):
                if mode == "create" and self._version(name) is not None:
                    raise CIPError(f"table {name!r} already exists")
                version = self._write_arrow(tbl, name)
            else:
                raise ValueError(f"mode must be append, replace or create, not {mode!r}")
            self._set(name, version)
        return tbl.num_rows

    def ibis(self) -> Any:
        """``ibis.pyspark.connect`` over the session; every table is a temp view of its version."""
        with self._lock:
            self._register_spark(self.table_names())
            if self._ibis is None:
                import ibis

                self._ibis = ibis.pyspark.connect(self.spark)
            return self._ibis

    def close(self) -> None:
        """Drop this store's temporary tables (the session stays for the process)."""
        shutil.rmtree(self._tempdir, ignore_errors=True)
        self._temp.clear()
        self._frames.clear()
        if self._duck is not None:
            self._duck.close()
            self._duck = None


# -- helpers -------------------------------------------------------------------


def _parse(sql: str, params: Sequence[Any] | None) -> exp.Expression:
    if params is not None:
        sql = _bind(sql, list(params))
    try:
        return sqlglot.parse_one(sql, read="duckdb")
    except SqlglotError as exc:
        raise CIPError(f"the spark store cannot parse this statement: {exc}") from None


def _bind(sql: str, values: list[Any]) -> str:
    """``sql`` with its ``?`` placeholders replaced by ``values`` as literals, in text order."""
    from sqlglot.tokens import TokenType

    try:
        tokens = sqlglot.Dialect.get_or_raise("duckdb").tokenize(sql)
    except SqlglotError as exc:
        raise CIPError(f"the spark store cannot parse this statement: {exc}") from None
    holders = [t for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    if len(holders) != len(values):
        raise CIPError(f"statement has {len(holders)} placeholders but {len(values)} parameters")
    for tok, value in sorted(zip(holders, values, strict=True), key=lambda p: -p[0].start):
        sql = sql[: tok.start] + _literal(value).sql("duckdb") + sql[tok.end + 1 :]
    return sql


def _literal(v: Any) -> exp.Expression:
    if v is None:
        return exp.null()
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, float):  # a DOUBLE, as DuckDB binds it (a bare 1.5 would be a DECIMAL)
        return exp.cast(exp.Literal.number(repr(v)), "DOUBLE")
    if isinstance(v, int):
        return exp.Literal.number(str(v))
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return exp.cast(exp.Literal.string(v.isoformat(sep=" ")), "TIMESTAMP")
    if isinstance(v, dt.date):
        return exp.cast(exp.Literal.string(v.isoformat()), "DATE")
    if isinstance(v, str):
        return exp.Literal.string(v)
    raise CIPError(f"unsupported SQL parameter type {type(v).__name__}")


def _to_spark(tree: exp.Expression) -> str:
    for agg in tree.find_all(exp.ArrayAgg, exp.GroupConcat):
        if isinstance(agg.this, exp.Order) or agg.find(exp.Order):
            raise _Fallback("an ordered aggregate (Spark's collect_list has no ORDER BY)")
    try:
        return tree.sql("spark", unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise _Fallback(str(exc)) from None


def _renamed(src: exp.Expression, cols: list[str]) -> exp.Expression:
    """``src`` with its output columns named ``cols`` (by position)."""
    inner = src.copy()
    return exp.select("*").from_(
        exp.Subquery(
            this=inner,
            alias=exp.TableAlias(
                this=exp.to_identifier("_r"),
                columns=[exp.to_identifier(c, quoted=True) for c in cols],
            ),
        )
    )


def _is_catalog_query(tree: exp.Expression) -> bool:
    return any(
        (t.args.get("db") and t.db.lower() == "information_schema")
        for t in tree.find_all(exp.Table)
    )


def _normalise(t: pa.Table) -> pa.Table:
    """Types both Spark and DuckDB read back the same: naive UTC microseconds, no unsigned."""
    fields = []
    for f in t.schema:
        fields.append(pa.field(f.name, _norm_type(f.type)))
    target = pa.schema(fields)
    if target == t.schema:
        return t
    cols = []
    for col, f in zip(t.columns, target, strict=True):
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
        cols.append(col.cast(f.type))
    return pa.Table.from_arrays(cols, schema=target)


def _norm_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("us")
    if pa.types.is_dictionary(t):
        return _norm_type(t.value_type)
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_unsigned_integer(t):
        return pa.int64()
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_norm_type(t.value_type))
    return t


def _conform_arrow(t: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """``t`` with ``schema``'s columns, order and types (missing columns are NULL)."""
    t = _normalise(t)
    cols = []
    for f in schema:
        if f.name in t.column_names:
            col = t.column(f.name)
            try:
                cols.append(col.cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise CIPError(
                    f"column {f.name!r} of {name!r}: cannot store {col.type} as {f.type}: {exc}"
                ) from None
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _conform_spark(df: Any, schema: pa.Schema) -> Any:
    """Cast a Spark DataFrame to the Parquet table's columns and types."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    have = {c.lower(): c for c in df.columns}
    out = []
    for f in schema:
        st = from_arrow_type(f.type, prefer_timestamp_ntz=True)
        src = have.get(f.name.lower())
        col = F.col(f"`{src}`") if src is not None else F.lit(None)
        out.append(col.cast(st).alias(f.name))
    return df.select(*out)


def _rows_in(version: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in version.glob("*.parquet"))


_ARROW_TYPES = {
    "TEXT": pa.string(),
    "VARCHAR": pa.string(),
    "CHAR": pa.string(),
    "JSON": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMPNTZ": pa.timestamp("us"),
    "DATETIME": pa.timestamp("us"),
    "DATE": pa.date32(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "BIGINT": pa.int64(),
    "INT": pa.int32(),
    "SMALLINT": pa.int16(),
    "TINYINT": pa.int8(),
    "BOOLEAN": pa.bool_(),
    "BLOB": pa.binary(),
    "VARBINARY": pa.binary(),
}


def _arrow_schema(cols: list[exp.ColumnDef]) -> pa.Schema | None:
    """The Arrow schema of a CREATE TABLE's columns, or None for a type not mapped here."""
    fields = []
    for c in cols:
        kind = c.args.get("kind")
        t = _ARROW_TYPES.get(kind.this.name) if kind is not None and not kind.expressions else None
        if t is None:
            return None
        fields.append(pa.field(c.name, t))
    return pa.schema(fields)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy
        shutil.copy2(src, dst)


def _fsync_tree(d: Path) -> None:
    for f in d.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(d)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
