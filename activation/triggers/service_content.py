"""Content from the running BentoML service: ``POST /recommend`` over HTTP.

What a person gets in a message is what the shop's page would show: the
worker asks the service the page asks, with the person's shop id and the
message's items (the cart, the changed item) as ``recent_items``. Any failure
(service down, timeout, 5xx, an unauthorised key) raises
:class:`ContentUnavailable`, so the engine keeps the message waiting and
retries it; it is never sent without its recommendations.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from cip.activation.triggers.content import ContentRequest, ContentResult, ContentUnavailable

__all__ = ["ServiceContent"]

log = logging.getLogger(__name__)


class ServiceContent:
    """A :class:`~cip.activation.triggers.ContentProvider` calling the service's ``/recommend``.

    Args:
        url: the service's base URL (``http://127.0.0.1:3000``).
        api_key: a ``shop``-scope service key (``cip keys create --scope shop``).
        timeout_s: per-request timeout.
        client: an ``httpx.Client`` (tests pass one over an in-process app).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.http = client or httpx.Client(timeout=timeout_s)

    def __call__(self, request: ContentRequest) -> ContentResult:
        body: dict[str, Any] = {
            "n": int(request.n),
            "recent_items": [str(i) for i in request.context_items][:100],
            "exclude_purchased": True,
            "in_stock_only": True,
        }
        if request.customer_id:
            body["customer_id"] = request.customer_id
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        try:
            resp = self.http.post(
                f"{self.url}/recommend", json=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise ContentUnavailable(f"service at {self.url}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise ContentUnavailable(
                f"service at {self.url}: /recommend answered {resp.status_code}"
            )
        try:
            data = resp.json()
            items = [
                {"item_id": str(i["item_id"]), "score": float(i["score"])} for i in data["items"]
            ]
        except (ValueError, KeyError, TypeError):
            raise ContentUnavailable(
                f"service at {self.url}: unreadable /recommend answer"
            ) from None
        versions = {"recommender": str(data["model_version"])} if data.get("model_version") else {}
        versions["strategy"] = str(data.get("strategy"))
        return ContentResult(items=items, model_versions=versions)

    def close(self) -> None:
        self.http.close()
