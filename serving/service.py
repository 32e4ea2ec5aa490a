"""The CIP BentoML service: ``bentoml serve serving.service:CIPService`` or ``cip serve``.

One class service; every endpoint takes a typed pydantic body and is
protected by an API key scope (:mod:`serving.auth`). The OpenAPI document at
``/docs.json`` (committed as ``serving/openapi.json``) carries the version,
both ways to send a key and every error answer (:mod:`serving.openapi`). Health (``/livez``, ``/readyz``) and Prometheus
``/metrics`` come from BentoML; ``/readyz`` answers 200 once the first state
(champion model + store snapshot) is loaded.

Configuration comes from the environment, read when a worker starts
(:meth:`serving.settings.ServingSettings.load`): ``CIP_SERVING_SETTINGS`` (JSON,
set by ``cip serve``), else ``CIP_SERVING_SETTINGS_FILE`` (a JSON file), else
``CIP_WORKSPACE`` (the settings the last ``cip serve`` saved in that workspace).
The service never imports ``pipelines``. ``CIP_SERVE_WORKERS`` sets the worker count.

Errors: bad input is a 400 naming the field (pydantic) or the problem
(``profiles.errors``: not found 404, privacy 403); a state still loading is a
503; an unexpected failure is a 500 carrying the request id of the log line.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml
from cip.profiles.errors import CIPError, NotFoundError, PrivacyError
from cip.profiles.privacy import RedactingFilter
from cip.serving import engine
from cip.serving._segments import segment_page, segment_sizes
from cip.serving.auth import AuthMiddleware, KeyStore, RequestIdFilter, request_id
from cip.serving.erasure import record_erasure
from cip.serving.events import ValidEvent, validate_events
from cip.serving.openapi import DESCRIPTION, DocumentedService
from cip.serving.schemas import (
    EventsRequest,
    EventsResponse,
    ForgetRequest,
    ForgetResponse,
    RecommendRequest,
    RecommendResponse,
    RejectedEvent,
    ReloadRequest,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
    SegmentInfo,
    SegmentMember,
    SegmentMembersRequest,
    SegmentMembersResponse,
    SegmentsRequest,
    SegmentsResponse,
    SimilarItemsRequest,
    SimilarItemsResponse,
)
from cip.serving.session_store import SessionStore
from cip.serving.settings import ServingSettings
from cip.serving.state import ServingState, StateHolder
from cip.serving.web_app import WebApp
from starlette.responses import JSONResponse
from threadpoolctl import threadpool_limits

__all__ = ["CIPService", "configure"]

log = logging.getLogger("cip.serving.service")

_OVERRIDES: dict[str, Any] = {}
_HOLDER: StateHolder | None = None


def configure(
    settings: ServingSettings | None = None,
    model_loader: Callable[[Path], Any] | None = None,
    session_store: SessionStore | None = None,
) -> None:
    """Defaults for service instances created by BentoML in this process (tests, embedding)."""
    _OVERRIDES.clear()
    _OVERRIDES.update(
        {
            k: v
            for k, v in (
                ("settings", settings),
                ("model_loader", model_loader),
                ("session_store", session_store),
            )
            if v is not None
        }
    )


def _settings_from_env() -> ServingSettings:
    # never from `pipelines`: `cip serve` resolves the workspace and passes the settings
    return ServingSettings.load()


def _current_keys() -> KeyStore | None:
    h = _HOLDER
    return None if h is None else h.keys


_STATUS: dict[type, int] = {NotFoundError: 404, PrivacyError: 403}


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code)


class _NoRequestValues(logging.Filter):
    """Drop BentoML's tracebacks of invalid requests: pydantic quotes the input values."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and type(exc).__name__ == "ValidationError")


