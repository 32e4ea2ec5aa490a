"""Profiles: data contracts, the store, identity resolution and unified profiles."""

from __future__ import annotations

from typing import Any

# identity resolution (imported lazily: ``import profiles`` stays light)
_IDENTITY = (
    "unify",
    "UnifyResult",
    "IdentityOptions",
    "FuzzyOptions",
    "ForbiddenLink",
    "resolve_identities",
    "pairwise_scores",
    "forbid_link",
    "allow_link",
    "person_report",
    "identity_status",
    "identity_history",
)

# privacy: erasure and access requests (also lazy)
_PRIVACY = {
    "erase_persons": "cip.profiles.erasure",
    "ErasureReport": "cip.profiles.erasure",
    "rewrite_duckdb": "cip.profiles.erasure",
    "vacuum_postgres": "cip.profiles.erasure",
    "export_person": "cip.profiles.access",
    "Suppressor": "cip.profiles._suppress",
}

__all__ = [*_IDENTITY, *_PRIVACY]


def __getattr__(name: str) -> Any:
    if name in _IDENTITY:
        from cip.profiles import identity

        return getattr(identity, name)
    if name in _PRIVACY:
        import importlib

        return getattr(importlib.import_module(_PRIVACY[name]), name)
    raise AttributeError(f"module 'profiles' has no attribute {name!r}")
