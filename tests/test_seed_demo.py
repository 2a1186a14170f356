from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from courses.models import Assignment, Course, Enrollment, QuestionKind, User
from grading.models import Answer, Rubric, Submission


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (User, Course, Enrollment, Assignment, Rubric, Submission, Answer)
    }


def test_seed_demo_is_idempotent_and_realistic(db, settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=io.StringIO())
    first = counts()
    call_command("seed_demo", stdout=io.StringIO())
    assert counts() == first

    assert User.objects.filter(username__startswith="student").count() >= 31
    teacher = User.objects.get(username="teacher")
    assert teacher.check_password("markwise-demo")
    assert first["Course"] == 2

    essay = Assignment.objects.get(questions__kind=QuestionKind.ESSAY)
    rubric = essay.questions.get(kind=QuestionKind.ESSAY).rubric
    assert [c.title for c in rubric.criteria.all()] == [
        "内容切题",
        "结构清晰",
        "语言表达",
        "文采创意",
        "书写规范",
    ]
    assert {c.max_points for c in rubric.criteria.all()} == {20}
    short = Assignment.objects.get(questions__kind=QuestionKind.SHORT_ANSWER)
    assert short.questions.get(kind=QuestionKind.SHORT_ANSWER).reference_answer
    assert short.questions.exclude(kind=QuestionKind.SHORT_ANSWER).count() >= 3

    essays = list(
        Answer.objects.filter(question__kind=QuestionKind.ESSAY).values_list("text", flat=True)
    )
    assert "" in essays  # a blank answer
    assert any("满分" in text for text in essays)  # one tries to talk the grader round
    assert len(set(essays)) == len(essays)  # otherwise every essay is the student's own
    # The three shipped templates (migration) plus the demo science template.
    assert Rubric.objects.filter(is_template=True).count() == 4


def test_seed_demo_refused_without_debug(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")
    assert not User.objects.exists()
    call_command("seed_demo", "--allow-demo-passwords", stdout=io.StringIO())
    assert User.objects.filter(username="teacher").exists()