def _setup_logging(path: str | None) -> None:
    bento = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, _NoRequestValues) for f in bento.filters):
        bento.addFilter(_NoRequestValues())
    if not path:
        return
    root = logging.getLogger("cip.serving")
    for old in [h for h in root.handlers if getattr(h, "_cip_serving", False)]:
        if old.baseFilename == os.path.abspath(path):  # type: ignore[attr-defined]
            return
        root.removeHandler(old)
        old.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(path)
    h._cip_serving = True  # type: ignore[attr-defined]
    h.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    h.addFilter(RequestIdFilter())
    h.addFilter(RedactingFilter())
    root.addHandler(h)
    root.setLevel(logging.INFO)
    # one access line per request goes to the service log only, not also to the console
    access = logging.getLogger("cip.serving.access")
    for old in [x for x in access.handlers if getattr(x, "_cip_serving", False)]:
        access.removeHandler(old)
    access.addHandler(h)
    access.propagate = False


_WORKERS = int(os.environ.get("CIP_SERVE_WORKERS", "1"))


@bentoml.service(
    name="cip",
    description=DESCRIPTION,
    service_class=DocumentedService,  # /docs.json: version, auth schemes, errors (serving.openapi)
    workers=_WORKERS,
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},  # our own access log: ids hashed, request ids
    tracing={"excluded_urls": ".*"},  # no span per request: X-Request-ID identifies requests
)
class CIPService:
    """Recommendations, scores, segments and events of one CIP workspace."""

    def __init__(
        self,
        settings: ServingSettings | None = None,
        model_loader: Callable[[Path], Any] | None = None,
        session_store: SessionStore | None = None,
        watch: bool = True,
    ) -> None:
        global _HOLDER
        # one BLAS/OpenMP thread per worker: a single-user scoring call is tiny, and
        # multi-threaded BLAS waits for a second core that other requests need (latency
        # spikes of a scheduler time slice); scale with workers instead
        threadpool_limits(1)
        settings = settings or _OVERRIDES.get("settings") or _settings_from_env()
        _setup_logging(settings.log_path)
        self.holder = StateHolder(
            settings,
            model_loader=model_loader or _OVERRIDES.get("model_loader"),
            session_store=session_store or _OVERRIDES.get("session_store"),
        )
        self.holder.reload()
        if watch:
            self.holder.start()
        _HOLDER = self.holder

    def __is_ready__(self) -> bool:
        return self.holder.state is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.holder.stop()

    def _run(self, fn: Callable[[ServingState], Any]) -> Any:
        state = self.holder.state
        if state is None:
            detail = self.holder.last_error or "loading"
            return _error(503, f"the service is not ready yet ({detail}); retry shortly")
        try:
            return fn(state)
        except CIPError as exc:
            return _error(_STATUS.get(type(exc), 400), str(exc))
        except Exception as exc:
            # the frames, not the message: messages may quote request values
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("unexpected %s\n%s", type(exc).__name__, frames)
            return _error(500, f"internal error; request id {request_id()} in the service log")

    # -- shop scope ------------------------------------------------------------
    # The hot read endpoints are coroutines: their work is a millisecond of CPU under
    # the GIL, so running them on the event loop avoids a thread hop per request and
    # the GIL contention of many threads; /events (fsync) and admin calls use threads.
    @bentoml.api
    async def recommend(self, req: RecommendRequest, /) -> RecommendResponse:
        """Recommendations for a customer or visitor: personalized, session or popular."""
        return self._run(
            lambda s: engine.recommend(
                s, self.holder.sessions, req, self.holder.settings.session_max_items
            )
        )

    @bentoml.api
    async def similar_items(self, req: SimilarItemsRequest, /) -> SimilarItemsResponse:
        """Items similar to one item (product pages)."""
        return self._run(lambda s: engine.similar_items(s, req))

    @bentoml.api
    def events(self, req: EventsRequest, /) -> EventsResponse:
        """Real-time events: validated one by one, stored durably, applied to sessions at once."""

        def run(state: ServingState) -> EventsResponse:
            ok, bad = validate_events(req.events)
            er, snap = state.erasure, state.snapshot

            def gone(e: ValidEvent) -> bool:
                if any(er.is_erased(k, v) for k, v in e.visitors):
                    return True
                uid = snap.person(e.record.get("customer_id"), e.record.get("anonymous_id"))
                return uid is not None and er.is_erased("unified_id", uid)

            erased = {e.index for e in ok if gone(e)}
            bad += [(i, "this identifier was erased; its events are not kept") for i in erased]
            ok = [e for e in ok if e.index not in erased]
            try:
                self.holder.sink.append([e.record for e in ok])
            except OSError as exc:
                log.error("cannot write the events log: %s", exc)
                return _error(503, "cannot store events now; nothing was accepted, retry")
            engine.session_updates(self.holder.sessions, ok)
            return EventsResponse(
                accepted=len(ok),
                rejected=[RejectedEvent(index=i, reason=r) for i, r in sorted(bad)],
            )

        return self._run(run)

    # -- campaign scope ----------------------------------------------------------
    @bentoml.api
    async def score(self, req: ScoreRequest, /) -> ScoreResponse:
        """Churn and purchase probabilities, RFM segment and reasons for up to 1,000 customers."""
        return self._run(lambda s: engine.score(s, req))

    @bentoml.api
    def segments(self, req: SegmentsRequest, /) -> SegmentsResponse:
        """Built segments with their sizes, definitions and as_of."""
        return self._run(
            lambda s: SegmentsResponse(
                segments=[SegmentInfo(**r) for r in segment_sizes(s.snapshot.store, req.as_of)]
            )
        )

    @bentoml.api
    def segment_members(self, req: SegmentMembersRequest, /) -> SegmentMembersResponse:
        """One page of a segment's members; pass ``next_cursor`` back for the next page."""

        def run(state: ServingState) -> SegmentMembersResponse:
            as_of, rows, nxt = segment_page(
                state.snapshot.store, req.segment, req.limit, req.cursor, req.purpose
            )
            keys = SegmentMember.model_fields
            members = [SegmentMember(**{k: r.get(k) for k in keys if k in r}) for r in rows]
            return SegmentMembersResponse(
                segment=req.segment, as_of=as_of, members=members, next_cursor=nxt
            )

        return self._run(run)

    # -- operators -----------------------------------------------------------------
    @bentoml.api(route="/admin/reload")
    def admin_reload(self, req: ReloadRequest, /) -> ReloadResponse:
        """Reload the champion and the store snapshot now (every worker within a second)."""
        t0 = time.perf_counter()
        rep = self.holder.reload(force=req.force)
        self.holder.request_reload()
        if rep.error is not None and self.holder.state is None:
            return _error(503, rep.error)
        return ReloadResponse(
            reloaded=rep.reloaded,
            model_version=self.holder.state.model_version if self.holder.state else None,
            store_changed=rep.store_changed,
            model_changed=rep.model_changed,
            seconds=time.perf_counter() - t0,
            warnings=[w for w in (rep.error, self.holder.model_error) if w],
        )

    @bentoml.api(route="/admin/forget")
    def admin_forget(self, req: ForgetRequest, /) -> ForgetResponse:
        """Stop serving people at once (every worker): journal their hashes, drop sessions."""
        h = self.holder
        ids = [("customer_id", c) for c in req.customer_ids] + [
            ("anonymous_id", a) for a in req.anonymous_ids
        ]
        pairs = record_erasure(
            h.settings.erasure_journal, h.salt, unified_ids=req.unified_ids, identifiers=ids
        )
        deleted = h.sessions.forget(ids)  # before the journal is applied (it drops them too)
        h.apply_erasures()
        log.info("erasure: %d identifiers, %d sessions deleted", len(pairs), deleted)
        return ForgetResponse(identifiers=len(pairs), sessions_deleted=deleted)


CIPService.mount_asgi_app(WebApp(lambda: _HOLDER), path="/web", name="web")
CIPService.add_asgi_middleware(
    AuthMiddleware,
    keys=_current_keys,
    access_log=lambda: _HOLDER is None or _HOLDER.settings.access_log,
)
