"""The API's views: `school` (courses, enrollments, assignments, rubrics) and `work`
(submissions, answers, grades, grading, release, regrade requests, audit)."""
