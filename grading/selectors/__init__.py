"""Reads. Keyword-only functions that return what a page, a command or the API shows.

Nothing here writes. Permission checks stay in `courses.permissions`; callers pass
objects they are allowed to see. One rule lives only here: `grading_rubric`, the
rubric snapshot an answer is graded against. One module per reader:

- `review`: teachers grading (the rubric an answer is graded against, progress, the
  review queue and workspace, the release preview, the raw audit events);
- `students`: what a student sees (their submission, released grades, feedback);
- `tables`: the grade export and the course gradebook;
- `overview`: a teacher's to-do list and regrade inbox;
- `audit_trail`: the audit trail in words, and its filters.

Callers import from `grading.selectors`; the names below are its interface.
"""

from __future__ import annotations

from .audit_trail import (
    AuditContext,
    AuditFilterChoices,
    audit_context,
    audit_filter_choices,
)
from .overview import (
    AssignmentTodo,
    CourseTodo,
    regrade_inbox,
    teacher_todo,
)
from .review import (
    REVIEWABLE,
    ReleasePreview,
    answer_comments,
    assignment_missing_students,
    assignment_outdated_questions,
    assignment_progress,
    assignment_usage,
    assignment_waiting_for_model,
    audit_actor_labels,
    audit_events,
    comment_bank,
    grading_proposal,
    grading_rubric,
    regrade_requests_open,
    release_preview,
    review_neighbours,
    review_queue,
    review_waiting,
    rubric_outdated_answers,
    rubric_outdated_by_assignment,
)
from .students import (
    CriterionFeedback,
    ObjectiveFeedback,
    feedback_details,
    student_answer_comments,
    student_pending_answers,
    student_visible_grades,
    submission_current,
    submission_handed_in,
)
from .tables import (
    CriterionKey,
    ExportStatus,
    Gradebook,
    GradebookCell,
    GradebookStatus,
    assignment_grade_table,
    course_gradebook,
    gradebook_table,
)

__all__ = [
    "REVIEWABLE",
    "AssignmentTodo",
    "AuditContext",
    "AuditFilterChoices",
    "CourseTodo",
    "CriterionFeedback",
    "CriterionKey",
    "ExportStatus",
    "Gradebook",
    "GradebookCell",
    "GradebookStatus",
    "ObjectiveFeedback",
    "ReleasePreview",
    "answer_comments",
    "assignment_grade_table",
    "assignment_missing_students",
    "assignment_outdated_questions",
    "assignment_progress",
    "assignment_usage",
    "assignment_waiting_for_model",
    "audit_actor_labels",
    "audit_context",
    "audit_events",
    "audit_filter_choices",
    "comment_bank",
    "course_gradebook",
    "feedback_details",
    "gradebook_table",
    "grading_proposal",
    "grading_rubric",
    "regrade_inbox",
    "regrade_requests_open",
    "release_preview",
    "review_neighbours",
    "review_queue",
    "review_waiting",
    "rubric_outdated_answers",
    "rubric_outdated_by_assignment",
    "student_answer_comments",
    "student_pending_answers",
    "student_visible_grades",
    "submission_current",
    "submission_handed_in",
    "teacher_todo",
]
