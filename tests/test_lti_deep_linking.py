"""Deep linking: a teacher picks an assignment; the platform validates the signed response
and the link it creates launches straight into the assignment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

import pytest

from courses.models import Assignment, AssignmentState
from lti import keys
from lti.models import Context, ResourceLink

from .lti_platform import LIS, LoopbackPlatform, launch_via_oidc, registered_platform

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


@pytest.fixture
def client(client):
    # Pages before a launch follow the browser's language; these tests read English.
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def lms(db) -> Iterator[LoopbackPlatform]:
    platforms = registered_platform()
    platform = next(platforms)
    platform.tool_jwks = keys.jwks()
    yield platform
    next(platforms, None)


def _deep_link_launch(client, lms, roles=(LIS + "Instructor",)):
    settings = {
        "deep_link_return_url": "https://lms.example/deep-link-return",
        "accept_types": ["ltiResourceLink"],
        "accept_presentation_document_targets": ["iframe", "window"],
        "data": "opaque-platform-data",
    }
    return launch_via_oidc(
        client,
        lms,
        sub="t1",
        roles=roles,
        message_type="LtiDeepLinkingRequest",
        overrides={DL + "deep_linking_settings": settings},
    )[0]


def test_deep_linking_returns_a_signed_resource_link_that_launches_into_the_assignment(
    client, lms, rubric
):
    response = _deep_link_launch(client, lms)
    assert response.status_code == 302 and response["Location"] == "/lti/deep-link/"
    course = Context.objects.get().course
    assignment = Assignment.objects.create(
        course=course, title="期末作文", state=AssignmentState.PUBLISHED
    )
    assignment.questions.create(kind="essay", prompt="写春天", rubric=rubric, order=1)
    assert b"\xe6\x9c\x9f\xe6\x9c\xab" in client.get("/lti/deep-link/").content

    page = client.post("/lti/deep-link/", {"assignment": str(assignment.pk)})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'action="https://lms.example/deep-link-return"' in html
    assert "https://lms.example" in page["Content-Security-Policy"].split("form-action")[1]
    token = unescape(re.search(r'name="JWT" value="([^"]+)"', html).group(1))

    claims = lms.verify_tool_jwt(token)
    assert claims["https://purl.imsglobal.org/spec/lti/claim/message_type"] == (
        "LtiDeepLinkingResponse"
    )
    assert claims[DL + "data"] == "opaque-platform-data"
    [item] = claims[DL + "content_items"]
    assert item["type"] == "ltiResourceLink"
    assert item["url"] == "http://testserver/lti/launch/"
    assert item["lineItem"]["resourceId"] == str(assignment.pk)
    assert item["lineItem"]["scoreMaximum"] == rubric.max_points
    assert item["custom"] == {"markwise_assignment": str(assignment.pk)}
    # The response is single use: the page does not sign a second one.
    assert client.post("/lti/deep-link/", {"assignment": str(assignment.pk)}).status_code == 400

    # The link the platform created launches a student straight into the assignment.
    client.logout()
    response, _t, _q = launch_via_oidc(
        client, lms, sub="s1", resource_link_id="new-link", custom=item["custom"]
    )
    assert response["Location"] == f"/assignments/{assignment.pk}/"
    assert ResourceLink.objects.get(resource_link_id="new-link").assignment == assignment


def test_students_cannot_deep_link(client, lms):
    response = _deep_link_launch(client, lms, roles=(LIS + "Learner",))
    assert response.status_code == 403
