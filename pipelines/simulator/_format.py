"""Formatting helpers: messy e-mail and phone variants, ids and timestamps as Arrow arrays.

Variants are built once per person and picked per record through dictionary
indices, so formatting millions of records stays vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cip.pipelines.simulator._people import People
from cip.pipelines.simulator._world import _cat

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_UP = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on 64-bit integers (Steele et al., 2014)."""
    z = x.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hex_ids(x: np.ndarray, salt: int, *, width: int = 16, upper: bool = False) -> pa.Array:
    """Random-looking, unique hex strings for unique integers ``x``."""
    z = mix64(x, salt)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)[:width]
    nib = ((z[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.intp)
    chars = (_HEX_UP if upper else _HEX)[nib]
    return pa.array(np.ascontiguousarray(chars).view(f"S{width}").ravel()).cast(pa.string())


def prefixed(prefix: str, n: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded number, e.g. ``CRM-00000042``."""
    s = pc.utf8_lpad(pc.cast(pa.array(n, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "")


def strs(values: np.ndarray) -> pa.Array:
    """A numpy string array as Arrow strings (via objects: much faster than from ``<U``)."""
    return pa.array(np.asarray(values).astype(object), type=pa.string())


def const(value: str, n: int) -> pa.Array:
    """A (dictionary-encoded) string column holding ``value`` ``n`` times."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


@dataclass(frozen=True)
class Vocab:
    """Distinct strings converted to Arrow once, for many :func:`pick` calls.

    Dictionaries must not repeat a value: Parquet output of a dictionary with
    duplicate values is not byte-for-byte reproducible.
    """

    arrow: pa.Array  # distinct values
    code: np.ndarray  # int32 per original value: its position in ``arrow``
    empty: np.ndarray  # bool per original value: "" (picked as null)


def vocab(values: np.ndarray) -> Vocab:
    vals = np.asarray(values).astype(str)
    uniq, code = np.unique(vals, return_inverse=True)
    return Vocab(strs(uniq), code.astype(np.int32).ravel(), vals == "")


def pick(values: np.ndarray | Vocab, index: np.ndarray, *, as_dict: bool = False) -> pa.Array:
    """``values[index]`` as an Arrow string array; index -1 or an empty value gives null.

    With ``as_dict`` the result stays dictionary-encoded (cheap for millions of
    rows drawn from a few thousand values; Parquet stores it as plain strings).
    """
    voc = values if isinstance(values, Vocab) else vocab(values)
    idx = np.asarray(index)
    null = idx < 0
    safe = np.where(null, 0, idx)
    null |= voc.empty[safe]
    out = pa.DictionaryArray.from_arrays(pa.array(voc.code[safe], mask=null), voc.arrow)
    return out if as_dict else out.dictionary_decode()


def by_index(values: pa.Array, index: np.ndarray) -> pa.Array:
    """Dictionary-encoded ``values[index]``; index -1 gives null. ``values`` must be distinct."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.where(index < 0, 0, index).astype(np.int32), mask=index < 0), values
    )


def email_variants(people: People) -> np.ndarray:
    """Per person: lower, UPPER, padded, Title, plus-tagged and dot-less (gmail) spellings."""
    e = people.email
    local = np.char.partition(e, "@")[:, 0]
    domain = np.char.partition(e, "@")[:, 2]
    plus = np.where(people.gmail, _cat(local, "+shop@", domain), e)
    dotless = np.where(people.gmail, _cat(np.char.replace(local, ".", ""), "@", domain), e)
    return np.concatenate(
        [e, np.char.upper(e), _cat("  ", e, " "), np.char.title(e), plus, dotless]
    )


#: probabilities of the spellings above when a record types an e-mail
EMAIL_MESS = np.array([0.86, 0.04, 0.03, 0.02, 0.03, 0.02])


def email_index(rng: np.random.Generator, person: np.ndarray, n_people: int, p=EMAIL_MESS) -> np.ndarray:  # fmt: skip
    """Indices into :func:`email_variants`: how each record typed its person's e-mail."""
    v = np.searchsorted(np.cumsum(p), rng.random(len(person)) * p.sum())
    return np.minimum(v, len(p) - 1) * n_people + person


def messy_email(
    rng: np.random.Generator,
    variants: np.ndarray | Vocab,
    person: np.ndarray,
    n_people: int,
    p=EMAIL_MESS,
) -> pa.Array:
    """The e-mail of ``person`` as some record typed it."""
    return pick(variants, email_index(rng, person, n_people, p))


def phone_variants(phone: np.ndarray) -> np.ndarray:
    """Per national number ``07xxxxxxxxx``: five national and international spellings.

    Returns an array of ``5 * len(phone)`` strings (variant-major); empty in, empty out.
    """
    chars = np.char.zfill(phone, 11).astype("<U11").view("<U1").reshape(-1, 11)
    area = np.ascontiguousarray(chars[:, :5]).view("<U5").ravel()  # 07912
    nsn4 = np.ascontiguousarray(chars[:, 1:5]).view("<U4").ravel()  # 7912
    local = np.ascontiguousarray(chars[:, 5:]).view("<U6").ravel()  # 345678
    variants = np.concatenate(
        [
            _cat(area, " ", local),  # 07912 345678
            _cat(area, local),  # 07912345678
            _cat("+44 ", nsn4, " ", local),  # +44 7912 345678
            _cat("+44", nsn4, local),  # +447912345678
            _cat("0044 ", nsn4, " ", local),  # 0044 7912 345678
        ]
    )
    return np.where(np.tile(phone == "", 5), "", variants)


#: probabilities of the phone spellings above
PHONE_MESS = np.array([0.35, 0.2, 0.25, 0.12, 0.08])


def phone_index(rng: np.random.Generator, person: np.ndarray, n_people: int) -> np.ndarray:
    """Indices into :func:`phone_variants`: how each record typed its person's phone."""
    v = np.searchsorted(np.cumsum(PHONE_MESS), rng.random(len(person)) * PHONE_MESS.sum())
    return np.minimum(v, 4) * n_people + person


def messy_phone(
    rng: np.random.Generator, variants: np.ndarray | Vocab, person: np.ndarray, n_people: int
) -> pa.Array:
    """The phone of ``person`` as some record typed it (null when the person has none)."""
    return pick(variants, phone_index(rng, person, n_people))


def timestamps(t0: int, sec: np.ndarray) -> pa.Array:
    """Native timestamps (second precision, naive UTC) for Parquet."""
    return pa.array(t0 + sec.astype(np.int64), type=pa.timestamp("s")).cast(pa.timestamp("ms"))


def iso(t0: int, sec: np.ndarray, sep: str = "T", suffix: str = "") -> pa.Array:
    """ISO-8601 strings ``YYYY-MM-DD<sep>HH:MM:SS<suffix>``; negative ``sec`` stays valid."""
    s = pc.cast(pa.array(t0 + sec.astype(np.int64), type=pa.timestamp("s")), pa.string())
    if sep != " ":
        s = pc.replace_substring(s, " ", sep)
    return pc.binary_join_element_wise(s, suffix, "") if suffix else s


def uk_datetime(t0: int, sec: np.ndarray) -> pa.Array:
    """``DD/MM/YYYY HH:MM:SS`` (a till system's export format)."""
    s = iso(t0, sec, sep=" ")
    sl = pc.utf8_slice_codeunits
    return pc.binary_join_element_wise(
        sl(s, 8, 10), "/", sl(s, 5, 7), "/", sl(s, 0, 4), " ", sl(s, 11, 19), ""
    )


def bad_rows(rng: np.random.Generator, n: int, rate: float = 0.001) -> np.ndarray:
    """A mask of deliberately broken rows: about ``rate``, at least one when ``n > 0``."""
    mask = rng.random(n) < rate
    if n and not mask.any():
        mask[rng.integers(0, n)] = True
    return mask


def set_where(arr: pa.Array, mask: np.ndarray, value: str | None) -> pa.Array:
    """``arr`` with the rows in ``mask`` replaced by ``value`` (a string or null)."""
    return pc.if_else(pa.array(mask), pa.scalar(value, arr.type), arr)


class Counters:
    """Running id counters, carried across chunks so ids stay unique and sequential."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def take(self, name: str, k: int) -> np.ndarray:
        start = self._next.get(name, 1)
        self._next[name] = start + k
        return np.arange(start, start + k, dtype=np.int64)
