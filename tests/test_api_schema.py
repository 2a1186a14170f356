"""The OpenAPI document: committed and current, complete, served with its reader, and
honoured by every response (a bounded schemathesis run over the whole schema)."""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from .api_support import *  # noqa: F403

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"


def _generated() -> str:
    out = io.StringIO()
    call_command("spectacular", "--lang", "en", "--validate", "--fail-on-warn", stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return yaml.safe_load(_generated())


def test_the_committed_schema_is_current() -> None:
    """`make openapi` rewrites docs/openapi.yaml; run it when this fails."""
    assert COMMITTED.read_text(encoding="utf-8") == _generated(), (
        "docs/openapi.yaml is out of date: run `make openapi` and commit the result."
    )


def test_every_operation_is_documented_with_examples_and_errors(schema: dict[str, Any]) -> None:
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) >= 30
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary") and len(op.get("description", "")) > 20, where
        responses = op["responses"]
        successes = [code for code in responses if code.startswith("2")]
        assert successes, where
        for code in (c for c in successes if c != "204"):  # 204: no body to show
            content = responses[code]["content"]["application/json"]
            assert content.get("examples"), f"{where} {code} has no example"
        for code in ("401", "403", "429"):
            assert "application/problem+json" in responses[code]["content"], f"{where} {code}"
        if "{id}" in path:
            assert "404" in responses, where
        if method in ("post", "put"):
            assert "400" in responses, where
        if "requestBody" in op and op["requestBody"].get("required"):
            assert op["requestBody"]["content"]["application/json"].get("examples"), where
        if method == "post":
            assert any(p["name"] == "Idempotency-Key" for p in op["parameters"]), where


def test_the_schema_is_served_as_yaml_and_as_json(db: Any) -> None:
    client = Client()
    as_yaml = client.get("/api/schema/")
    assert as_yaml.status_code == 200 and as_yaml.content.startswith(b"openapi: 3")
    as_json = client.get("/api/schema/", {"format": "json"})
    assert as_json.status_code == 200 and as_json.json()["info"]["title"] == "Markwise API"


def test_swagger_ui_is_served_from_our_own_static_files_under_the_csp(db: Any) -> None:
    client = Client()
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert finders.find(asset.removeprefix("/static/").split("?")[0]), asset
    policy = page["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]*)", policy)
    assert script_src and "'unsafe-inline'" not in script_src.group(1)
    assert "<script>" not in html  # the start-up script is a file of its own (script-src 'self')
    script_url = re.search(r'<script src="(/api/docs/\?[^"]*script[^"]*)"', html)
    assert script_url, html
    script = client.get(script_url.group(1).replace("&amp;", "&"))
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content
    assert b"/api/schema/" in script.content


def test_unknown_api_paths_are_problems_not_html(db: Any) -> None:
    response = Client().get("/api/v2/courses/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_schemathesis_finds_no_server_error_and_no_response_outside_the_schema(
    world: Any, course: Any, make_key: Any, schema: dict[str, Any]
) -> None:
    """Every operation, with a key that may do everything in the course: bounded
    property-based requests (valid, then invalid) and a check of every response."""
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    settings.API_RATE_KEY = ""
    app = get_wsgi_application()
    # As Django's test client does: a request must not close the test's connection (on
    # PostgreSQL it would, being inside the test's transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        _explore_every_operation(app, world, course, make_key, schema)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _explore_every_operation(
    app: Any, world: Any, course: Any, make_key: Any, schema: dict[str, Any]
) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st
    from schemathesis import checks
    from schemathesis.generation import GenerationMode

    headers = {"Authorization": f"Bearer {make_key(courses=[course])}", "Accept-Language": "en"}
    api = schemathesis.openapi.from_dict(schema)
    real_ids = {
        "/api/v1/courses/{id}": course.pk,
        "/api/v1/assignments/{id}": world.assignment.pk,
        "/api/v1/answers/{id}": world.essay.pk,
        "/api/v1/submissions/{id}": world.submission.pk,
        "/api/v1/rubrics/{id}": world.essay.question.rubric_id,
        "/api/v1/enrollments/{id}": world.enrollment.pk,
        "/api/v1/regrade-requests/{id}": world.regrade.pk,
    }
    response_checks = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
        checks.response_headers_conformance,
    ]
    failures: list[str] = []
    sent = [0]
    statuses: Counter[int] = Counter()

    def explore(operation: Any, mode: GenerationMode, strategies: list[Any]) -> None:
        wanted = response_checks if mode == GenerationMode.POSITIVE else response_checks[:1]

        @given(case=st.one_of(strategies))
        @hypothesis_settings(
            max_examples=10,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(app=app, headers=headers)
            sent[0] += 1
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=wanted, headers=headers)
            except AssertionError as exc:
                failures.append(f"{operation.method.upper()} {operation.path} [{mode}]: {exc}")
                raise

        with contextlib.suppress(AssertionError):  # recorded; go on with the other operations
            run()

    started = time.monotonic()
    for result in api.get_all_operations():
        operation = result.ok()
        prefix = next((p for p in real_ids if operation.path.startswith(p)), None)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if prefix is not None:
                strategies.append(
                    operation.as_strategy(
                        generation_mode=mode, path_parameters={"id": real_ids[prefix]}
                    )
                )
            explore(operation, mode, strategies)
    elapsed = time.monotonic() - started
    print(
        f"schemathesis: {sent[0]} requests in {elapsed:.1f} s; statuses {sorted(statuses.items())}"
    )
    assert not failures, "\n\n".join(failures[:5])
    assert sent[0] > 300
    assert sum(n for code, n in statuses.items() if code < 300) > 100  # not only refusals
