"""The rubric library and the inline (HTMX) rubric builder. Thin: `grading.rubrics` decides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from courses import permissions
from courses.forms import add_errors
from courses.http import HtmxHttpRequest, post_id

from . import rubrics, selectors
from .forms import CriterionForm, LevelForm, RubricForm
from .models import Criterion, Level, Rubric

T = TypeVar("T")


@login_required
def rubric_library(request: HtmxHttpRequest) -> HttpResponse:
    """My rubrics, the school's templates, colleagues' rubrics to copy; a new blank one."""
    user = request.user
    if not permissions.is_teacher(user):
        raise PermissionDenied
    form = RubricForm(request.POST or None, initial={"language": request.LANGUAGE_CODE})
    if request.method == "POST" and form.is_valid():
        try:
            rubric = rubrics.rubric_create(owner=user, actor=user, **form.cleaned_data)
        except ValidationError as exc:
            add_errors(form, exc)
        else:
            messages.success(request, _("Rubric created. Add its criteria."))
            return redirect("grading:rubric", pk=rubric.pk)
    mine = permissions.usable_rubrics(user).prefetch_related("criteria").order_by("title")
    library = permissions.library_rubrics(user).select_related("owner").prefetch_related("criteria")
    mine_ids = {r.pk for r in mine}
    return render(
        request,
        "grading/rubric_library.html",
        {
            "form": form,
            "mine": mine,
            "templates": [r for r in library if r.is_template],
            "colleagues": [r for r in library if not r.is_template and r.pk not in mine_ids],
        },
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def rubric_copy(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(permissions.readable_rubrics(request.user), pk=pk)
    rubric = rubrics.rubric_copy(source=source, owner=request.user, actor=request.user)
    messages.success(request, _("This is your own copy; change it as you like."))
    return redirect("grading:rubric", pk=rubric.pk)


def _form_id(op: str, obj_id: int | None) -> str:
    return f"{op.replace('.', '-')}-{obj_id or 'new'}-%s"


def _builder_context(
    request: HtmxHttpRequest, rubric: Rubric, failed: tuple[str, int | None, Any] | None = None
) -> dict[str, Any]:
    """Every form of the builder, each with its own ids; the one that failed keeps the
    teacher's input and its errors."""

    def form(op: str, obj_id: int | None, cls: type, initial: dict[str, Any]) -> Any:
        if failed and failed[:2] == (op, obj_id) and not isinstance(failed[2], str):
            return failed[2]
        return cls(initial=initial, auto_id=_form_id(op, obj_id))

    criteria = []
    for c in rubric.criteria.prefetch_related("levels"):
        criteria.append(
            {
                "criterion": c,
                "form": form(
                    "criterion.update",
                    c.pk,
                    CriterionForm,
                    {
                        "title": c.title,
                        "max_points": c.max_points,
                        "scoring": c.scoring,
                        "description": c.description,
                    },
                ),
                "levels": [
                    (
                        lv,
                        form(
                            "level.update",
                            lv.pk,
                            LevelForm,
                            {"points": lv.points, "title": lv.title, "descriptor": lv.descriptor},
                        ),
                    )
                    for lv in c.levels.all()
                ],
                "new_level": form("level.add", c.pk, LevelForm, {}),
            }
        )
    editable = permissions.editable_rubrics(request.user).filter(pk=rubric.pk).exists()
    latest = rubrics.rubric_latest(rubric)
    teachable = set(permissions.teachable_assignments(request.user).values_list("pk", flat=True))
    return {
        "rubric": rubric,
        "criteria": criteria,
        "total": sum(c["criterion"].max_points for c in criteria),
        "rubric_form": form(
            "rubric.update",
            rubric.pk,
            RubricForm,
            {"title": rubric.title, "description": rubric.description, "language": rubric.language},
        ),
        "new_criterion": form("criterion.add", None, CriterionForm, {}),
        "editable": editable and latest.pk == rubric.pk,
        "latest": latest,
        "used": rubrics.rubric_is_used(rubric),
        "outdated": [
            row
            for row in selectors.rubric_outdated_by_assignment(rubric=rubric)
            if row["assignment_id"] in teachable
        ],
        "questions": rubric.questions.select_related("assignment__course").filter(
            assignment__in=permissions.teachable_assignments(request.user)
        ),
        "error": failed[2] if failed and isinstance(failed[2], str) else "",
    }


