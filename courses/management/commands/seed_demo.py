"""Create (or complete) the demo school. Safe to run any number of times."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from courses import demo_data as data
from courses.models import (
    Assignment,
    AssignmentState,
    Course,
    Enrollment,
    Language,
    Question,
    QuestionKind,
    Role,
    User,
)
from grading.models import (
    Answer,
    AnswerStatus,
    Criterion,
    Level,
    Rubric,
    Submission,
    SubmissionStatus,
)
from grading.rubric_templates import ESSAY_RUBRIC, TEMPLATES, rubric_install
from grading.services import answers_enqueue

CLASS_SIZE = 30  # students besides `student`
ESSAY_SUBMITTED = 24  # the rest of the class has not handed in yet
SCIENCE_SUBMITTED = 20


class Command(BaseCommand):
    help = "Create the demo school (teacher, ~31 students, two courses, graded-ready answers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--allow-demo-passwords",
            action="store_true",
            help="Allow the well-known demo password even when DEBUG is off.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["allow_demo_passwords"]:
            raise CommandError(
                "Refusing to create accounts with the public demo password while DEBUG is off. "
                "Pass --allow-demo-passwords if this really is a demo server."
            )
        with transaction.atomic():
            summary = seed()
        self.stdout.write(self.style.SUCCESS("Demo school ready."))
        for key, value in summary.items():
            self.stdout.write(f"  {key}: {value}")
        self.stdout.write(
            "Logins (password "
            f"{settings.DEMO_PASSWORD}): admin (site administrator), teacher, student, "
            f"student01 … student{CLASS_SIZE:02d}"
        )


def seed() -> dict[str, int]:
    password_holder = _password_holder()
    _user("admin", "管理员", password_holder, is_staff=True, is_superuser=True)
    teacher = _user("teacher", "王老师", password_holder, email="teacher@example.edu")
    students = [_user("student", "李明", password_holder, student_number="20260001")]
    for i in range(1, CLASS_SIZE + 1):
        name = data.SURNAMES[i % len(data.SURNAMES)] + data.GIVEN_NAMES[(i * 7) % 30]
        students.append(
            _user(f"student{i:02d}", name, password_holder, student_number=f"2026{i + 1:04d}")
        )

    chinese = _course("CHN-8A", "八年级语文（一班）", "2026秋季", Language.ZH_HANS)
    science = _course("SCI-8A", "Grade 8 Science", "Fall 2026", Language.EN)
    for course in (chinese, science):
        _enroll(course, teacher, Role.TEACHER)
        for student in students:
            _enroll(course, student, Role.STUDENT)

    # Templates are offered to every teacher; the teacher's own copies are used here.
    for spec in TEMPLATES:  # installed by a migration; again here in case they were deleted
        _rubric(spec, owner=None, is_template=True)
    _rubric(data.SCIENCE_RUBRIC, owner=None, is_template=True)
    essay_rubric = _rubric(ESSAY_RUBRIC, owner=teacher, is_template=False)
    science_rubric = _rubric(data.SCIENCE_RUBRIC, owner=teacher, is_template=False)

    now = timezone.now()
    essay_assignment, created_essay = _assignment(
        chinese,
        "期中作文：那一刻，我长大了",
        "请认真审题，写一篇记叙文，并完成两道基础题。提交后不能修改。",
        Language.ZH_HANS,
        due_at=now - datetime.timedelta(days=1),
    )
    if created_essay:
        _question(
            essay_assignment,
            1,
            QuestionKind.ESSAY,
            data.ESSAY_PROMPT,
            essay_rubric,
            reference=data.ESSAY_REFERENCE,
            guidelines=data.ESSAY_GUIDELINES,
        )
        for order, item in enumerate(data.ESSAY_ASSIGNMENT_OBJECTIVE, start=2):
            _objective(essay_assignment, order, item)

    science_assignment, created_science = _assignment(
        science,
        "Moon phases check-in",
        "Answer in full sentences. You may submit twice before the due date.",
        Language.EN,
        due_at=now + datetime.timedelta(days=5),
        attempts_allowed=2,
    )
    if created_science:
        _question(
            science_assignment,
            1,
            QuestionKind.SHORT_ANSWER,
            data.SCIENCE_PROMPT,
            science_rubric,
            reference=data.SCIENCE_REFERENCE,
            guidelines=data.SCIENCE_GUIDELINES,
        )
        for order, item in enumerate(data.SCIENCE_ASSIGNMENT_OBJECTIVE, start=2):
            _objective(science_assignment, order, item)

    _submit_all(essay_assignment, students[: ESSAY_SUBMITTED + 1], _essay_text)
    _submit_all(science_assignment, students[: SCIENCE_SUBMITTED + 1], _science_text)
    # Handed-in work is graded as soon as a qcluster runs (`make demo` starts one).
    answers_enqueue(
        answer_ids=Answer.objects.filter(
            status=AnswerStatus.PENDING,
            submission__assignment__in=[essay_assignment, science_assignment],
        ).values_list("pk", flat=True)
    )

    return {
        "students": len(students),
        "courses": 2,
        "submissions": Submission.objects.filter(
            assignment__in=[essay_assignment, science_assignment]
        ).count(),
        "answers": Answer.objects.filter(
            submission__assignment__in=[essay_assignment, science_assignment]
        ).count(),
    }


def _password_holder() -> User:
    """Hash the demo password once; PBKDF2 for 33 accounts would take seconds."""
    holder = User(username="_")
    holder.set_password(settings.DEMO_PASSWORD)
    return holder


def _user(
    username: str,
    name: str,
    password_holder: User,
    *,
    email: str = "",
    student_number: str | None = None,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    user, _ = User.objects.update_or_create(
        username=username,
        defaults={
            "name": name,
            "email": email or f"{username}@example.edu",
            "student_number": student_number,
            "is_staff": is_staff,
            "is_superuser": is_superuser,
            "password": password_holder.password,
            "is_active": True,
        },
    )
    return user


def _course(code: str, title: str, term: str, language: str) -> Course:
    course, _ = Course.objects.get_or_create(
        code=code, defaults={"title": title, "term": term, "language": language}
    )
    return course


def _enroll(course: Course, user: User, role: str) -> None:
    Enrollment.objects.active().get_or_create(course=course, user=user, defaults={"role": role})


def _rubric(spec: dict[str, Any], *, owner: User | None, is_template: bool) -> Rubric:
    return rubric_install(
        spec,
        owner=owner,
        is_template=is_template,
        rubric_model=Rubric,
        criterion_model=Criterion,
        level_model=Level,
    )


def _assignment(
    course: Course,
    title: str,
    instructions: str,
    language: str,
    *,
    due_at: datetime.datetime,
    attempts_allowed: int = 1,
) -> tuple[Assignment, bool]:
    return Assignment.objects.get_or_create(
        course=course,
        title=title,
        defaults={
            "instructions": instructions,
            "language": language,
            "state": AssignmentState.PUBLISHED,
            "due_at": due_at,
            "attempts_allowed": attempts_allowed,
        },
    )


def _question(
    assignment: Assignment,
    order: int,
    kind: str,
    prompt: str,
    rubric: Rubric,
    *,
    reference: str,
    guidelines: str,
) -> Question:
    return Question.objects.create(
        assignment=assignment,
        order=order,
        kind=kind,
        prompt=prompt,
        rubric=rubric,
        points=rubric.max_points,
        reference_answer=reference,
        grader_guidelines=guidelines,
    )


def _objective(assignment: Assignment, order: int, item: dict[str, Any]) -> Question:
    return Question.objects.create(
        assignment=assignment,
        order=order,
        kind=item["kind"],
        prompt=item["prompt"],
        options=item.get("options", []),
        answer_key=item["answer_key"],
        points=item["points"],
    )


def _essay_text(index: int) -> str:
    if index < len(data.ESSAYS):
        return data.ESSAYS[index]
    n = index - len(data.ESSAYS)
    theme = data.ESSAY_THEMES[n % len(data.ESSAY_THEMES)]
    opening = theme["open"][n % len(theme["open"])]
    middle = theme["middle"][(n // 3) % len(theme["middle"])]
    ending = theme["end"][(n // 2) % len(theme["end"])]
    return f"{opening}\n\n{middle}\n\n{ending}"


def _science_text(index: int) -> str:
    if index < len(data.SCIENCE_ANSWERS):
        return data.SCIENCE_ANSWERS[index]
    picks = data.SCIENCE_SENTENCES
    n = index - len(data.SCIENCE_ANSWERS)
    chosen = [picks[(n + k * (n % 3 + 1)) % len(picks)] for k in range(2 + n % 3)]
    return " ".join(dict.fromkeys(chosen))


def _submit_all(assignment: Assignment, students: list[User], subjective_text: Any) -> None:
    """Hand in one submission per student, unless they already have one."""
    questions = list(assignment.questions.order_by("order"))
    for index, student in enumerate(students):
        due = assignment.due_at or timezone.now()
        submission, created = Submission.objects.get_or_create(
            assignment=assignment,
            student=student,
            attempt=1,
            defaults={
                "status": SubmissionStatus.SUBMITTED,
                "submitted_at": min(due, timezone.now()) - datetime.timedelta(hours=index + 1),
            },
        )
        if not created:
            continue
        answers = []
        for question in questions:
            answer = Answer(submission=submission, question=question)
            if question.is_subjective:
                answer.text = subjective_text(index)
            else:
                responses = data.OBJECTIVE_RESPONSES[question.prompt]
                response = responses[index % len(responses)]
                if isinstance(response, list):
                    answer.choices = response
                else:
                    answer.text = response
            answers.append(answer)
        Answer.objects.bulk_create(answers)
