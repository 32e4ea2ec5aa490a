"""What a worker serves: one immutable :class:`ServingState`, swapped atomically on reload.

A state bundles the champion recommender (from the MLflow registry, alias
``champion``), the in-memory snapshot of the store (catalog, identity map,
purchases, consent, scores, segments) and the erasure index. The
:class:`StateHolder` builds a new state next to the one serving requests and
replaces one reference, so a reload never fails a request; requests read
``holder.state`` once and use that object to the end.

Reloads happen on ``POST /admin/reload``, and from a watcher thread: every
second it looks at the erasure journal and the keys file (cheap ``stat``
calls); every ``reload_interval_seconds`` it asks the registry for the
champion's version and compares the store's signature.
"""

from __future__ import annotations

import copy
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cip.profiles.errors import CIPError
from cip.profiles.privacy import load_salt
from cip.serving._champion import Champion, load_champion
from cip.serving._snapshot import copy_store, store_signature
from cip.serving.auth import KeyStore
from cip.serving.catalog import Snapshot, build_snapshot
from cip.serving.erasure import ErasureIndex, read_journal
from cip.serving.events import EventSink, RedisEventStream
from cip.serving.session_store import SessionStore, open_session_store
from cip.serving.settings import ServingSettings

__all__ = ["ServingState", "StateHolder", "ReloadReport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingState:
    """Everything one request needs, never mutated after construction."""

    champion: Champion
    snapshot: Snapshot
    erasure: ErasureIndex
    built_at: float = field(default_factory=time.time)
    #: the fitted recommendation blocks (``SavedBlocks``), None when none are fitted
    blocks: Any = None

    @property
    def model_version(self) -> str | None:
        return self.champion.version


@dataclass
class ReloadReport:
    reloaded: bool
    model_changed: bool
    store_changed: bool
    erasures_changed: bool
    seconds: float
    error: str | None = None


class StateHolder:
    """Owns the current state, the keys, the session store and the events sink.

    Args:
        settings: resolved serving settings.
        model_loader: loads a recommender from a folder (default
            :func:`models.load_recommender`); tests may pass another.
    """

    def __init__(
        self,
        settings: ServingSettings,
        model_loader: Callable[[Path], Any] | None = None,
        session_store: SessionStore | None = None,
    ) -> None:
        self.settings = settings
        self.salt = load_salt(settings.salt_path)
        self.model_loader = model_loader
        self.keys = KeyStore(settings.keys_path)
        self.sessions = session_store or open_session_store(
            settings.session_store,
            self.salt,
            redis_url=settings.redis_url,
            max_items=settings.session_max_items,
            ttl_seconds=settings.session_ttl_seconds,
            prefix=settings.redis_prefix,
        )
        stream = (
            RedisEventStream(settings.redis_url, settings.event_stream)
            if settings.event_stream and settings.redis_url
            else None
        )
        self.sink = EventSink(settings.events_dir, settings.events_rotate_seconds, stream)
        self.state: ServingState | None = None
        self._lock = threading.Lock()  # one reload at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store_sig: Any = object()
        self._journal_mtime: float | None = None
        self._stamp_mtime: float | None = _mtime(settings.reload_stamp)
        self._blocks_mtime: float | None = None
        #: why the blocks file could not be loaded (the previous blocks keep serving)
        self.blocks_error: str | None = None
        self._last_check = 0.0
        self.last_error: str | None = None
        self.model_error: str | None = None
        #: what to serve when the first champion cannot be loaded: no model (popular items)
        self._fallback: Champion | None = Champion(settings.recommender_model, None)

    # -- reloading -------------------------------------------------------------
    def reload(self, force: bool = False) -> ReloadReport:
        """Rebuild what changed and swap it in; keeps the old state on any error."""
        t0 = time.perf_counter()
        with self._lock:
            old = self.state
            try:
                rep = self._reload(old, force)
                self.last_error = None
            except Exception as exc:  # never let a reload take the service down
                msg = str(exc) if isinstance(exc, CIPError) else f"{type(exc).__name__}: {exc}"
                self.last_error = msg
                log.warning(
                    "reload failed, still serving the previous state: %s",
                    msg,
                    exc_info=not isinstance(exc, CIPError),
                )
                return ReloadReport(False, False, False, False, time.perf_counter() - t0, msg)
        rep.seconds = time.perf_counter() - t0
        if rep.reloaded:
            log.info(
                "state reloaded in %.2fs (model %s, store changed: %s, erasures: %d)",
                rep.seconds,
                self.state.model_version if self.state else None,
                rep.store_changed,
                len(self.state.erasure) if self.state else 0,
            )
        return rep

    def _reload(self, old: ServingState | None, force: bool) -> ReloadReport:
        s = self.settings
        current = old.champion if old else self._fallback
        try:
            champion = load_champion(
                s.recommender_model,
                s.mlflow_tracking_uri,
                s.model_cache_dir,
                current,
                self.model_loader,
            )
            self.model_error = None
        except CIPError as exc:
            if current is None:
                raise
            # keep serving what we have (popular items if there was never a model)
            self.model_error = str(exc)
            log.error(
                "cannot load the champion recommender, keeping version %s: %s", current.version, exc
            )
            champion = current
        model_changed = old is None or champion is not old.champion
        sig = store_signature(s)
        store_changed = old is None or force or sig != self._store_sig
        if store_changed:
            mem, timings = copy_store(s)
            snapshot = build_snapshot(mem, s.personalization_consent, timings)
        else:
            snapshot = old.snapshot  # type: ignore[union-attr]
        journal = read_journal(s.erasure_journal)
        erasure = ErasureIndex(self.salt, journal | snapshot.erased_hashes(self.salt))
        erasures_changed = old is None or erasure.hashes != old.erasure.hashes
        blocks, blocks_changed = self._load_blocks(old)
        if not (model_changed or store_changed or erasures_changed or blocks_changed):
            self._store_sig = sig
            return ReloadReport(False, False, False, False, 0.0)
        champion = _without_erased(champion, erasure, snapshot)
        self.state = ServingState(champion, snapshot, erasure, blocks=blocks)
        self._forget_sessions(erasure, old.erasure if old else None)
        self._store_sig = sig
        self._journal_mtime = _mtime(s.erasure_journal)
        if old is not None and old.snapshot is not snapshot:
            old.snapshot.close()
        _freeze_heap(collect=model_changed or store_changed)
        return ReloadReport(True, model_changed, store_changed, erasures_changed, 0.0)

    def _load_blocks(self, old: ServingState | None) -> tuple[Any, bool]:
        """The fitted blocks: re-read when the file changed; the old ones on any error."""
        path = self.settings.blocks_path
        current = old.blocks if old is not None else None
        mtime = _mtime(path) if path else None
        if mtime == self._blocks_mtime:  # a new fit replaces the file: a new mtime
            return current, False
        if mtime is None:
            self._blocks_mtime = None
            return None, current is not None
        from cip.models.recommender.blocks.saved import load_blocks

        try:
            blocks = load_blocks(path)  # type: ignore[arg-type]
        except CIPError as exc:
            self.blocks_error = str(exc)
            log.error("cannot load the recommendation blocks, keeping the previous: %s", exc)
            return current, False
        self.blocks_error = None
        self._blocks_mtime = mtime
        log.info("loaded recommendation blocks %s (%s)", blocks.version, ", ".join(blocks.names))
        return blocks, True

    def apply_erasures(self) -> bool:
        """Re-read the journal only (cheap); returns whether the state changed."""
        with self._lock:
            old = self.state
            if old is None:
                return False
            journal = read_journal(self.settings.erasure_journal)
            hashes = journal | old.snapshot.erased_hashes(self.salt)
            self._journal_mtime = _mtime(self.settings.erasure_journal)
            if hashes == old.erasure.hashes:
                return False
            erasure = ErasureIndex(self.salt, hashes)
            champion = _without_erased(old.champion, erasure, old.snapshot)
            self.state = ServingState(champion, old.snapshot, erasure, blocks=old.blocks)
            self._forget_sessions(erasure, old.erasure)
            _freeze_heap(collect=False)
        log.info("erasures applied: %d erased identifiers", len(erasure))
        return True

    def _forget_sessions(self, new: ErasureIndex, old: ErasureIndex | None) -> None:
        """Drop the online sessions of newly erased visitors (keys are the same hashes)."""
        fresh = new.hashes - (old.hashes if old is not None else frozenset())
        keys = [h for t, h in fresh if t in ("customer_id", "anonymous_id")]
        forget = getattr(self.sessions, "forget_hashed", None)
        if keys and forget is not None:
            n = forget(keys)
            if n:
                log.info("erasure: %d online session(s) deleted", n)

    def request_reload(self) -> None:
        """Ask every worker (every process watching the stamp) to reload within a second."""
        p = Path(self.settings.reload_stamp)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
        self._stamp_mtime = _mtime(str(p))

    # -- the watcher -----------------------------------------------------------
    def tick(self) -> None:
        """One watcher step (also callable from tests)."""
        stamp = _mtime(self.settings.reload_stamp)
        if stamp != self._stamp_mtime:
            self._stamp_mtime = stamp
            self.reload(force=True)
        if self.keys.path.exists() and self.keys.path.stat().st_mtime != self.keys.mtime:
            self.keys = KeyStore(self.keys.path)
            log.info("API keys reloaded (%d keys)", len(self.keys.list_keys()))
        if self.state is not None and _mtime(self.settings.erasure_journal) != self._journal_mtime:
            self.apply_erasures()
        interval = self.settings.reload_interval_seconds
        if self.state is None or (interval > 0 and time.monotonic() - self._last_check >= interval):
            self._last_check = time.monotonic()
            self.reload()
        self.sink.rotate_if_due()

    def start(self, period: float = 1.0) -> None:
        """Start the watcher thread (daemon)."""
        if self._thread is not None:
            return
        self._last_check = time.monotonic()

        def run() -> None:
            while not self._stop.wait(period):
                try:
                    self.tick()
                except Exception:  # the watcher must survive anything
                    log.exception("watcher step failed")

        self._thread = threading.Thread(target=run, name="cip-serving-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.sink.close()
        self.sessions.close()


def _without_erased(champion: Champion, erasure: ErasureIndex, snap: Snapshot) -> Champion:
    """A champion whose recommender has the erased people's factors dropped.

    The recommender is copied shallowly (``drop_users`` replaces arrays, it
    never writes into them), so requests on the previous state are unaffected.
    """
    model = champion.model
    if model is None or not len(erasure) or not hasattr(model, "drop_users"):
        return champion
    index = champion.user_hashes(erasure.salt)
    gone = sorted(
        {index[h] for t, h in erasure.hashes if t in ("unified_id", "customer_id") and h in index}
        - champion.dropped
    )
    if not gone:
        return champion
    clone = copy.copy(model)
    n = clone.drop_users(gone)
    log.info("dropped %d erased user(s) from the served recommender", n)
    return champion.replaced(clone, champion.dropped | frozenset(gone))


def _freeze_heap(collect: bool) -> None:
    """Move the long-lived state out of the cyclic GC's reach (``gc.freeze``).

    A snapshot and a model are hundreds of thousands of objects; a full (gen-2)
    collection over them took 325 ms on a 50 k-item shop, and the interpreter
    starts one every so often as requests allocate: a stall of every request in
    flight (the p99.9 of the serving benchmark). Frozen objects are still freed
    by reference counting when a later state replaces them; ``collect`` first
    unfreezes and collects once, so cyclic garbage of an old state does not
    accumulate across model or store reloads (rare, and already seconds long).
    """
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


def _mtime(path: str) -> float | None:
    try:
        return Path(path).stat().st_mtime
    except FileNotFoundError:
        return None
