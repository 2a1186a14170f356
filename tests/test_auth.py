"""Logging in and the home page, per role."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from .conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def login(client, username: str):
    return client.post(reverse("login"), {"username": username, "password": PASSWORD}, follow=True)


def test_anonymous_is_sent_to_login(client, db):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert 'name="username"' in page.content.decode()


def test_teacher_sees_their_courses(client, teacher, student, assignment):
    page = login(client, "teacher").content.decode()
    assert "CHN-8A" in page
    assert "王老师" in page


def test_student_sees_published_assignments_only(client, student, assignment, course):
    from courses.models import Assignment

    Assignment.objects.create(course=course, title="还没发布的草稿")
    page = login(client, "student").content.decode()
    assert assignment.title in page
    assert "还没发布的草稿" not in page
    assert "CHN-8A" not in page  # students do not get the teaching table


def test_outsider_sees_nothing_to_do(client, outsider, assignment):
    response = login(client, "outsider")
    page = response.content.decode()
    assert response.status_code == 200
    assert assignment.title not in page


def test_other_teacher_does_not_see_foreign_course(client, other_teacher, course):
    page = login(client, "other_teacher").content.decode()
    assert "SCI-8B" in page and "CHN-8A" not in page


def test_wrong_password_is_refused_with_message(client, teacher):
    response = client.post(reverse("login"), {"username": "teacher", "password": "nope"})
    assert response.status_code == 200
    assert response.wsgi_request.user.is_anonymous
    assert 'role="alert"' in response.content.decode()


@pytest.mark.parametrize("language,text", [("en", "Log out"), ("zh-hans", "退出")])
def test_logout_and_languages(client, teacher, language, text):
    client.force_login(teacher)
    client.post(reverse("set_language"), {"language": language, "next": "/"})
    page = client.get(reverse("home")).content.decode()
    assert text in page
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


# --- Brute-force protection (django-axes) ----------------------------------------------

SCHOOL_NAT = "203.0.113.7"  # one public address for a whole school behind NAT
WRONG = "not-the-password"


def attempt(client, username: str, password: str, ip: str = SCHOOL_NAT, language: str = "en"):
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=ip,
        HTTP_ACCEPT_LANGUAGE=language,
    )


def lock_out(client, username: str, limit: int, ip: str = SCHOOL_NAT):
    """Fail `limit` times; every attempt before the last still gets the login form."""
    for _ in range(limit - 1):
        response = attempt(client, username, WRONG, ip)
        assert response.status_code == 200 and 'name="username"' in response.content.decode()
    return attempt(client, username, WRONG, ip)


def test_wrong_passwords_lock_the_account_with_a_message(client, teacher, settings):
    assert settings.AXES_ENABLED and settings.AXES_FAILURE_LIMIT <= 10
    locked = lock_out(client, "teacher", settings.AXES_FAILURE_LIMIT)
    assert locked.status_code == 429
    assert "registration/locked_out.html" in [t.name for t in locked.templates]
    page = locked.content.decode()
    assert "Too many failed logins" in page and 'role="alert"' in page
    assert f"{int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)} minutes" in page
    # The right password is refused too until the cool-off passes or an administrator
    # unlocks the account: the throttle is what stops guessing, not the password check.
    right = attempt(client, "teacher", PASSWORD)
    assert right.status_code == 429 and right.wsgi_request.user.is_anonymous
    assert client.get(reverse("home")).status_code == 302


def test_lockout_page_is_translated(client, teacher, settings):
    locked = lock_out(client, "teacher", settings.AXES_FAILURE_LIMIT)
    assert locked.status_code == 429
    chinese = attempt(client, "teacher", PASSWORD, language="zh-hans").content.decode()
    assert "登录失败次数过多" in chinese


def test_classmates_behind_the_same_address_are_not_locked_out(client, teacher, student, settings):
    lock_out(client, "teacher", settings.AXES_FAILURE_LIMIT)
    # Same school network, another account: the lock is per username and address together.
    response = attempt(client, "student", PASSWORD)
    assert response.status_code == 302 and response.wsgi_request.user.username == "student"
    # And the teacher at home (another address) is not locked out by the attacker at school.
    client.logout()
    response = attempt(client, "teacher", PASSWORD, ip="198.51.100.20")
    assert response.status_code == 302


def test_the_reset_command_unlocks(client, teacher, settings):
    from django.core.management import call_command

    lock_out(client, "teacher", settings.AXES_FAILURE_LIMIT)
    assert attempt(client, "teacher", PASSWORD).status_code == 429
    call_command("axes_reset_username", "teacher")
    assert attempt(client, "teacher", PASSWORD).status_code == 302


def test_an_administrator_unlocks_in_admin(client, teacher, admin_user, settings):
    from axes.models import AccessAttempt

    lock_out(client, "teacher", settings.AXES_FAILURE_LIMIT)
    locked = AccessAttempt.objects.get(username="teacher")
    client.force_login(admin_user)
    listing = client.get(reverse("admin:axes_accessattempt_changelist")).content.decode()
    assert "teacher" in listing
    delete = reverse("admin:axes_accessattempt_delete", args=[locked.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    client.logout()
    assert attempt(client, "teacher", PASSWORD).status_code == 302


def test_the_lock_lifts_after_the_cool_off(client, teacher, settings):
    from axes.models import AccessAttempt

    lock_out(client, "teacher", settings.AXES_FAILURE_LIMIT)
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - datetime.timedelta(seconds=1)
    )
    assert attempt(client, "teacher", PASSWORD).status_code == 302


def test_a_successful_login_forgets_earlier_mistakes(client, teacher, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "teacher", WRONG)
    assert attempt(client, "teacher", PASSWORD).status_code == 302
    client.logout()
    # A typo on another day does not lock the account: the count started again.
    assert attempt(client, "teacher", WRONG).status_code == 200
    assert attempt(client, "teacher", PASSWORD).status_code == 302


def test_cool_off_and_limit_come_from_the_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXES_", "LOGIN_"))}
    env.update(LOGIN_FAILURE_LIMIT="7", LOGIN_COOLOFF_MINUTES="45")
    script = (
        "import config.settings as s; "
        "print(s.AXES_FAILURE_LIMIT, int(s.AXES_COOLOFF_TIME.total_seconds()), "
        "s.AXES_LOCKOUT_PARAMETERS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=2) == ["7", "2700", "[['username', 'ip_address']]\n"]


# --- The first-login password change -----------------------------------------------------


@pytest.fixture
def first_login(client, student):
    """A student signed in with the initial password printed on the roster."""
    student.must_change_password = True
    student.save(update_fields=["must_change_password"])
    assert attempt(client, "student", PASSWORD).status_code == 302
    return student


def change_password(client, new: str, language: str = "en"):
    return client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
        HTTP_ACCEPT_LANGUAGE=language,
    )


@pytest.mark.parametrize(
    "language,message",
    [("en", "different from the one you have now"), ("zh-hans", "不能与当前密码相同")],
)
def test_the_initial_password_cannot_be_chosen_again(client, first_login, language, message):
    response = change_password(client, PASSWORD, language)
    assert response.status_code == 200
    assert message in response.content.decode()
    first_login.refresh_from_db()
    assert first_login.must_change_password and first_login.check_password(PASSWORD)
    assert client.get(reverse("home")).status_code == 302  # still sent to choose one


def test_django_validators_still_apply_to_the_new_password(client, first_login):
    response = change_password(client, "12345678")
    assert response.status_code == 200
    assert "entirely numeric" in response.content.decode()
    response = change_password(client, "Qiutian-xiaoyuan-2026")
    assert response.status_code == 302
    first_login.refresh_from_db()
    assert not first_login.must_change_password
    assert first_login.check_password("Qiutian-xiaoyuan-2026")


@pytest.mark.parametrize(
    "proxies,forwarded,expected",
    [
        (0, "198.51.100.9", SCHOOL_NAT),  # no proxy of ours: the header is the client's own
        (1, "198.51.100.9", "198.51.100.9"),  # what our proxy appended
        (1, "1.2.3.4, 198.51.100.9", "198.51.100.9"),  # a forged entry left of it is ignored
        (2, "198.51.100.9, 10.0.0.2", "198.51.100.9"),
        (2, "10.0.0.2", SCHOOL_NAT),  # fewer entries than proxies: not through them
        (1, "not-an-address", SCHOOL_NAT),
    ],
)
def test_the_throttle_counts_against_the_real_client_address(
    settings, proxies, forwarded, expected
):
    from django.test import RequestFactory

    from courses.accounts import client_ip

    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().post("/", REMOTE_ADDR=SCHOOL_NAT, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_behind_a_proxy_a_forged_address_does_not_dodge_the_lock(client, teacher, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("login"),
            {"username": "teacher", "password": WRONG},
            REMOTE_ADDR="10.0.0.2",  # the proxy
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}, {SCHOOL_NAT}",
        )
    locked = client.post(
        reverse("login"),
        {"username": "teacher", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR=f"192.0.2.99, {SCHOOL_NAT}",
    )
    assert locked.status_code == 429