@login_required
def rubric_builder(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    rubric = get_object_or_404(permissions.readable_rubrics(request.user), pk=pk)
    return render(request, "grading/rubric_builder.html", _builder_context(request, rubric))


def _given(obj: T | None) -> T:
    # rubric_change answers 400 before calling an operation whose object id is missing.
    assert obj is not None
    return obj


def _operations(
    request: HtmxHttpRequest, rubric: Rubric
) -> dict[str, tuple[type | None, Callable[[dict[str, Any]], rubrics.Edit], int | None]]:
    """op → (form, service call, id of the object the op is about)."""
    user = request.user
    criterion = level = None
    if request.POST.get("criterion"):
        criterion = get_object_or_404(Criterion, rubric=rubric, pk=post_id(request, "criterion"))
    if request.POST.get("level"):
        level = get_object_or_404(
            Level.objects.select_related("criterion__rubric"),
            criterion__rubric=rubric,
            pk=post_id(request, "level"),
        )
    c_id = criterion.pk if criterion else None
    l_id = level.pk if level else None
    return {
        "rubric.update": (
            RubricForm,
            lambda d: rubrics.rubric_update(rubric=rubric, actor=user, **d),
            rubric.pk,
        ),
        "criterion.add": (
            CriterionForm,
            lambda d: rubrics.criterion_add(rubric=rubric, actor=user, **d),
            None,
        ),
        "criterion.update": (
            CriterionForm,
            lambda d: rubrics.criterion_update(criterion=_given(criterion), actor=user, **d),
            c_id,
        ),
        "criterion.delete": (
            None,
            lambda d: rubrics.criterion_delete(criterion=_given(criterion), actor=user),
            c_id,
        ),
        "criterion.up": (
            None,
            lambda d: rubrics.criterion_move(criterion=_given(criterion), offset=-1, actor=user),
            c_id,
        ),
        "criterion.down": (
            None,
            lambda d: rubrics.criterion_move(criterion=_given(criterion), offset=1, actor=user),
            c_id,
        ),
        "level.add": (
            LevelForm,
            lambda d: rubrics.level_add(criterion=_given(criterion), actor=user, **d),
            c_id,
        ),
        "level.update": (
            LevelForm,
            lambda d: rubrics.level_update(level=_given(level), actor=user, **d),
            l_id,
        ),
        "level.delete": (
            None,
            lambda d: rubrics.level_delete(level=_given(level), actor=user),
            l_id,
        ),
    }


@login_required
@require_POST
def rubric_change(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Every builder edit. Returns the re-rendered builder (HTMX) or redirects; when the
    edit had to create a new version, the browser goes to that version's page."""
    rubric = get_object_or_404(permissions.editable_rubrics(request.user), pk=pk)
    op = request.POST.get("op", "")
    operations = _operations(request, rubric)
    if op not in operations:
        return HttpResponse(status=400)
    form_class, call, obj_id = operations[op]
    if op.startswith(("criterion.", "level.")) and op != "criterion.add" and obj_id is None:
        return HttpResponse(status=400)
    form = form_class(request.POST, auto_id=_form_id(op, obj_id)) if form_class else None
    failed: tuple[str, int | None, Any] | None = None
    if form is not None and not form.is_valid():
        failed = (op, obj_id, form)
    else:
        try:
            edit = call(form.cleaned_data if form is not None else {})
        except ValidationError as exc:
            if form is not None and hasattr(exc, "error_dict"):
                add_errors(form, exc)
                failed = (op, obj_id, form)
            else:
                failed = (op, obj_id, " ".join(exc.messages))
        else:
            if edit.versioned:
                messages.info(
                    request,
                    _(
                        "This rubric had already scored answers, so your change made version "
                        "%(v)s. Earlier grades keep the version they were scored with."
                    )
                    % {"v": edit.rubric.version},
                )
                url = reverse("grading:rubric", args=[edit.rubric.pk])
                return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
            if not request.htmx:
                return redirect("grading:rubric", pk=rubric.pk)
    rubric.refresh_from_db()
    context = _builder_context(request, rubric, failed)
    template = "grading/_rubric_builder.html" if request.htmx else "grading/rubric_builder.html"
    return render(request, template, context, status=400 if failed else 200)


@login_required
@require_POST
def rubric_regrade(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    rubric = get_object_or_404(permissions.readable_rubrics(request.user), pk=pk)
    assignment = get_object_or_404(
        permissions.teachable_assignments(request.user), pk=post_id(request, "assignment")
    )
    count = rubrics.rubric_regrade_outdated(
        rubric=rubric, assignment=assignment, actor=request.user
    )
    messages.success(
        request,
        _("%(n)s answers queued for grading with version %(v)s.")
        % {"n": count, "v": rubric.version},
    )
    return redirect("grading:assignment", pk=assignment.pk)
