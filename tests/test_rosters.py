"""Courses and rosters run by teachers: services, CSV import edge cases, the pages."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import translation

from courses import rosters, services
from courses.models import Course, Enrollment, Role, User
from courses.rosters import RosterError, RowStatus
from grading.models import AuditEvent

from .conftest import PASSWORD, make_user

HEADER = "username,name,email,student_number\n"


def roster(rows: list[str], header: str = HEADER) -> str:
    return header + "\n".join(rows) + "\n"


def students_in(course: Course) -> set[str]:
    return set(
        Enrollment.objects.active()
        .filter(course=course, role=Role.STUDENT)
        .values_list("user__username", flat=True)
    )


@pytest.fixture
def client(client):
    """Pages in English, whatever the school's default language."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


# --- Courses ------------------------------------------------------------------------


def test_teacher_creates_a_course_and_teaches_it(client, teacher):
    client.force_login(teacher)
    response = client.post(
        reverse("teach:course_create"),
        {"title": "九年级语文", "code": "CHN-9A", "term": "2026秋季", "language": "zh-hans"},
    )
    course = Course.objects.get(code="CHN-9A")
    assert response.status_code == 302
    assert response["Location"] == reverse("teach:course", args=[course.pk])
    assert Enrollment.objects.get(course=course, user=teacher).role == Role.TEACHER
    assert AuditEvent.objects.filter(action="course.created", target_id=str(course.pk)).exists()


def test_course_form_errors_are_shown_by_field_in_both_languages(client, teacher, course):
    client.force_login(teacher)
    data = {"title": "", "code": course.code, "term": "", "language": "zh-hans"}
    response = client.post(reverse("teach:course_create"), data)
    assert response.status_code == 400
    form = response.context["form"]
    assert set(form.errors) == {"title", "code"}
    with translation.override("zh-hans"):
        client.cookies["django_language"] = "zh-hans"
        response = client.post(reverse("teach:course_create"), data, HTTP_ACCEPT_LANGUAGE="zh-hans")
    page = response.content.decode()
    assert "该字段是必填项。" in page  # "This field is required." from Django's catalogue
    assert "已存在" in page  # the duplicate code, in Chinese


def test_students_and_outsiders_cannot_create_courses(client, student, outsider):
    for user in (student, outsider):
        client.force_login(user)
        assert client.get(reverse("teach:course_create")).status_code == 403
        assert client.post(reverse("teach:course_create"), {"code": "X"}).status_code == 403
    assert not Course.objects.filter(code="X").exists()


def test_archiving_hides_the_course_from_students_and_keeps_everything(
    client, teacher, student, assignment, essay_question
):
    client.force_login(teacher)
    client.post(reverse("teach:course_archive", args=[assignment.course_id]), {"archived": "1"})
    client.force_login(student)
    assert assignment.title not in client.get(reverse("home")).content.decode()
    assert Course.objects.get(pk=assignment.course_id).archived
    assert AuditEvent.objects.filter(action="course.archived").count() == 1


# --- Enrollments ----------------------------------------------------------------------


def test_add_by_username_email_or_student_number(course, teacher):
    a = make_user("a01", email="a01@school.cn")
    b = make_user("b02", student_number="20260002")
    ta = make_user("helper")
    services.enrollment_add(
        course=course, identifier="a01@SCHOOL.cn", role="student", actor=teacher
    )
    services.enrollment_add(course=course, identifier="20260002", role="student", actor=teacher)
    services.enrollment_add(course=course, identifier="helper", role="ta", actor=teacher)
    assert {a.username, b.username} <= students_in(course)
    assert Enrollment.objects.get(course=course, user=ta).role == Role.TA
    with pytest.raises(ValidationError) as exc:
        services.enrollment_add(course=course, identifier="a01", role="student", actor=teacher)
    assert "already in this course" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        services.enrollment_add(course=course, identifier="nobody", role="student", actor=teacher)
    assert "nobody" in exc.value.message_dict["identifier"][0]


def test_removing_keeps_history_and_re_adding_starts_a_new_row(course, teacher, student):
    enrollment = Enrollment.objects.get(course=course, user=student)
    services.enrollment_end(enrollment=enrollment, actor=teacher)
    assert "student" not in students_in(course)
    services.enrollment_add(course=course, identifier="student", role="student", actor=teacher)
    rows = Enrollment.objects.filter(course=course, user=student).order_by("pk")
    assert [r.ended_at is None for r in rows] == [False, True]
    assert AuditEvent.objects.filter(action="enrollment.ended").count() == 1


