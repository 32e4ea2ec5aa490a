"""Exports and pages: consent per purpose, erasure, changes, formats, atomic writes, cursors."""

from __future__ import annotations

import json

import cip.activation.export as export_mod
import pandas as pd
import pytest
from _segment_data import A1, A2, EVERYONE, new_store
from cip.activation import (
    SegmentDefinition,
    build_segments,
    export_segment,
    segment_page,
)
from cip.profiles.errors import DataError, NotFoundError, PrivacyError

# email consent: u1 yes, u2 yes, u3 NULL, u4 no, u5 yes without e-mail, u6 yes, u8 yes


def built(**kw):
    store = new_store(**kw)
    build_segments(store, [EVERYONE], A1)
    return store


def read(path, fmt) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_export_only_consenting_members_with_contact(tmp_path, fmt):
    store = built()
    out = tmp_path / f"everyone.{fmt}"
    rep = export_segment(store, "everyone", out, fmt)
    df = read(out, fmt)
    assert list(df["unified_id"]) == ["u1", "u2", "u6"]
    assert list(df["email"]) == ["u1@example.com", "u2@example.com", "u6@example.com"]
    assert list(df.columns) == [
        "segment",
        "as_of",
        "unified_id",
        "customer_id",
        "email",
        "score",
        "reasons",
        "model_version",
    ]
    assert list(df["score"]) == [1000.0, 500.0, 800.0]
    reasons = df["reasons"].iloc[0]
    assert (json.loads(reasons) if fmt == "csv" else list(reasons)) == ["RFM segment Champions"]
    assert (rep.candidates, rep.exported, rep.no_consent, rep.no_contact, rep.erased) == (
        6,
        3,
        2,
        1,
        0,
    )
    assert rep.purpose == "email" and "phone" not in df.columns
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_sms_purpose_needs_sms_consent_and_a_phone(tmp_path):
    store = built()
    rep = export_segment(store, "everyone", tmp_path / "s.csv", "csv", purpose="sms")
    df = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert list(df["unified_id"]) == ["u1"] and list(df["phone"]) == ["+441234567801"]
    assert rep.exported == 1 and "email" not in df.columns


def test_erased_never_exported_nor_paged(tmp_path):
    store = built()
    store.load_arrow(
        "erased", pd.DataFrame({"unified_id": ["u2"], "erased_at": [A2]}), mode="replace"
    )
    rep = export_segment(store, "everyone", tmp_path / "e.csv", "csv")
    assert list(pd.read_csv(tmp_path / "e.csv")["unified_id"]) == ["u1", "u6"]
    assert rep.erased == 1
    rows, _ = segment_page(store, "everyone", limit=10)
    assert [r["unified_id"] for r in rows] == ["u1", "u6"]


def test_changes_exports_entered_and_exited(tmp_path):
    store = new_store()
    champions = SegmentDefinition(
        name="champions", kind="rfm", rfm_segments=["Champions"], purpose="email", score="monetary"
    )
    loyal = SegmentDefinition(name="loyal", kind="rfm", rfm_segments=["Loyal"], purpose="email")
    build_segments(store, [champions, loyal], A1)
    build_segments(store, [champions, loyal], A2)
    export_segment(store, "champions", tmp_path / "x.jsonl", "jsonl", changes="exited")
    df = pd.read_json(tmp_path / "x.jsonl", lines=True)
    # u1 left Champions at A2; the row carries the A1 membership's score and reasons
    assert list(df["unified_id"]) == ["u1"] and list(df["change"]) == ["exited"]
    assert df["score"][0] == 1000.0 and list(df["reasons"][0]) == ["RFM segment Champions"]
    assert pd.Timestamp(df["as_of"][0]) == A2 and pd.Timestamp(df["previous_as_of"][0]) == A1
    rep = export_segment(store, "loyal", tmp_path / "y.csv", "csv", changes="entered")
    assert list(pd.read_csv(tmp_path / "y.csv")["unified_id"]) == ["u1"] and rep.exported == 1


def test_no_profiles_means_nothing_exportable(tmp_path):
    store = built(identity=False)
    rep = export_segment(store, "everyone", tmp_path / "n.csv", "csv")
    assert rep.exported == 0 and rep.no_consent == 6 and "cip unify" in rep.notes[0]
    assert pd.read_csv(tmp_path / "n.csv").empty
    assert segment_page(store, "everyone", 10) == ([], None)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    store = built()
    out = tmp_path / "keep.csv"
    out.write_text("old export\n")

    def broken(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(export_mod.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        export_segment(store, "everyone", out, "csv")
    assert out.read_text() == "old export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


def test_purpose_is_required_and_segment_must_exist(tmp_path):
    store = new_store()
    nopurpose = SegmentDefinition(name="np", kind="rfm", rfm_segments=["Loyal"])
    build_segments(store, [nopurpose], A1)
    with pytest.raises(PrivacyError, match="no purpose"):
        export_segment(store, "np", tmp_path / "a.csv", "csv")
    with pytest.raises(PrivacyError):
        segment_page(store, "np", 10)
    assert export_segment(store, "np", tmp_path / "a.csv", "csv", purpose="email").exported == 1
    with pytest.raises(NotFoundError, match="'nope'.*built segments: np"):
        export_segment(store, "nope", tmp_path / "b.csv", "csv")


def test_pages_are_keyset_paginated_and_pinned_to_their_snapshot():
    store = built()
    rows, cur = segment_page(store, "everyone", limit=2)
    assert [r["unified_id"] for r in rows] == ["u1", "u2"] and cur
    assert (
        rows[0]["reasons"] == ["RFM segment Champions"]
        and rows[0]["as_of"] == "2024-03-01T00:00:00"
    )
    assert rows[0]["email"] == "u1@example.com" and rows[0]["customer_id"] == "c1"
    build_segments(store, [EVERYONE], A2)  # a new build lands between two pages
    rows2, cur2 = segment_page(store, "everyone", limit=2, cursor=cur)
    assert [r["unified_id"] for r in rows2] == ["u6"] and cur2 is None
    assert rows2[0]["as_of"] == "2024-03-01T00:00:00"
    fresh, _ = segment_page(store, "everyone", limit=10)  # a new paging sees A2 (u8 joined)
    assert [r["unified_id"] for r in fresh] == ["u1", "u2", "u6", "u8"]
    with pytest.raises(DataError, match="cursor"):
        segment_page(store, "everyone", limit=2, cursor="garbage!")
