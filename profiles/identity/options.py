"""Options of identity resolution (the library side of ``cip.yaml``'s ``identity:``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cip.profiles.errors import ConfigError
from cip.profiles.identity.normalise import ID_TYPES

__all__ = ["IdentityOptions", "FuzzyOptions", "ForbiddenLink", "FUZZY_KINDS", "parse_identifier"]

#: Field kinds for probabilistic matching and the Splink comparison each one uses.
FUZZY_KINDS: tuple[str, ...] = ("name", "date", "text", "postcode", "email", "phone", "exact")

_DEFAULT_LIMITS = {"customer_id": 1, "email": 3, "phone": 3, "loyalty_id": 3, "anonymous_id": 3}


def parse_identifier(text: str) -> tuple[str, str]:
    """``"email:ann@x.com"`` -> ``("email", "ann@x.com")`` with a clear error otherwise."""
    id_type, sep, value = str(text).partition(":")
    id_type = id_type.strip()
    if not sep or id_type not in ID_TYPES or not value.strip():
        raise ConfigError(
            f"identifier {text!r} must be TYPE:VALUE with TYPE one of {', '.join(ID_TYPES)}"
        )
    return id_type, value.strip()


@dataclass(frozen=True)
class ForbiddenLink:
    """Never link ``a`` and ``b`` (``TYPE:VALUE``); with ``b`` None never use ``a`` at all."""

    a: str
    b: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        parse_identifier(self.a)
        if self.b is not None:
            parse_identifier(self.b)


@dataclass(frozen=True)
class FuzzyOptions:
    """Probabilistic matching of ``customers`` records with Splink (off unless enabled)."""

    enabled: bool = False
    fields: Mapping[str, str] = field(
        default_factory=lambda: {
            "first_name": "name",
            "last_name": "name",
            "date_of_birth": "date",
            "postcode": "postcode",
            "email": "email",
        }
    )
    threshold: float = 0.95
    max_pairs_u: float = 1e7
    seed: int = 42

    def __post_init__(self) -> None:
        bad = {c: k for c, k in self.fields.items() if k not in FUZZY_KINDS}
        if bad:
            raise ConfigError(f"unknown fuzzy field kinds {bad}; expected {', '.join(FUZZY_KINDS)}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"fuzzy threshold must be in (0, 1), got {self.threshold}")


@dataclass(frozen=True)
class IdentityOptions:
    """Everything :func:`profiles.identity.unify` needs besides the store.

    Attributes mirror ``IdentityConfig`` in ``cip.yaml``; see its documentation.
    ``id_salt`` is the secret seed of new unified ids the first time a store is
    unified (then kept in the store): the same seed on the same records gives
    the same ids, so a store rebuilt from its sources keeps its persons' ids.
    Without it a random seed is drawn.
    """

    default_region: str = "GB"
    email_strip_plus: bool = True
    email_dot_providers: tuple[str, ...] = ("gmail.com", "googlemail.com")
    email_domain_aliases: Mapping[str, str] = field(
        default_factory=lambda: {"googlemail.com": "gmail.com"}
    )
    phone_validation: str = "valid"
    max_persons_per_identifier: Mapping[str, int] = field(
        default_factory=lambda: dict(_DEFAULT_LIMITS)
    )
    forbidden_links: tuple[ForbiddenLink, ...] = ()
    survivorship: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fuzzy: FuzzyOptions = field(default_factory=FuzzyOptions)
    memory_limit: str = "2GB"
    id_salt: str | None = field(default=None, repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> IdentityOptions:
        """Build from a plain mapping (e.g. ``CIPConfig.identity.model_dump()``)."""
        d = dict(data or {})
        if "forbidden_links" in d:
            d["forbidden_links"] = tuple(
                f if isinstance(f, ForbiddenLink) else ForbiddenLink(**f)
                for f in d["forbidden_links"]
            )
        if "email_dot_providers" in d:
            d["email_dot_providers"] = tuple(d["email_dot_providers"])
        if "survivorship" in d:
            d["survivorship"] = {k: tuple(v) for k, v in d["survivorship"].items()}
        if isinstance(d.get("fuzzy"), Mapping):
            d["fuzzy"] = FuzzyOptions(**d["fuzzy"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown identity options: {sorted(unknown)}")
        return cls(**d)

    def normaliser_kwargs(self) -> dict[str, Any]:
        return {
            "region": self.default_region,
            "email_strip_plus": self.email_strip_plus,
            "email_dot_providers": self.email_dot_providers,
            "email_domain_aliases": dict(self.email_domain_aliases),
            "phone_validation": self.phone_validation,
        }

    def normaliser_fingerprint(self) -> str:
        """Changes when normalisation changes (then stored nodes must be rebuilt)."""
        blob = json.dumps(self.normaliser_kwargs(), sort_keys=True, default=list)
        return hashlib.md5(blob.encode()).hexdigest()

    def limits(self) -> list[int | None]:
        return [self.max_persons_per_identifier.get(t) for t in ID_TYPES]

    def __post_init__(self) -> None:
        if self.phone_validation not in ("valid", "possible"):
            raise ConfigError("phone_validation must be 'valid' or 'possible'")
        bad = {
            k: v for k, v in self.max_persons_per_identifier.items() if k not in ID_TYPES or v < 1
        }
        if bad:
            raise ConfigError(f"max_persons_per_identifier: bad entries {bad}")
