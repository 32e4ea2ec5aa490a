"""Pytest fixtures of the serving tests (loaded with ``pytest_plugins``)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from cip.serving.auth import KeyStore
from cip.serving.settings import ServingSettings

from tests._serving_data import build_store, register


@dataclass
class Shop:
    root: Path
    settings: ServingSettings
    keys: dict[str, str]
    tracking_uri: str

    def register(self, exclude_customers: tuple[str, ...] = ("C12",)) -> str:
        """Train, register and promote a new champion version."""
        return register(self.tracking_uri, exclude_customers)


@pytest.fixture(scope="session")
def _shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Store, MLflow registry (champion v1) and keys, built once per test session."""
    root = tmp_path_factory.mktemp("shop")
    build_store(root / "cip.duckdb")
    register(f"sqlite:///{root / 'mlflow.db'}")
    return root


@pytest.fixture
def shop(_shop_template: Path, tmp_path: Path) -> Shop:
    """A private copy of the shop folder, with one key per scope."""
    root = tmp_path / "shop"
    shutil.copytree(_shop_template, root)
    settings = ServingSettings.for_folder(root, reload_interval_seconds=0)
    ks = KeyStore(settings.keys_path)
    keys = {s: ks.create(s)[0] for s in ("shop", "campaign", "admin")}
    return Shop(root, settings, keys, f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture
def svc(shop: Shop):
    """The service class called directly (no HTTP), over the ``shop`` copy."""
    from cip.serving.service import CIPService

    s = CIPService.inner(settings=shop.settings, watch=False)
    yield s
    s.holder.stop()


@pytest.fixture(scope="session")
def asgi_app():
    """The service's ASGI app, built once per process (BentoML registers its metrics once)."""
    from cip.serving.service import CIPService

    return CIPService.to_asgi()


@pytest.fixture
def client(shop: Shop, asgi_app):
    """A test client on a fresh service instance (lifespan) over the ``shop`` copy."""
    import warnings

    from cip.serving import service as service_module

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    service_module.configure(settings=shop.settings)
    try:
        with TestClient(asgi_app) as c:
            yield c
    finally:
        service_module.configure()
