"""Request and response examples for the OpenAPI document (one school, one essay)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample


def _response(name: str, value: Any, *statuses: int) -> OpenApiExample:
    return OpenApiExample(
        name,
        value=value,
        response_only=True,
        status_codes=[str(status) for status in statuses or (200,)],
    )


def _request(name: str, value: Any) -> OpenApiExample:
    return OpenApiExample(name, value=value, request_only=True)


_COURSE = {
    "id": 3,
    "code": "CHN-8A",
    "title": "八年级语文",
    "term": "2026秋季",
    "language": "zh-hans",
    "archived": False,
    "created_at": "2026-09-01T08:00:00+08:00",
}
COURSE = _response("A course", _COURSE)
COURSE_PAGE = _response("Courses", _COURSE)

_ENROLLMENT = {
    "id": 41,
    "course": 3,
    "user": {"id": 17, "username": "liming", "name": "李明", "student_number": "20260117"},
    "role": "student",
    "active": True,
    "created_at": "2026-09-01T08:00:00+08:00",
    "ended_at": None,
}
ENROLLMENT = _response("The enrollment", _ENROLLMENT, 201)
ENROLLMENT_PAGE = _response("Enrollments", _ENROLLMENT)
ENROLLMENT_CREATE = _request("Enroll a student", {"identifier": "20260117", "role": "student"})
ENROLLMENT_ENDED = _response(
    "The ended enrollment",
    {**_ENROLLMENT, "active": False, "ended_at": "2027-01-20T17:00:00+08:00"},
)

_CRITERION = {
    "id": 11,
    "order": 1,
    "title": "内容切题",
    "description": "紧扣题意，中心明确。",
    "max_points": 20,
    "scoring": "range",
    "levels": [
        {"points": 16, "title": "一等", "descriptor": "切合题意，中心突出。"},
        {"points": 0, "title": "四等", "descriptor": "偏离题意。"},
    ],
}
_RUBRIC = {
    "id": 5,
    "lineage": "0b6f4d2e-8f0e-4b1e-9d55-0d0f3c1f2a77",
    "version": 1,
    "title": "记叙文评分标准",
    "description": "",
    "language": "zh-hans",
    "is_template": False,
    "owner": "wang",
    "max_points": 20,
    "criteria": [_CRITERION],
    "created_at": "2026-09-02T10:00:00+08:00",
}
RUBRIC = _response("A rubric", _RUBRIC, 200, 201)
RUBRIC_PAGE = _response("Rubrics", _RUBRIC)
RUBRIC_CREATE = _request(
    "A rubric with one criterion",
    {
        "title": "记叙文评分标准",
        "language": "zh-hans",
        "criteria": [
            {
                "title": "内容切题",
                "description": "紧扣题意，中心明确。",
                "max_points": 20,
                "scoring": "range",
                "levels": [
                    {"points": 16, "title": "一等", "descriptor": "切合题意，中心突出。"},
                    {"points": 0, "title": "四等", "descriptor": "偏离题意。"},
                ],
            }
        ],
    },
)
RUBRIC_COPY = _request("Copy under a new title", {"title": "记叙文评分标准（八年级）"})

_ASSIGNMENT = {
    "id": 42,
    "course": 3,
    "title": "期中作文",
    "instructions": "以“那一刻，我长大了”为题，写一篇不少于600字的记叙文。",
    "language": "zh-hans",
    "state": "published",
    "due_at": "2026-11-10T23:59:00+08:00",
    "late_policy": "refuse",
    "attempts_allowed": 1,
    "grading_mode": "ai_review",
    "release_policy": "manual",
    "anonymous_grading": False,
    "grades_released_at": None,
    "created_at": "2026-10-20T09:00:00+08:00",
    "updated_at": "2026-10-20T09:30:00+08:00",
}
ASSIGNMENT_PAGE = _response("Assignments", _ASSIGNMENT)
ASSIGNMENT_DETAIL = _response(
    "An assignment as staff see it",
    {
        **_ASSIGNMENT,
        "questions": [
            {
                "id": 101,
                "order": 1,
                "kind": "single_choice",
                "prompt": "“长大”一词在文中的意思是？",
                "points": 2,
                "max_points": 2,
                "options": [{"key": "A", "text": "身体长高"}, {"key": "B", "text": "心智成熟"}],
                "answer_key": {"correct": ["B"]},
                "rubric": None,
                "reference_answer": "",
                "grader_guidelines": "",
            },
            {
                "id": 102,
                "order": 2,
                "kind": "essay",
                "prompt": "以“那一刻，我长大了”为题写一篇记叙文。",
                "points": 1,
                "max_points": 20,
                "options": [],
                "answer_key": {},
                "rubric": _RUBRIC,
                "reference_answer": "围绕具体的成长瞬间展开。",
                "grader_guidelines": "字数不足600字，结构分最多12分。",
            },
        ],
    },
)

_SUBMISSION = {
    "id": 900,
    "assignment": 42,
    "student": {"id": 17, "username": "liming", "name": "李明", "student_number": "20260117"},
    "student_label": "李明",
    "attempt": 1,
    "status": "submitted",
    "submitted_at": "2026-11-09T20:15:00+08:00",
    "is_late": False,
    "answers": [
        {"id": 5001, "question": 101, "text": "", "choices": ["B"], "status": "pending"},
        {
            "id": 5002,
            "question": 102,
            "text": "那一刻，我长大了。那天妈妈生病……",
            "choices": [],
            "status": "pending",
        },
    ],
    "created_at": "2026-11-09T20:15:00+08:00",
    "updated_at": "2026-11-09T20:15:00+08:00",
}
SUBMISSION = _response("The submission", _SUBMISSION, 200, 201)
SUBMISSION_PAGE = _response("Submissions", _SUBMISSION)
SUBMISSION_CREATE_STUDENT = _request(
    "A student hands in",
    {
        "answers": [
            {"question": 101, "text": "B"},
            {"question": 102, "text": "那一刻，我长大了。那天妈妈生病……"},
        ]
    },
)
SUBMISSION_CREATE_KEY = _request(
    "A school system hands in a transcribed paper",
    {
        "student": "20260117",
        "answers": [
            {"question": 101, "text": "B"},
            {"question": 102, "text": "那一刻，我长大了。那天妈妈生病……"},
        ],
    },
)

_ASSESSMENT = {
    "id": 7001,
    "answer": 5002,
    "scorer": "llm",
    "status": "completed",
    "is_current": True,
    "model": "Qwen/Qwen3-4B-Instruct-2507",
    "prompt_version": "essay-v3",
    "total": 16,
    "max_total": 20,
    "confidence": 0.82,
    "flags": [],
    "feedback": "选材真实，细节具体；结尾可以再点题。",
    "scores": [
        {"criterion": 11, "points": 16, "max_points": 20, "rationale": "紧扣题意。"},
    ],
    "error": "",
    "latency_ms": 1840,
    "prompt_tokens": 912,
    "completion_tokens": 164,
    "attempt": 1,
    "created_at": "2026-11-10T01:02:03+08:00",
}
ASSESSMENT_PAGE = _response("Assessments", _ASSESSMENT)

_GRADE = {
    "id": 3001,
    "answer": 5002,
    "question": 102,
    "submission": 900,
    "points": 18,
    "max_points": 20,
    "feedback": "选材真实，细节具体；结尾可以再点题。",
    "source": "override",
    "override_reason": "结尾点题，应得高分。",
    "criteria": [
        {"criterion": 11, "title": "内容切题", "points": 18, "max_points": 20, "ai_points": 16}
    ],
    "approved_by": "王老师",
    "approved_at": "2026-11-11T10:00:00+08:00",
    "version": 2,
}
GRADE = _response("The grade", _GRADE)
GRADE_PAGE = _response("Grades", _GRADE)
GRADE_ACCEPT = _request("Accept the proposal", {})
GRADE_OVERRIDE = _request(
    "Override one criterion",
    {"scores": [{"criterion": 11, "points": 18}], "reason": "结尾点题，应得高分。"},
)

ANSWER = _response(
    "An answer under review",
    {
        "id": 5002,
        "submission": 900,
        "student_label": "李明",
        "question": 102,
        "text": "那一刻，我长大了。那天妈妈生病……",
        "choices": [],
        "status": "graded",
        "status_reason": "",
        "proposal": _ASSESSMENT,
        "grade": None,
        "updated_at": "2026-11-10T01:02:03+08:00",
    },
)
ANSWER_PAGE = _response("Answers", ANSWER.value)

BULK_APPROVE = _request("Accept three proposals", {"answers": [5002, 5004, 5006]})
BULK_APPROVED = _response(
    "Result",
    {
        "approved": 2,
        "approved_low_confidence": 0,
        "skipped_low_confidence": 1,
        "refused": 0,
        "skipped": 1,
    },
)

_PROGRESS: dict[str, Any] = {
    "counts": {"pending": 0, "grading": 12, "graded": 30, "needs_manual": 1, "approved": 3},
    "total": 46,
    "done": 34,
    "in_flight": 12,
    "finished": False,
}
PROGRESS = _response("Grading under way", _PROGRESS)
GRADING_START = _request("Grade what changed", {"force": False})
GRADING_STARTED = _response(
    "Queued",
    {
        "queued": 43,
        "progress": {**_PROGRESS, "counts": {**_PROGRESS["counts"], "grading": 43, "graded": 0}},
    },
    202,
)
RELEASED = _response(
    "Released",
    {
        "assignment": 42,
        "grades_released_at": "2026-11-12T08:00:00+08:00",
        "release_policy": "manual",
    },
)
HIDDEN = _response(
    "Hidden", {"assignment": 42, "grades_released_at": None, "release_policy": "manual"}
)

_REGRADE = {
    "id": 61,
    "answer": 5002,
    "assignment": 42,
    "question": 102,
    "comment": "我的结尾其实点题了，请老师再看看。",
    "status": "open",
    "response": "",
    "created_at": "2026-11-12T19:00:00+08:00",
    "answered_at": None,
}
REGRADE = _response("The request", _REGRADE, 201)
REGRADE_PAGE = _response("Regrade requests", _REGRADE)
REGRADE_CREATE = _request(
    "Ask about one answer", {"answer": 5002, "comment": "我的结尾其实点题了，请老师再看看。"}
)
REGRADE_ANSWER = _request(
    "Answer and change the grade",
    {
        "response": "同意，内容切题加2分。",
        "scores": [{"criterion": 11, "points": 18}],
        "reason": "结尾点题。",
    },
)
REGRADE_ANSWERED = _response(
    "Answered",
    {
        **_REGRADE,
        "status": "answered",
        "response": "同意，内容切题加2分。",
        "answered_at": "2026-11-13T09:00:00+08:00",
    },
)

AUDIT_PAGE = _response(
    "Audit events",
    {
        "id": 1235,
        "created_at": "2026-11-11T10:00:00+08:00",
        "actor": "wang",
        "action": "grade.overridden",
        "target_type": "grading.answer",
        "target_id": "5002",
        "submission_id": 900,
        "before": None,
        "after": {"points": 18, "source": "override", "version": 1},
        "reason": "结尾点题，应得高分。",
        "request_id": "5f0c3a9e2b7d4c1e8a6f0b2d9c4e7a13",
        "prev_hash": "9a1f0c3e…",
        "hash": "c47e2b9d…",
    },
)
