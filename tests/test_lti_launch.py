"""LTI 1.3 launches end to end against a loopback platform (tests/lti_platform.py)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command

from courses.models import Enrollment, Role
from grading.models import AuditEvent
from lti.models import LaunchState, Platform, PlatformUser, ResourceLink, ToolKey

from .lti_platform import LIS, LoopbackPlatform, registered_platform
from .lti_platform import launch_via_oidc as _launch
from .lti_platform import login_via_oidc as _login


@pytest.fixture
def client(client):
    # Pages before a launch follow the browser's language; these tests read English.
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def lms(db) -> Iterator[LoopbackPlatform]:
    yield from registered_platform()


def test_lti_platform_add_prints_the_values_to_paste(db, capsys):
    lms = LoopbackPlatform()
    try:
        call_command(
            "lti_platform",
            "add",
            "--issuer",
            lms.issuer,
            "--client-id",
            "c1",
            "--deployment-id",
            "d1",
            "--auth-url",
            lms.auth_url,
            "--token-url",
            lms.token_url,
            "--keyset-url",
            lms.keyset_url,
        )
    finally:
        lms.close()
    out = capsys.readouterr().out
    assert "login_url=http://localhost:8000/lti/login/" in out
    assert "redirect_uri=http://localhost:8000/lti/launch/" in out
    assert "jwks_url=http://localhost:8000/lti/jwks/" in out
    assert "deep_linking_url=http://localhost:8000/lti/launch/" in out
    assert Platform.objects.get(client_id="c1").deployments.get().deployment_id == "d1"


def test_jwks_publishes_the_generated_key_and_keeps_it_after_rotation(client, db):
    first = client.get("/lti/jwks/").json()["keys"]
    assert len(first) == 1 and first[0]["kty"] == "RSA" and "d" not in first[0]
    call_command("lti_platform", "rotate-key", stdout=io.StringIO())
    kids = {key["kid"] for key in client.get("/lti/jwks/").json()["keys"]}
    assert first[0]["kid"] in kids and len(kids) == 2
    old = ToolKey.objects.get(kid=first[0]["kid"])
    from lti.keys import tool_key_retire

    tool_key_retire(key=old)
    assert [k["kid"] for k in client.get("/lti/jwks/").json()["keys"]] != [old.kid]
    assert AuditEvent.objects.filter(action="lti.key.rotated").exists()


def test_student_launch_creates_user_course_enrolment_and_lands_on_not_ready(client, lms):
    response, _token, _query = _launch(client, lms)
    link = ResourceLink.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/lti/links/{link.pk}/"
    identity = PlatformUser.objects.get(sub="user-1")
    assert identity.user.name == "Name of user-1"
    assert identity.user.email == "user-1@school.example"
    enrollment = Enrollment.objects.active().get(user=identity.user)
    assert enrollment.role == Role.STUDENT
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Not ready yet" in page.content
    assert AuditEvent.objects.filter(action="lti.launch").exists()


def test_teacher_links_the_placement_and_student_then_lands_on_the_work(client, lms, assignment):
    response, _t, _q = _launch(client, lms, sub="t1", roles=(LIS + "Instructor",))
    link = ResourceLink.objects.get()
    course = link.context.course
    assignment.course = course
    assignment.save()
    page = client.get(response["Location"])
    assert b"Link an assignment" in page.content
    linked = client.post(f"/lti/links/{link.pk}/", {"assignment": str(assignment.pk)})
    assert linked.status_code == 302
    assert linked["Location"] == f"/grading/assignments/{assignment.pk}/"
    client.logout()
    response, _t, _q = _launch(client, lms, sub="s1")
    assert response["Location"] == f"/assignments/{assignment.pk}/"


def test_role_change_on_relaunch_ends_old_enrolment(client, lms):
    _launch(client, lms, sub="p1")
    _launch(client, lms, sub="p1", roles=(LIS + "Instructor#TeachingAssistant",))
    user = PlatformUser.objects.get(sub="p1").user
    assert Enrollment.objects.active().get(user=user).role == Role.TA
    assert Enrollment.objects.filter(user=user, ended_at__isnull=False).count() == 1


def test_launched_pages_may_be_framed_by_the_platform_only(client, lms):
    response, _t, _q = _launch(client, lms)
    page = client.get(response["Location"])
    policy = page["Content-Security-Policy"]
    assert f"frame-ancestors {lms.url}" in policy
    assert "X-Frame-Options" not in page
    # A session that did not come from a launch keeps the strict policy.
    client.logout()
    assert "frame-ancestors 'none'" in client.get("/accounts/login/")["Content-Security-Policy"]


def test_replayed_launch_is_refused(client, lms):
    response, token, query = _launch(client, lms)
    assert response.status_code == 302
    replay = client.post("/lti/launch/", {"id_token": token, "state": query["state"]})
    assert replay.status_code == 400
    assert LaunchState.objects.get(state=query["state"]).used_at is not None


@pytest.mark.parametrize(
    "case",
    ["wrong_aud", "expired", "bad_signature", "unknown_deployment", "unknown_issuer", "no_version"],
)
def test_invalid_launches_are_refused_with_4xx(client, lms, case):
    query = _login(client, lms)
    overrides: dict[str, object] = {}
    key = None
    if case == "wrong_aud":
        overrides = {"aud": "someone-else"}
    elif case == "expired":
        overrides = {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}
    elif case == "bad_signature":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif case == "unknown_deployment":
        overrides = {"https://purl.imsglobal.org/spec/lti/claim/deployment_id": "nope"}
    elif case == "unknown_issuer":
        overrides = {"iss": "https://evil.example"}
    elif case == "no_version":
        overrides = {"https://purl.imsglobal.org/spec/lti/claim/version": "1.1"}
    token = lms.id_token(nonce=query["nonce"], overrides=overrides, key=key)
    response = client.post("/lti/launch/", {"id_token": token, "state": query["state"]})
    assert response.status_code == 400
    assert b"could not be verified" in response.content
    assert not PlatformUser.objects.exists()
    # The refused attempt did not burn the login: it is still unused.
    assert LaunchState.objects.get(state=query["state"]).used_at is None


def test_wrong_nonce_and_unknown_state_are_refused(client, lms):
    query = _login(client, lms)
    token = lms.id_token(nonce="not-the-one")
    assert (
        client.post("/lti/launch/", {"id_token": token, "state": query["state"]}).status_code == 400
    )
    token = lms.id_token(nonce=query["nonce"])
    assert (
        client.post("/lti/launch/", {"id_token": token, "state": "state-forged"}).status_code == 400
    )
    assert (
        client.post("/lti/launch/", {"id_token": "garbage", "state": query["state"]}).status_code
        == 400
    )


def test_login_from_unregistered_platform_is_a_4xx(client, db):
    response = client.post("/lti/login/", {"iss": "https://nobody.example", "login_hint": "x"})
    assert response.status_code == 400
    assert b"not registered" in response.content


def test_refusal_page_is_in_the_users_language(client, lms):
    query = _login(client, lms)
    token = lms.id_token(nonce=query["nonce"], overrides={"aud": "someone-else"})
    response = client.post(
        "/lti/launch/",
        {"id_token": token, "state": query["state"]},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert response.status_code == 400
    assert "无法验证此次启动" in response.content.decode()


def test_several_audiences_need_azp_naming_the_tool(client, lms):
    query = _login(client, lms)
    token = lms.id_token(nonce=query["nonce"], overrides={"aud": [lms.client_id, "other"]})
    response = client.post("/lti/launch/", {"id_token": token, "state": query["state"]})
    assert response.status_code == 400
    query = _login(client, lms)
    token = lms.id_token(
        nonce=query["nonce"], overrides={"aud": [lms.client_id, "other"], "azp": lms.client_id}
    )
    response = client.post("/lti/launch/", {"id_token": token, "state": query["state"]})
    assert response.status_code == 302


def test_launch_without_a_course_returns_to_the_platform_with_a_message(client, lms):
    query = _login(client, lms)
    token = lms.id_token(
        nonce=query["nonce"],
        overrides={"https://purl.imsglobal.org/spec/lti/claim/context": None},
    )
    response = client.post("/lti/launch/", {"id_token": token, "state": query["state"]})
    assert response.status_code == 302
    assert response["Location"].startswith("https://lms.example/return?lti_errormsg=")


def test_a_chinese_lms_opens_markwise_in_chinese(client, lms):
    response, _t, _q = _launch(client, lms, locale="zh-CN")
    assert PlatformUser.objects.get().user.language == "zh-hans"
    page = client.get(response["Location"])
    assert "尚未准备好" in page.content.decode()
