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
)

__all__ = [*_IDENTITY]


def __getattr__(name: str) -> Any:
    if name in _IDENTITY:
        from profiles import identity

        return getattr(identity, name)
    raise AttributeError(f"module 'profiles' has no attribute {name!r}")
