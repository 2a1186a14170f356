"""Rubric builder forms. They parse and show errors; `grading.rubrics` decides."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from courses.models import Language
from courses.text import CleanTextFormMixin

from .models import CriterionScoring


class RubricForm(CleanTextFormMixin, forms.Form):
    title = forms.CharField(label=_("Title"), max_length=200)
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    language = forms.ChoiceField(label=_("Language"), choices=Language.choices)


class CriterionForm(CleanTextFormMixin, forms.Form):
    title = forms.CharField(label=_("Criterion"), max_length=200)
    max_points = forms.IntegerField(label=_("Max points"), min_value=1, max_value=1000)
    scoring = forms.ChoiceField(
        label=_("Scoring"), choices=CriterionScoring.choices, initial=CriterionScoring.RANGE
    )
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class LevelForm(CleanTextFormMixin, forms.Form):
    points = forms.IntegerField(label=_("Points"), min_value=0, max_value=1000)
    title = forms.CharField(label=_("Level"), max_length=100, required=False)
    descriptor = forms.CharField(label=_("Descriptor"), widget=forms.Textarea(attrs={"rows": 1}))
