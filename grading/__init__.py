"""Grading: rubrics, scoring runs (AI, rules, answer key), teachers' grades and the audit trail.

Dependency rule: `grading` may import `courses` (its models, permissions, the editing
helpers and the typed request); `courses` imports only what it names from `grading`.
Inside the app, `services/` is the only code that writes submissions, assessments and
grades, `selectors/` holds the reads, and `llm.py` is the only code that talks HTTP
to a model server.
"""
