"""The service's OpenAPI document: BentoML's, completed with CIP's version, auth and errors.

BentoML 1.4 builds the document in ``Service.openapi_spec``
(``_bentoml_sdk.service.openapi.generate_spec``) from the endpoints' pydantic
schemas, but with the version "None" (outside a built bento), BentoML's own
README as the description, no security schemes and its generic 400/404/500
errors. ``CIPService`` is made with ``bentoml.service(service_class=
DocumentedService)``, so that ``/docs.json`` (and ``apis/openapi.yaml`` of a
built bento) is :func:`complete_document` of BentoML's document: the
package version (``cip.__version__``) and description, the two ways to send
an API key (``X-API-Key`` header, HTTP bearer) required by every endpoint but
health and metrics, and each endpoint's error answers (one JSON ``Error``
schema) as :mod:`cip.serving.auth` and :mod:`cip.serving.service` give them.

The committed copy ``serving/openapi.json`` is regenerated with
``python -m cip.serving.openapi > serving/openapi.json``; a test fails when it
differs from the served document.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import attr
import bentoml
import yaml
from bentoml._internal.service.openapi.specification import OpenAPISpecification  # its type
from cip.serving.auth import MAX_BODY, ROUTE_SCOPES

from cip.version import __version__

__all__ = ["DESCRIPTION", "DocumentedService", "OpenAPIDocument", "complete_document", "main"]

DESCRIPTION = """\
Recommendations, churn and purchase scores, segments and real-time events of \
one CIP workspace (CIP, the customer intelligence platform).

**Authentication.** Every endpoint except `/livez`, `/readyz`, `/healthz` and \
`/metrics` needs an API key (`cip keys create --scope shop|campaign|admin|browser`), \
sent as `X-API-Key: <key>` or `Authorization: Bearer <key>`. A missing or \
unknown key is answered 401, a key whose scope does not cover the endpoint 403. \
Scopes: `shop` calls `/recommend`, `/similar_items`, `/events`; `campaign` calls \
`/score`, `/segments`, `/segment_members`, `/admin/reload`; `admin` calls everything; \
`browser` (a publishable `pk_` key for web pages) calls `/recommend` and `/events` \
only, from the page origins it was created for (CORS), also as `?key=` with a \
`text/plain` JSON body.

**Errors** are JSON `{"error": "<one readable line>"}` (400 for invalid input \
also has `detail`, the failing fields). Every response carries `X-Request-ID` \
(yours when you send one, else a new one); a 500 names it, so the service log \
line can be found.
"""

_ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in one line."},
        "detail": {
            "type": "string",
            "description": "The failing fields of an invalid request (400 only).",
        },
    },
}
_REQUEST_ID = {
    "description": "The request's id: the X-Request-ID sent, or a new one.",
    "schema": {"type": "string"},
}
_KEY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "BearerAuth": {"type": "http", "scheme": "bearer", "description": "The same API key."},
}
_ERRORS: dict[int, str] = {
    400: "Invalid request: `error` names the field and the problem.",
    401: "Missing or unknown API key (send X-API-Key or Authorization: Bearer).",
    403: "The key's scope does not cover this endpoint.",
    413: f"Request body over {MAX_BODY // 2**20} MiB.",
    415: "Request body not sent as application/json.",
    500: "Unexpected failure; `error` carries the request id of the service log line.",
    503: "Still starting or loading its first state (model, store snapshot); retry shortly.",
}
_MORE_ERRORS: dict[str, dict[int, str]] = {
    "/segment_members": {
        403: "The key's scope does not cover this endpoint, or the segment has no purpose "
        "to apply consent for (pass `purpose`).",
        404: "No segment of that name has been built.",
    },
    "/events": {
        503: _ERRORS[503][:-1] + ", or the events log cannot be written now (nothing was accepted)."
    },
}
_OPEN_DESCRIPTION = " Open: no API key needed."


def _error_response(text: str, code: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": text,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if code == 401:
        out["headers"]["WWW-Authenticate"] = {
            "description": "`Bearer`: how to send the key.",
            "schema": {"type": "string"},
        }
    return out


def _protect(path: str, op: dict[str, Any]) -> None:
    scopes = sorted(ROUTE_SCOPES.get(path, {"shop", "campaign", "admin"}))
    op["security"] = [{"ApiKeyHeader": []}, {"BearerAuth": []}]
    op["description"] = (op.get("description") or "").rstrip() + (
        f"\n\nAPI key scope: {' or '.join(f'`{s}`' for s in scopes)}."
    )
    ok = {k: v for k, v in op["responses"].items() if str(k).startswith("2")}
    for r in ok.values():
        r.setdefault("headers", {})["X-Request-ID"] = {"$ref": "#/components/headers/RequestId"}
    errors = {**_ERRORS, **_MORE_ERRORS.get(path, {})}
    op["responses"] = {
        **{str(k): v for k, v in ok.items()},
        **{str(c): _error_response(t, c) for c, t in sorted(errors.items())},
    }


def complete_document(spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI document with CIP's info, security schemes and error answers."""
    doc = copy.deepcopy(spec)
    doc["info"] = {
        "title": "CIP serving API",
        "version": __version__,
        "description": DESCRIPTION,
    }
    for path, item in doc["paths"].items():
        for op in item.values():
            if "Infrastructure" in op.get("tags", ()):
                op["security"] = []  # health and metrics stay open
                op["description"] = op.get("description", "") + _OPEN_DESCRIPTION
                if path == "/readyz":
                    op["responses"]["503"] = {"description": "Not ready yet (state loading)."}
            else:
                _protect(path, op)
    comp = doc.setdefault("components", {})
    schemas = comp.setdefault("schemas", {})
    for unused in ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse"):
        if f'"#/components/schemas/{unused}"' not in json.dumps(doc["paths"]):
            schemas.pop(unused, None)
    schemas["Error"] = _ERROR_SCHEMA
    comp["securitySchemes"] = _KEY_SCHEMES
    comp["headers"] = {"RequestId": _REQUEST_ID}
    return doc


@attr.frozen
class OpenAPIDocument(OpenAPISpecification):
    """BentoML's spec object carrying the completed document (``asdict`` returns it)."""

    document: dict[str, Any] = attr.field(factory=dict, eq=False, repr=False)

    def asdict(self) -> dict[str, Any]:
        return copy.deepcopy(self.document)


# a built bento writes its spec with yaml.dump: represent the completed document
yaml.add_representer(OpenAPIDocument, lambda d, spec: d.represent_dict(spec.asdict()))


class DocumentedService(bentoml.Service):  # type: ignore[type-arg]
    """A BentoML service whose OpenAPI document is :func:`complete_document` of BentoML's."""

    @property
    def openapi_spec(self) -> OpenAPISpecification:
        base = super().openapi_spec
        fields = {f.name: getattr(base, f.name) for f in attr.fields(OpenAPISpecification)}
        return OpenAPIDocument(**fields, document=complete_document(base.asdict()))


def main() -> None:
    """Print the service's OpenAPI document (what ``/docs.json`` serves) as JSON."""
    from cip.serving.service import CIPService

    sys.stdout.write(json.dumps(CIPService.openapi_spec.asdict(), indent=2) + "\n")


if __name__ == "__main__":
    main()
