"""Forms for teachers' pages. They parse and show errors; the services decide."""

from __future__ import annotations

import re
import string
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.utils.translation import gettext_lazy as _

from grading.objective import parse_number

from .models import (
    CHOICE_KINDS,
    SUBJECTIVE_KINDS,
    Assignment,
    Course,
    Question,
    QuestionKind,
    Role,
)
from .services import ASSIGNMENT_FIELDS, COURSE_FIELDS
from .text import CleanTextFormMixin


def add_errors(
    form: forms.BaseForm, exc: ValidationError, aliases: dict[str, str] | None = None
) -> None:
    """Show a service's ValidationError on the form: per field where the form has that field,
    else at the top."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            name = (aliases or {}).get(name, name)
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


class CourseForm(CleanTextFormMixin, forms.ModelForm):
    class Meta:
        model = Course
        fields = list(COURSE_FIELDS)
        help_texts = {"code": _("Unique in the school, e.g. CHN-8A.")}


class EnrollmentAddForm(CleanTextFormMixin, forms.Form):
    identifier = forms.CharField(
        label=_("Username, e-mail or student number"), max_length=254, strip=True
    )
    role = forms.ChoiceField(
        label=_("Role"),
        choices=[(Role.STUDENT, Role.STUDENT.label), (Role.TA, Role.TA.label)],
        initial=Role.STUDENT,
    )


class RosterUploadForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "First row: column names — username, name, email, student_number "
            "(or 用户名, 姓名, 邮箱, 学号). UTF-8 with or without BOM, or GB18030."
        ),
    )


class AssignmentForm(CleanTextFormMixin, forms.ModelForm):
    class Meta:
        model = Assignment
        fields = list(ASSIGNMENT_FIELDS)
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 4}),
            "due_at": forms.DateTimeInput(
                attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
            ),
        }
        help_texts = {
            "due_at": _("In the school's time zone. Leave empty for no deadline."),
            "attempts_allowed": _("How many times a student may hand in."),
            "anonymous_grading": _("Hide students' names while reviewing."),
            "show_answer_keys": _(
                "Released feedback shows the correct answer of each objective item beside "
                "the student's."
            ),
            "language": _("Language of the grading prompts and feedback."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The model field is a PositiveSmallIntegerField, so its form field is an IntegerField.
        attempts = cast(forms.IntegerField, self.fields["attempts_allowed"])
        attempts.min_value = 1
        attempts.validators.append(MinValueValidator(1))
        attempts.widget.attrs["min"] = 1


# Grouped <select> choices: (group label, [(value, label), …]).
RubricChoices = list[tuple[str, list[tuple[str, str]]]]

OPTION_PREFIX = re.compile(r"^\s*([A-Za-z])\s*[\.\、\)）．:：]\s*")
KEY_SPLIT = re.compile(r"[\s,，、;；]+")


class QuestionForm(CleanTextFormMixin, forms.Form):
    """One form for every kind; fields that do not apply to the kind are removed."""

    prompt = forms.CharField(label=_("Question"), widget=forms.Textarea(attrs={"rows": 4}))
    points = forms.IntegerField(label=_("Points"), min_value=1, max_value=1000, initial=1)
    rubric = forms.ChoiceField(label=_("Rubric"), required=False)
    reference_answer = forms.CharField(
        label=_("Reference answer"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Seen by graders and the AI only, never by students."),
    )
    grader_guidelines = forms.CharField(
        label=_("Grader guidelines"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Seen by graders and the AI only, never by students."),
    )
    options = forms.CharField(
        label=_("Options"),
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("One option per line. They are lettered A, B, C… in this order."),
    )
    correct = forms.CharField(
        label=_("Correct option(s)"),
        max_length=60,
        help_text=_("The letter of the correct option; for multiple choice, e.g. “A, C”."),
    )
    value = forms.CharField(label=_("Correct value"), max_length=40)
    tolerance = forms.CharField(
        label=_("Tolerance (±)"),
        max_length=40,
        required=False,
        initial="0",
        help_text=_("Answers within this distance of the value are correct."),
    )
    accepted = forms.CharField(
        label=_("Accepted answers"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One per line. Spacing and full-width characters are ignored."),
    )
    regex = forms.BooleanField(label=_("Accepted answers are regular expressions"), required=False)
    case_sensitive = forms.BooleanField(label=_("Case-sensitive"), required=False)

    KIND_FIELDS = {
        "subjective": ("prompt", "rubric", "reference_answer", "grader_guidelines"),
        "choice": ("prompt", "points", "options", "correct"),
        QuestionKind.NUMERIC: ("prompt", "points", "value", "tolerance"),
        QuestionKind.EXACT_TEXT: ("prompt", "points", "accepted", "regex", "case_sensitive"),
    }

    def __init__(
        self,
        *args: Any,
        kind: str,
        rubric_choices: RubricChoices | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        if kind in SUBJECTIVE_KINDS:
            group = "subjective"
        elif kind in CHOICE_KINDS:
            group = "choice"
        else:
            group = kind
        keep = self.KIND_FIELDS[group]
        for name in list(self.fields):
            if name not in keep:
                del self.fields[name]
        if "rubric" in self.fields:
            rubric = cast(forms.ChoiceField, self.fields["rubric"])  # declared above
            rubric.choices = [("", _("— choose a rubric —")), *(rubric_choices or [])]
            rubric.required = True

    @classmethod
    def initial_for(cls, question: Question) -> dict[str, Any]:
        key = question.answer_key or {}
        return {
            "prompt": question.prompt,
            "points": question.points,
            "rubric": f"r{question.rubric_id}" if question.rubric_id else "",
            "reference_answer": question.reference_answer,
            "grader_guidelines": question.grader_guidelines,
            "options": "\n".join(o.get("text", "") for o in question.options or []),
            "correct": ", ".join(key.get("correct") or []),
            "value": "" if key.get("value") is None else f"{key['value']:g}",
            "tolerance": f"{key.get('tolerance', 0):g}",
            "accepted": "\n".join(key.get("accepted") or []),
            "regex": bool(key.get("regex")),
            "case_sensitive": bool(key.get("case_sensitive")),
        }

    def clean_options(self) -> list[dict[str, str]]:
        lines = [line.strip() for line in self.cleaned_data["options"].splitlines()]
        lines = [line for line in lines if line]
        if len(lines) > 26:
            raise ValidationError(_("At most 26 options."))
        options = []
        for key, line in zip(string.ascii_uppercase, lines, strict=False):
            match = OPTION_PREFIX.match(line)
            # "B. Paris" typed on the second line: the letter is ours, drop the teacher's copy.
            if match and match.group(1).upper() == key:
                line = line[match.end() :].strip() or line
            options.append({"key": key, "text": line})
        return options

    def clean_correct(self) -> list[str]:
        keys = [k.upper() for k in KEY_SPLIT.split(self.cleaned_data["correct"].strip()) if k]
        return list(dict.fromkeys(keys))

    def _number(self, name: str) -> float | None:
        raw = self.cleaned_data.get(name, "")
        if raw in ("", None):
            return None
        number = parse_number(str(raw))
        if number is None:
            raise ValidationError(_("“%(v)s” is not a number.") % {"v": raw})
        return number

    def clean_value(self) -> float | None:
        return self._number("value")

    def clean_tolerance(self) -> float:
        number = self._number("tolerance") or 0.0
        if number < 0:
            raise ValidationError(_("The tolerance cannot be negative."))
        return number

    def clean_accepted(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["accepted"].splitlines() if line.strip()]

    def service_values(self) -> dict[str, Any]:
        """The question's fields, in the shape the model stores."""
        data = self.cleaned_data
        values: dict[str, Any] = {"prompt": data["prompt"]}
        if self.kind in SUBJECTIVE_KINDS:
            values.update(
                reference_answer=data.get("reference_answer", ""),
                grader_guidelines=data.get("grader_guidelines", ""),
            )
        else:
            values["points"] = data["points"]
        if self.kind in CHOICE_KINDS:
            values["options"] = data["options"]
            values["answer_key"] = {"correct": data["correct"]}
        elif self.kind == QuestionKind.NUMERIC:
            values["answer_key"] = {"value": data["value"], "tolerance": data["tolerance"]}
        elif self.kind == QuestionKind.EXACT_TEXT:
            values["answer_key"] = {
                "accepted": data["accepted"],
                "regex": data["regex"],
                "case_sensitive": data["case_sensitive"],
            }
        return values

    @property
    def error_aliases(self) -> dict[str, str]:
        """Where the model's answer-key errors show on this form."""
        if self.kind in CHOICE_KINDS:
            return {"answer_key": "correct"}
        if self.kind == QuestionKind.NUMERIC:
            return {"answer_key": "value"}
        return {"answer_key": "accepted"}