def test_the_last_teacher_cannot_be_removed(course, teacher):
    with pytest.raises(ValidationError):
        services.enrollment_end(
            enrollment=Enrollment.objects.get(course=course, user=teacher), actor=teacher
        )


def test_roster_htmx_add_and_remove(client, course, teacher, outsider):
    client.force_login(teacher)
    url = reverse("teach:roster_add", args=[course.pk])
    response = client.post(
        url, {"identifier": "outsider", "role": "student"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert 'id="roster"' in response.content.decode() and "outsider" in response.content.decode()
    response = client.post(url, {"identifier": "ghost", "role": "student"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert "ghost" in response.content.decode()
    enrollment = Enrollment.objects.get(course=course, user=outsider)
    response = client.post(
        reverse("teach:enrollment_end", args=[enrollment.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert "1 former member" in response.content.decode()


# --- CSV import ---------------------------------------------------------------------


def test_preview_classifies_rows_and_changes_nothing(course, teacher, student):
    make_user("existing01")
    text = roster(
        [
            "new01,陈小雨,xiaoyu@school.cn,20260101",
            "existing01,,,",
            "student,李明,,",
            "bad01,王五,not-an-email,20260103",
            "new01,陈小雨,xiaoyu@school.cn,20260101",
            ",没有账号,,",
            "",
        ]
    )
    users_before = User.objects.count()
    preview = rosters.roster_preview(course=course, text=text)
    statuses = [(row.line, row.status) for row in preview.rows]
    assert statuses == [
        (2, RowStatus.NEW),
        (3, RowStatus.EXISTING),
        (4, RowStatus.ENROLLED),
        (5, RowStatus.INVALID),
        (6, RowStatus.INVALID),
        (7, RowStatus.INVALID),
    ]
    problems = {row.line: " ".join(row.problems) for row in preview.rows}
    assert "not-an-email" in problems[5]
    assert "Repeats row 2" in problems[6]
    assert "No username" in problems[7]
    assert User.objects.count() == users_before
    assert students_in(course) == {"student"}


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "gb18030"], ids=["utf8", "utf8-bom", "gb18030"]
)
def test_import_reads_bom_and_excel_encodings_with_chinese_headers(course, teacher, encoding):
    text = "学号,姓名,邮箱\n20260201,欧阳娜娜,\n20260202,司马光,sima@school.cn\n"
    data = text.encode(encoding)
    result = rosters.roster_import(course=course, text=rosters.roster_decode(data), actor=teacher)
    assert sorted(u.name for u, _ in result.created) == ["司马光", "欧阳娜娜"]
    user = User.objects.get(username="20260201")  # the student number is the username
    assert user.student_number == "20260201" and user.name == "欧阳娜娜"
    assert user.must_change_password


def test_re_import_is_idempotent(course, teacher):
    text = roster([f"s{i:02d},学生{i},,2026{i:04d}" for i in range(5)])
    first = rosters.roster_import(course=course, text=text, actor=teacher)
    events = AuditEvent.objects.filter(action="roster.imported").count()
    second = rosters.roster_import(course=course, text=text, actor=teacher)
    assert len(first.created) == 5 and len(first.enrolled) == 5
    assert second.created == [] and second.enrolled == [] and second.unchanged == 5
    assert Enrollment.objects.filter(course=course, role=Role.STUDENT).count() == 5
    assert AuditEvent.objects.filter(action="roster.imported").count() == events


def test_import_refuses_conflicting_accounts(course, teacher):
    make_user("zhao", student_number="20260301", email="zhao@school.cn")
    text = roster(
        [
            "qian,钱,,20260301",  # someone else's student number
            "sun,孙,ZHAO@school.cn,",  # someone else's e-mail
            "teacher,王老师,,",  # teaches here
            "li li,李,,",  # a space is not allowed in a username
        ]
    )
    preview = rosters.roster_preview(course=course, text=text)
    assert [row.status for row in preview.rows] == [RowStatus.INVALID] * 4
    assert "belongs to another account" in preview.rows[0].problems[0]
    assert "already used by account zhao" in preview.rows[1].problems[0]
    assert "teaches this course" in preview.rows[2].problems[0]
    assert not preview.has_changes


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"name,email\n\xe7\x8e\x8b,\n", "column is required"),
        (b"\xff\xfe\x00\x00garbage" * 10, "not text"),
        (b"x" * 1_000_001, "larger than 1 MB"),
    ],
    ids=["empty", "no-username-column", "binary", "too-big"],
)
def test_unreadable_files_get_a_clear_message(course, data, message):
    with pytest.raises(RosterError, match=message):
        rosters.roster_preview(course=course, text=rosters.roster_decode(data))


def test_tab_separated_and_semicolon_files(course, teacher):
    for sep in ("\t", ";"):
        text = f"username{sep}name\nt{ord(sep)}{sep}田\n"
        preview = rosters.roster_preview(course=course, text=text)
        assert [r.status for r in preview.rows] == [RowStatus.NEW]


def test_import_pages_preview_then_import_then_print_passwords(client, course, teacher):
    client.force_login(teacher)
    url = reverse("teach:roster_import", args=[course.pk])
    rows = [f"x{i:02d},学生{i:02d},,2026{i:04d}" for i in range(30)] + ["oops,坏行,bad@,"]
    upload = SimpleUploadedFile(
        "roster.csv", ("\ufeff" + roster(rows)).encode("utf-8"), content_type="text/csv"
    )
    response = client.post(url, {"file": upload, "action": "preview"})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.counts == {"new": 30, "existing": 0, "enrolled": 0, "invalid": 1}
    assert Enrollment.objects.filter(course=course, role=Role.STUDENT).count() == 0
    response = client.post(url, {"csv_text": response.context["text"], "action": "import"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    created = response.context["result"].created
    assert len(created) == 30
    username, password = created[0][0].username, created[0][1]
    assert password in response.content.decode()
    assert len(students_in(course)) == 30
    stored = User.objects.get(username=username).password
    assert stored.startswith("pbkdf2_sha256_initial$") and password not in stored
    # The student logs in with the printed password and must choose their own first.
    client.logout()
    # Through the login form, as the student does (django-axes, the login throttle, refuses
    # client.login(): it authenticates without a request to count attempts against).
    login = client.post(reverse("login"), {"username": username, "password": password})
    assert login.status_code == 302
    assert not User.objects.get(username=username).password.startswith("pbkdf2_sha256_initial")
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"] == reverse("password_change")
    response = client.post(
        reverse("password_change"),
        {
            "old_password": password,
            "new_password1": "A-much-better-1",
            "new_password2": "A-much-better-1",
        },
    )
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    assert not User.objects.get(username=username).must_change_password


def test_import_page_reports_a_bad_file(client, course, teacher):
    client.force_login(teacher)
    upload = SimpleUploadedFile("roster.csv", b"name\n\xe7\x8e\x8b\n", content_type="text/csv")
    response = client.post(reverse("teach:roster_import", args=[course.pk]), {"file": upload})
    assert response.status_code == 400
    assert "column is required" in response.content.decode()


def test_existing_users_are_not_forced_to_change_password(client, student):
    login = client.post(reverse("login"), {"username": "student", "password": PASSWORD})
    assert login.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_e_mail_checks_ignore_case_and_catch_repeats_in_the_file(course, teacher):
    make_user("alice", email="Alice@School.edu")
    long_address = "a" * 250 + "@school.cn"
    text = roster(
        [
            "alice2,Alice,alice@school.edu,",
            "p1,甲,same@school.cn,",
            "p2,乙,SAME@school.cn,",
            f"p3,丙,{long_address},",
        ]
    )
    rows = rosters.roster_preview(course=course, text=text).rows
    assert [r.status for r in rows] == [
        RowStatus.INVALID,
        RowStatus.NEW,
        RowStatus.INVALID,
        RowStatus.INVALID,
    ]
    assert "already used by account alice" in rows[0].problems[0]
    assert "also on row 3" in rows[2].problems[0]
    assert "too long" in rows[3].problems[0]


def test_a_student_number_alone_finds_the_existing_account(course, teacher):
    wang = make_user("wangfang", student_number="20260101")
    result = rosters.roster_import(course=course, text="学号,姓名\n20260101,王芳\n", actor=teacher)
    assert result.created == [] and result.enrolled == [wang]


def test_an_oversized_field_is_a_clear_error_not_a_crash(client, course, teacher):
    client.force_login(teacher)
    text = "username,name\nbig," + "长" * 200_000 + "\n"
    response = client.post(
        reverse("teach:roster_import", args=[course.pk]), {"csv_text": text, "action": "preview"}
    )
    assert response.status_code == 400
    assert "cannot be read as CSV" in response.content.decode()
