"""Data for the recommender benchmarks: UCI Online Retail (real shop) and MovieLens 100K.

Online Retail is read straight from the parquet files in ``../shared/data`` (both
files combined, the 2010-12-01..09 overlap taken from the second file only,
guest lines, non-product StockCodes, credit notes, non-positive quantities and
prices dropped). MovieLens 100K (GroupLens, 943 users x 1,682 movies, 100,000
ratings) is not shipped with CIP and there is no internet at run time: the
``recbole`` wheel on PyPI ships it as ``recbole/dataset_example/ml-100k/
ml-100k.inter``, so the loader reads that file out of the wheel (fetched with
``pip download recbole==1.2.1 --no-deps``, never installed).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pandas as pd


def _shared() -> Path:
    """``$CIP_SHARED``, else the first ``shared/`` folder beside the repository or above it."""
    if os.environ.get("CIP_SHARED"):
        return Path(os.environ["CIP_SHARED"])
    for parent in Path(__file__).resolve().parents[1:]:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared"
    return Path(__file__).resolve().parents[2] / "shared"


SHARED = _shared()
RETAIL_DIR = SHARED / "data" / "online_retail"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
CACHE = Path(os.environ.get("CIP_BENCH_CACHE", Path.home() / ".cache" / "cip-benchmarks"))


def online_retail(data_dir: Path = RETAIL_DIR) -> pd.DataFrame:
    """Purchase lines ``user_id, item_id, weight, ts`` of identified customers (weight 1 per line)."""
    f1 = data_dir / "online_retail_II_2009_2010.parquet"
    f2 = data_dir / "online_retail_2010_2011.parquet"
    if not (f1.is_file() and f2.is_file()):
        raise SystemExit(f"Online Retail parquet files not found in {data_dir}")
    sql = f"""
    WITH raw AS (
      SELECT Invoice AS invoice, StockCode AS code, Quantity AS qty, Price AS price,
             CAST(InvoiceDate AS TIMESTAMP) AS ts, CAST("Customer ID" AS BIGINT) AS customer
      FROM read_parquet('{f1}') WHERE CAST(InvoiceDate AS TIMESTAMP) < TIMESTAMP '2010-12-01'
      UNION ALL
      SELECT InvoiceNo, StockCode, Quantity, UnitPrice, InvoiceDate, CAST(CustomerID AS BIGINT)
      FROM read_parquet('{f2}')
    )
    SELECT customer AS user_id, upper(trim(code)) AS item_id, 1.0 AS weight, ts
    FROM raw
    WHERE customer IS NOT NULL AND regexp_matches(code, '[0-9]')
      AND NOT starts_with(upper(invoice), 'C') AND qty > 0 AND price > 0
    ORDER BY ts
    """
    return duckdb.connect().sql(sql).df()


def _recbole_wheel() -> Path:
    for folder in (CACHE, Path("/tmp/recbole_dl")):
        if (folder / RECBOLE_WHEEL).is_file():
            return folder / RECBOLE_WHEEL
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"fetching {RECBOLE_WHEEL} from PyPI into {CACHE} (data only, not installed)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(CACHE),
            "recbole==1.2.1",
        ],
        check=True,
    )
    return CACHE / RECBOLE_WHEEL


def movielens_100k(path: Path | None = None) -> pd.DataFrame:
    """MovieLens 100K as implicit feedback: every rating is an interaction (``user_id, item_id, ts``)."""
    src = Path(path) if path else _recbole_wheel()
    if src.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(src) as z:
            raw = z.read(ML100K_MEMBER)
    else:
        raw = src.read_bytes()
    df = pd.read_csv(io.BytesIO(raw), sep="\t")
    df.columns = ["user_id", "item_id", "rating", "ts"]
    df["ts"] = pd.to_datetime(df["ts"], unit="s")
    return df[["user_id", "item_id", "rating", "ts"]]


def online_retail_baskets(data_dir: Path = RETAIL_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Online Retail as order lines and a derived product table, for the block benchmarks.

    Lines: ``user_id, order_id, item_id, ts`` (identified customers, same filters as
    :func:`online_retail`). Products: ``item_id, title, category, price`` where
    ``title`` is the item's most frequent description, ``price`` its median unit
    price and ``category`` the first three characters of the StockCode (the shop's
    numbering puts one product family in one range: 2247x are TV dinner trays);
    the data set has no category of its own.
    """
    f1 = data_dir / "online_retail_II_2009_2010.parquet"
    f2 = data_dir / "online_retail_2010_2011.parquet"
    if not (f1.is_file() and f2.is_file()):
        raise SystemExit(f"Online Retail parquet files not found in {data_dir}")
    con = duckdb.connect()
    con.execute(f"""
    CREATE TEMP TABLE raw AS
    WITH r AS (
      SELECT Invoice AS invoice, StockCode AS code, Description AS descr, Quantity AS qty,
             Price AS price, CAST(InvoiceDate AS TIMESTAMP) AS ts,
             CAST("Customer ID" AS BIGINT) AS customer
      FROM read_parquet('{f1}') WHERE CAST(InvoiceDate AS TIMESTAMP) < TIMESTAMP '2010-12-01'
      UNION ALL
      SELECT InvoiceNo, StockCode, Description, Quantity, UnitPrice, InvoiceDate,
             CAST(CustomerID AS BIGINT)
      FROM read_parquet('{f2}')
    )
    SELECT CAST(customer AS VARCHAR) AS user_id, invoice AS order_id,
           upper(trim(code)) AS item_id, ts, price, trim(descr) AS descr
    FROM r
    WHERE customer IS NOT NULL AND regexp_matches(code, '[0-9]')
      AND NOT starts_with(upper(invoice), 'C') AND qty > 0 AND price > 0
    """)
    lines = con.sql("SELECT user_id, order_id, item_id, ts FROM raw ORDER BY ts, order_id").df()
    products = con.sql("""
      WITH d AS (SELECT item_id, descr, count(*) AS n FROM raw WHERE descr IS NOT NULL GROUP BY ALL),
           p AS (SELECT item_id, median(price) AS price FROM raw GROUP BY item_id)
      SELECT p.item_id, arg_max(d.descr, d.n) AS title, left(p.item_id, 3) AS category,
             any_value(p.price) AS price
      FROM p LEFT JOIN d USING (item_id) GROUP BY p.item_id ORDER BY p.item_id
    """).df()
    return lines, products
