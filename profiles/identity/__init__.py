"""Identity resolution: normalised identifiers, the identity graph, unified profiles.

Public API:

* :func:`unify` resolves the store's raw records into persons (``record_map``,
  ``identity_*`` tables, ``profiles``), incrementally by default;
* :func:`resolve_identities` resolves any DataFrame of person records
  (deterministic and probabilistic matching);
* operator tools: :func:`forbid_link`, :func:`allow_link`, :func:`person_report`,
  :func:`identity_status`; quality: :func:`pairwise_scores`.
"""

from cip.profiles.identity._fuzzy import resolve_identities
from cip.profiles.identity._metrics import pairwise_scores
from cip.profiles.identity._unify import UnifyResult, unify
from cip.profiles.identity.admin import (
    allow_link,
    forbid_link,
    forbidden_links,
    identity_history,
    identity_status,
    person_report,
)
from cip.profiles.identity.normalise import (
    normalise_email,
    normalise_id,
    normalise_identifier,
    normalise_phone,
)
from cip.profiles.identity.options import FUZZY_KINDS, ForbiddenLink, FuzzyOptions, IdentityOptions

__all__ = [
    "unify",
    "UnifyResult",
    "IdentityOptions",
    "FuzzyOptions",
    "ForbiddenLink",
    "FUZZY_KINDS",
    "resolve_identities",
    "pairwise_scores",
    "normalise_email",
    "normalise_phone",
    "normalise_id",
    "normalise_identifier",
    "forbid_link",
    "allow_link",
    "forbidden_links",
    "person_report",
    "identity_status",
    "identity_history",
]
