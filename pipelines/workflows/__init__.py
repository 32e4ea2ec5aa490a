"""The workflows behind the CLI and :class:`cip.Workspace`: plain functions of a workspace.

Each module holds one area (``setup``: secrets, sources, lock, simulation;
``data``: ingest, unify, features, retention; ``modeling``: train, score,
the registry; ``activation``: segments, exports, webhooks; ``privacy``:
erasure and access requests; ``status``). They import no Typer, click or rich:
progress is reported through callback arguments, results are the typed objects
of :mod:`cip.pipelines.workflows.results`. This package re-exports nothing, so
importing one module does not load the others.
"""
