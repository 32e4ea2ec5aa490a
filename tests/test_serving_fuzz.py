"""schemathesis against the served OpenAPI document: no 5xx, no schema violations."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytest_plugins = ["tests._serving_fixtures"]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# /metrics needs the served process's Prometheus set-up: checked in test_serving_process
SKIP = {"/metrics", "/admin/reload"}


@pytest.mark.slow
def test_openapi_fuzzing_finds_no_server_errors_or_schema_violations(client, shop) -> None:
    spec = client.get("/docs.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    headers = {"X-API-Key": shop.keys["admin"]}
    ran: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in SKIP:
            continue
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if len(op.body) else [])
        for mode in modes:

            @settings(
                max_examples=12,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case) -> None:
                kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
                kwargs.pop("base_url", None)
                resp = client.request(**kwargs)
                case.validate_response(resp, checks=CHECKS)
                ran[case.path] = ran.get(case.path, 0) + 1

            check()
    assert {"/recommend", "/score", "/events", "/segment_members"} <= set(ran)
