"""People, courses, enrollments, assignments and questions; the students' pages and the
teachers' setup pages; and `permissions`, the one place that says who may see or do what.

Dependency rule: `grading` may import `courses`; `courses` imports only what it names from
`grading`:

- `grading.audit.audit_record` and `grading.admin.AuditedAdmin`: every change a teacher or
  an administrator makes is in the one audit trail;
- `grading.models`: submissions and answers for the students' pages, rubrics for
  permissions and for questions (and the demo seed);
- `grading.services` and `grading.selectors`: hand-in, released feedback and regrade
  requests for the students' pages; the rescore after a corrected answer key; queueing
  the demo seed's answers; the teacher's to-do list on the home page;
- `grading.workspace`: an answer's text cut into the passages its inline comments cover,
  for the printed feedback;
- `grading.rubrics.rubric_copy`: a question started from a template rubric gets a copy;
- `grading.objective.parse_number`: an answer key's number parses as students' answers do;
- `grading.rubric_templates`: the demo seed's rubrics.

`courses.models` imports nothing from `grading` (the rubric foreign key is a string), so
both apps' models load in any order, and none of the imports above is circular.
"""
