"""Grading rules: the only code that writes submissions, assessments and grades.

One module per stage, in the order an answer travels:

- `submissions`: a student saves a draft and hands in (and later asks for a regrade);
- `queue`: answers are marked GRADING and enqueued as django-q2 tasks on commit;
  an assignment is graded or regraded; stuck answers are swept back into the queue;
- `pipeline`: a task scores its answers — objective items from the key, the rest
  by the model (or the offline rule engine), validated, never a zero on failure;
- `assessments`: stores every scoring run, its criterion scores and the answer's status;
- `review`: teachers approve or override proposals, comment on passages of answers,
  release and hide grades, answer regrade requests; each teacher's comment bank.

Reads live in `grading.selectors`. The names below are re-exported so callers,
scripts and task paths written against the single module keep working.
"""

from __future__ import annotations

from ..llm import per_worker_concurrency
from ..selectors import (
    assignment_grade_table,
    assignment_progress,
    assignment_usage,
    student_visible_grades,
    submission_current,
)
from .assessments import LOW_CONFIDENCE, answers_claim_pooled, answers_mark_failed
from .pipeline import GradeSummary, answers_grade
from .queue import (
    TASK_FUNC,
    TASK_HOOK,
    answers_enqueue,
    answers_grade_chunk,
    answers_grade_pool,
    answers_requeue_stuck,
    answers_wait_for_model,
    assignment_grade,
    chunk_size,
    model_outage_check,
    objective_answers_rescore,
)
from .review import (
    LOW_CONFIDENCE_FLAG,
    NEVER_BULK_APPROVED,
    BulkApproval,
    GradeError,
    ReasonRequired,
    StaleGrade,
    answer_comment_create,
    answer_comment_delete,
    comment_bank_delete,
    comment_bank_save,
    comment_bank_use,
    grade_approve,
    grades_bulk_approve,
    grades_hide,
    grades_release,
    regrade_request_answer,
)
from .submissions import (
    SubmissionError,
    hand_in_token_new,
    regrade_request_create,
    submission_closed_reason,
    submission_save,
    submission_submit,
)

__all__ = [
    "LOW_CONFIDENCE",
    "LOW_CONFIDENCE_FLAG",
    "NEVER_BULK_APPROVED",
    "TASK_FUNC",
    "TASK_HOOK",
    "BulkApproval",
    "GradeError",
    "GradeSummary",
    "ReasonRequired",
    "StaleGrade",
    "SubmissionError",
    "answer_comment_create",
    "answer_comment_delete",
    "answers_claim_pooled",
    "answers_enqueue",
    "answers_grade",
    "answers_grade_chunk",
    "answers_grade_pool",
    "answers_mark_failed",
    "answers_requeue_stuck",
    "answers_wait_for_model",
    "assignment_grade",
    "assignment_grade_table",
    "assignment_progress",
    "assignment_usage",
    "chunk_size",
    "comment_bank_delete",
    "comment_bank_save",
    "comment_bank_use",
    "grade_approve",
    "grades_bulk_approve",
    "grades_hide",
    "grades_release",
    "hand_in_token_new",
    "model_outage_check",
    "objective_answers_rescore",
    "per_worker_concurrency",
    "regrade_request_answer",
    "regrade_request_create",
    "student_visible_grades",
    "submission_closed_reason",
    "submission_current",
    "submission_save",
    "submission_submit",
]
