"""Ingest-time suppression of erased persons: rows carrying a tombstoned identifier.

Tombstones hold keyed hashes only, so ingestion normalises each *distinct*
identifier value of the load in SQL (the identity resolver's e-mail rule,
trimmed ids, the cleaned phone candidate), hashes it with the workspace key in
SQL (HMAC-SHA256, :func:`profiles._person_sql.hmac_sql`) and compares. Bad rows
bound for quarantine are checked through the tokens of their raw record.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from cip.profiles._person_sql import (
    ID_KINDS,
    forms_sql,
    hmac_sql,
    install_key,
    tokens_sql,
    value_forms_sql,
)
from cip.profiles.store import Store

__all__ = ["Suppressor"]

log = logging.getLogger(__name__)


class Suppressor:
    """Tells which rows of a load belong to erased persons.

    Args:
        salt: the workspace salt (the key of the tombstone hashes).
        hashes: ``(identifier_type, identifier_hash)`` tombstones.
        normaliser: :meth:`IdentityOptions.normaliser_kwargs` of the workspace.
    """

    def __init__(
        self, salt: bytes, hashes: Sequence[tuple[str, str]], normaliser: Mapping[str, Any]
    ) -> None:
        self.salt = salt
        self.hashes = sorted({(str(t), str(h)) for t, h in hashes if t in ID_KINDS})
        self.kw = dict(normaliser)

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def from_store(
        cls, store: Store, salt: bytes, normaliser: Mapping[str, Any] | None = None
    ) -> Suppressor | None:
        """The store's tombstones as a suppressor; None when nothing was ever erased."""
        if not store.has_table("_tombstones"):
            return None
        df = store.sql("SELECT DISTINCT identifier_type, identifier_hash FROM _tombstones")
        sup = cls(
            salt,
            list(zip(df["identifier_type"], df["identifier_hash"], strict=True)),
            normaliser or {},
        )
        return sup if len(sup) else None

    def _setup(self, con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
        key = install_key(con, self.salt)
        tomb = f"_cip_tomb_{uuid.uuid4().hex[:8]}"
        data = pa.table(
            {
                "kind": pa.array([t for t, _ in self.hashes], pa.string()),
                "hash": pa.array([h for _, h in self.hashes], pa.string()),
            }
        )
        con.register(f"{tomb}_arrow", data)
        con.execute(f"CREATE TEMP TABLE {tomb} AS SELECT * FROM {tomb}_arrow")
        con.unregister(f"{tomb}_arrow")
        return key, tomb

    def mark_rows(
        self, con: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[str]
    ) -> str:
        """SQL predicate over ``relation``'s columns: the row carries an erased identifier.

        Creates the temporary table ``<relation>_sup(kind, raw)`` of the erased raw
        values found in ``relation`` (drop it with :meth:`cleanup`).
        """
        kinds = [k for k in ID_KINDS if k in columns]
        target = f"{relation}_sup"
        con.execute(f"DROP TABLE IF EXISTS {target}")
        if not kinds:
            con.execute(f"CREATE TEMP TABLE {target} (kind VARCHAR, raw VARCHAR)")
            return "FALSE"
        key, tomb = self._setup(con)
        try:
            values = " UNION ".join(
                f"SELECT DISTINCT '{k}' AS kind, CAST({k} AS VARCHAR) AS raw FROM {relation} "
                f"WHERE {k} IS NOT NULL"
                for k in kinds
            )
            con.execute(
                f"CREATE TEMP TABLE {target} AS SELECT DISTINCT f.kind, f.raw FROM "
                f"({value_forms_sql('(' + values + ')', self.kw)}) f CROSS JOIN {key} "
                f"JOIN {tomb} t ON t.kind = f.kind AND t.hash = {hmac_sql('f.kind', 'f.form', key)}"
            )
        finally:
            con.execute(f"DROP TABLE IF EXISTS {key}")
            con.execute(f"DROP TABLE IF EXISTS {tomb}")
        if "phone" in kinds:
            self._odd_phones(con, relation, target)
        # a NULL identifier is "not erased", never unknown: the row must load
        return (
            "coalesce("
            + " OR ".join(
                f"CAST({k} AS VARCHAR) IN (SELECT raw FROM {target} WHERE kind = '{k}')"
                for k in kinds
            )
            + ", FALSE)"
        )

    def _odd_phones(self, con: duckdb.DuckDBPyConnection, relation: str, target: str) -> None:
        """Phones SQL cannot put in international form (no ``+``): ``phonenumbers`` decides.

        Usually a handful of distinct values (numbers written without trunk or
        international prefix), so the exact E.164 form is computed for them only.
        """
        phones = {h for t, h in self.hashes if t == "phone"}
        if not phones:
            return
        clean = forms_sql("phone", "raw", self.kw)
        odd = con.sql(
            f"SELECT DISTINCT raw, cleaned FROM (SELECT raw, {clean} AS cleaned FROM (SELECT "
            f"DISTINCT CAST(phone AS VARCHAR) AS raw FROM {relation} WHERE phone IS NOT NULL)) "
            "WHERE cleaned IS NOT NULL AND NOT starts_with(cleaned, '+')"
        ).df()
        if odd.empty:
            return
        from cip.profiles.identity.normalise import e164
        from cip.profiles.privacy import hash_identifier

        forms = e164(
            odd["cleaned"].astype("string"),
            region=self.kw.get("region", "GB"),
            validation=self.kw.get("phone_validation", "valid"),
        )
        hit = [
            isinstance(v, str) and hash_identifier("phone", v, self.salt) in phones
            for v in forms.astype(object).where(forms.notna(), None)
        ]
        raws = odd.loc[hit, "raw"].astype(str).tolist()
        if raws:
            con.register(f"{target}_odd", pa.table({"raw": pa.array(raws, pa.string())}))
            con.execute(f"INSERT INTO {target} SELECT 'phone', raw FROM {target}_odd")
            con.unregister(f"{target}_odd")

    def mark_records(
        self, con: duckdb.DuckDBPyConnection, relation: str, key_col: str, text_col: str
    ) -> str:
        """SQL predicate over ``relation``: its raw record text holds an erased identifier.

        Creates ``<relation>_supq(k)`` (drop it with :meth:`cleanup`).
        """
        target = f"{relation}_supq"
        con.execute(f"DROP TABLE IF EXISTS {target}")
        key, tomb = self._setup(con)
        try:
            con.execute(
                f"CREATE TEMP TABLE {target} AS SELECT DISTINCT f.{key_col} AS k FROM "
                f"({tokens_sql(relation, key_col, text_col, self.kw)}) f CROSS JOIN {key} "
                f"JOIN {tomb} t ON t.kind = f.kind AND t.hash = {hmac_sql('f.kind', 'f.form', key)}"
            )
        finally:
            con.execute(f"DROP TABLE IF EXISTS {key}")
            con.execute(f"DROP TABLE IF EXISTS {tomb}")
        return f"coalesce({key_col} IN (SELECT k FROM {target}), FALSE)"

    @staticmethod
    def cleanup(con: duckdb.DuckDBPyConnection, relation: str) -> None:
        for suffix in ("_sup", "_supq"):
            con.execute(f"DROP TABLE IF EXISTS {relation}{suffix}")
