"""Serving: the BentoML HTTP service and its building blocks.

The service itself is :class:`serving.service.CIPService` (imported lazily, so
this package does not import BentoML until it serves). Public building blocks:

* :class:`ServingSettings` / :class:`ServingOptions` — configuration;
* :class:`KeyStore` — API keys (hashes only) with scopes;
* :func:`open_session_store` — the in-process or Redis session store;
* :func:`record_erasure` — make every running worker stop serving a person at once;
* :func:`source_declaration` — the ``http_events`` source for ``cip.yaml``.
"""

from cip.serving.auth import SCOPES, KeyStore
from cip.serving.erasure import record_erasure
from cip.serving.events import SOURCE_NAME, EventSink, source_declaration
from cip.serving.session_store import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    open_session_store,
)
from cip.serving.settings import SETTINGS_ENV, ServingOptions, ServingSettings

__all__ = [
    "SCOPES",
    "SETTINGS_ENV",
    "SOURCE_NAME",
    "EventSink",
    "KeyStore",
    "MemorySessionStore",
    "RedisSessionStore",
    "ServingOptions",
    "ServingSettings",
    "SessionStore",
    "open_session_store",
    "record_erasure",
    "source_declaration",
]
