"""Shared fixtures.

Service-backed fixtures (PostgreSQL, MariaDB, Redis, Spark) skip with the reason on a
laptop without the service, but FAIL when ``CI=true``: CI must test them.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("CIP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("CIP_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("CIP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHARED = Path(os.environ.get("CIP_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def unavailable(reason: str) -> None:
    """Skip outside CI, fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: services must be available)")
    pytest.skip(reason)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url() -> str:
    if not _port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL is not reachable at 127.0.0.1:5432")
    return PG_URL


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped after the test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def mariadb_url() -> str:
    """The local MariaDB (MySQL) server's test database; fails instead of skipping in CI."""
    from urllib.parse import urlparse

    u = urlparse(MARIADB_URL)
    if not _port_open(u.hostname or "127.0.0.1", u.port or 3306):
        unavailable(f"MariaDB is not reachable at {u.hostname}:{u.port or 3306}")
    return MARIADB_URL


@pytest.fixture
def redis_url() -> str:
    if not _port_open("127.0.0.1", 6379):
        unavailable("Redis is not reachable at 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (start-up costs ~10 s)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        unavailable("pyspark is not installed (pip install '.[spark]')")
    if not any(Path(p, "java").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        unavailable("Java is not installed (Spark needs Java 17)")
    # Python workers (pandas / MLflow UDFs) run this interpreter, not whatever python3 is
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("cip-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture
def shared_data() -> Path:
    """The real data sets beside the repository (../shared/data)."""
    d = SHARED / "data"
    if not d.is_dir():
        unavailable(f"real data folder {d} is absent")
    return d


@pytest.fixture
def tmp_workspace(tmp_path: Path):
    from cip.pipelines.workspace import Workspace

    return Workspace.init(tmp_path / "ws")


@pytest.fixture(params=["duckdb", "postgres"])
def any_store(request):
    """A fresh store of each backend (PostgreSQL: in a schema dropped afterwards)."""
    from cip.profiles.store import open_store

    kw = {}
    if request.param == "postgres":
        kw = {
            "url": request.getfixturevalue("pg_url"),
            "schema": request.getfixturevalue("pg_schema"),
        }
    with open_store(request.param, **kw) as store:
        yield store


CHROMIUM = "/usr/bin/chromium"  # Debian's chromium (make install-dev installs it)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """One headless Debian chromium per test module (playwright drives it, never downloads one)."""
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (make install-dev installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (make install-dev)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()
