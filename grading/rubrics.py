"""Building and versioning rubrics.

A rubric that has scored answers is never edited in place: the first change
creates a new version (same lineage, version + 1), moves the questions that
used the old version onto it, and applies the change there. Assessments keep
the snapshot they were scored with, so old grades still explain themselves,
and `selectors.rubric_outdated_answers` tells the teacher which answers to regrade.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from courses.editing import apply_values, changes, field_state, move, renumber, unchanged
from courses.models import Assignment, Question, User
from courses.text import clean_text

from .audit import audit_record
from .models import (
    Answer,
    AnswerStatus,
    Criterion,
    CriterionScore,
    CriterionScoring,
    FinalCriterionGrade,
    Level,
    Rubric,
    Snapshot,
)
from .selectors import rubric_outdated_answers
from .services.queue import answers_enqueue

RUBRIC_FIELDS = ("title", "description", "language")
CRITERION_FIELDS = ("title", "description", "max_points", "scoring")
LEVEL_FIELDS = ("points", "title", "descriptor")


class StaleRubric(ValidationError):
    """The rubric was versioned by someone else meanwhile."""


@dataclass
class Edit:
    """The rubric a change landed on, and whether a new version had to be made for it."""

    rubric: Rubric
    versioned: bool = False
    # When versioned: each old criterion's id → its copy in the new version, so that a
    # caller applying several changes in one save (Django admin) can find where the next
    # change belongs.
    criteria: dict[int, Criterion] = field(default_factory=dict)


def rubric_is_used(rubric: Rubric) -> bool:
    """Has this version scored anything, or begun to? Scores point at its criteria
    (PROTECT); a grading run stores the version's snapshot before it asks the model and
    marks its answers GRADING when queued, so an edit in place can never slip in between a
    run's snapshot and its scores."""
    return (
        CriterionScore.objects.filter(criterion__rubric=rubric).exists()
        or FinalCriterionGrade.objects.filter(criterion__rubric=rubric).exists()
        or Snapshot.objects.filter(data__lineage=str(rubric.lineage), data__id=rubric.pk).exists()
        or Answer.objects.filter(question__rubric=rubric, status=AnswerStatus.GRADING).exists()
    )


def rubric_latest(rubric: Rubric) -> Rubric:
    return Rubric.objects.filter(lineage=rubric.lineage).order_by("-version").first() or rubric


def _copy_into(source: Rubric, target: Rubric) -> dict[int, Criterion]:
    """Copy criteria and levels; returns old criterion id → new criterion."""
    mapping: dict[int, Criterion] = {}
    for criterion in source.criteria.prefetch_related("levels"):
        copy = Criterion.objects.create(
            rubric=target,
            order=criterion.order,
            title=criterion.title,
            description=criterion.description,
            max_points=criterion.max_points,
            scoring=criterion.scoring,
        )
        Level.objects.bulk_create(
            Level(
                criterion=copy,
                order=lv.order,
                points=lv.points,
                title=lv.title,
                descriptor=lv.descriptor,
            )
            for lv in criterion.levels.all()
        )
        mapping[criterion.pk] = copy
    return mapping


def rubric_create(*, owner: User | None, actor: User, **values: Any) -> Rubric:
    rubric = Rubric(owner=owner)
    apply_values(rubric, RUBRIC_FIELDS, values)
    rubric.full_clean()
    with transaction.atomic():
        rubric.save()
        audit_record(
            actor=actor,
            action="rubric.created",
            target=rubric,
            after={"title": rubric.title, "version": rubric.version},
        )
    return rubric


def rubric_copy(*, source: Rubric, owner: User, actor: User, title: str = "") -> Rubric:
    """A teacher's own copy of a template or a colleague's rubric: a new lineage, version 1."""
    with transaction.atomic():
        rubric = Rubric.objects.create(
            title=(clean_text(title) or source.title)[:200],
            description=source.description,
            language=source.language,
            owner=owner,
            is_template=False,
        )
        _copy_into(source, rubric)
        audit_record(
            actor=actor,
            action="rubric.copied",
            target=rubric,
            after={
                "title": rubric.title,
                "from": source.pk,
                "from_version": source.version,
                "from_template": source.is_template,
            },
        )
    return rubric


def _writable(rubric: Rubric, actor: User) -> tuple[Edit, dict[int, Criterion]]:
    """The version a change may be written to: this one, or a new one if it has scored.

    Must run inside a transaction. The lineage's newest row is locked so that two
    teachers editing at once make one new version, not two.
    """
    latest = (
        Rubric.objects.select_for_update()
        .filter(lineage=rubric.lineage)
        .order_by("-version")
        .first()
    )
    if latest is None or latest.pk != rubric.pk:
        raise StaleRubric(_("A newer version of this rubric exists. Reload the page."))
    if rubric.is_template and not actor.has_perm("grading.change_rubric"):
        # Templates belong to whoever may change rubrics in Django admin; teachers edit a copy.
        raise ValidationError(_("Templates are changed by administrators. Edit a copy."))
    if not rubric_is_used(rubric):
        return Edit(rubric), {}
    new = Rubric.objects.create(
        lineage=rubric.lineage,
        version=rubric.version + 1,
        title=rubric.title,
        description=rubric.description,
        language=rubric.language,
        owner=rubric.owner,
    )
    mapping = _copy_into(rubric, new)
    moved = list(Question.objects.filter(rubric=rubric).values_list("pk", flat=True))
    Question.objects.filter(pk__in=moved).update(rubric=new)
    audit_record(
        actor=actor,
        action="rubric.versioned",
        target=new,
        before={"rubric": rubric.pk, "version": rubric.version},
        after={"rubric": new.pk, "version": new.version, "questions": moved},
    )
    return Edit(new, versioned=True, criteria=mapping), mapping


def _in(edit: Edit, mapping: dict[int, Criterion], criterion: Criterion) -> Criterion:
    return mapping.get(criterion.pk, criterion) if edit.versioned else criterion


def _check_levels(criterion: Criterion) -> None:
    too_high = criterion.levels.filter(points__gt=criterion.max_points).order_by("-points").first()
    if too_high is not None:
        raise ValidationError(
            {
                "max_points": _(
                    "The level “%(level)s” gives %(points)s points; the maximum cannot "
                    "be lower. Change that level first."
                )
                % {"level": too_high.title or too_high.descriptor[:20], "points": too_high.points}
            }
        )
    if criterion.scoring == CriterionScoring.LEVELS and not criterion.levels.exists():
        raise ValidationError(
            {"scoring": _("Scoring by levels needs at least one level. Add levels first.")}
        )


def _audit(actor: User, edit: Edit, action: str, **data: Any) -> None:
    audit_record(actor=actor, action=action, target=edit.rubric, **data)


def rubric_update(*, rubric: Rubric, actor: User, **values: Any) -> Edit:
    if unchanged(rubric, RUBRIC_FIELDS, values):
        return Edit(rubric)  # saving without changes must not make a version
    with transaction.atomic():
        edit, _mapping = _writable(rubric, actor)
        target = edit.rubric
        before = field_state(target, RUBRIC_FIELDS)
        apply_values(target, RUBRIC_FIELDS, values)
        target.full_clean()
        target.save()
        old, new = changes(before, field_state(target, RUBRIC_FIELDS))
        _audit(actor, edit, "rubric.updated", before=old, after=new)
    return edit


def criterion_add(*, rubric: Rubric, actor: User, **values: Any) -> Edit:
    with transaction.atomic():
        edit, _mapping = _writable(rubric, actor)
        last = edit.rubric.criteria.aggregate(m=Max("order"))["m"] or 0
        criterion = Criterion(rubric=edit.rubric, order=last + 1)
        apply_values(criterion, CRITERION_FIELDS, values)
        criterion.full_clean()
        if criterion.scoring == CriterionScoring.LEVELS:
            raise ValidationError(
                {"scoring": _("Scoring by levels needs at least one level. Add levels first.")}
            )
        criterion.save()
        _audit(
            actor,
            edit,
            "rubric.criterion_added",
            after={"criterion": criterion.title, "max_points": criterion.max_points},
        )
    return edit


def criterion_update(*, criterion: Criterion, actor: User, **values: Any) -> Edit:
    if unchanged(criterion, CRITERION_FIELDS, values):
        return Edit(criterion.rubric)
    with transaction.atomic():
        edit, mapping = _writable(criterion.rubric, actor)
        target = _in(edit, mapping, criterion)
        before = field_state(target, CRITERION_FIELDS)
        apply_values(target, CRITERION_FIELDS, values)
        target.full_clean()
        target.save()
        _check_levels(target)
        old, new = changes(before, field_state(target, CRITERION_FIELDS))
        _audit(
            actor,
            edit,
            "rubric.criterion_updated",
            before={"criterion": before["title"], **old},
            after=new,
        )
    return edit


def criterion_delete(*, criterion: Criterion, actor: User) -> Edit:
    with transaction.atomic():
        edit, mapping = _writable(criterion.rubric, actor)
        target = _in(edit, mapping, criterion)
        if edit.rubric.criteria.count() <= 1 and edit.rubric.questions.exists():
            raise ValidationError(_("A rubric in use needs at least one criterion."))
        _audit(
            actor,
            edit,
            "rubric.criterion_deleted",
            before={"criterion": target.title, "max_points": target.max_points},
        )
        target.delete()
        renumber(edit.rubric.criteria.all())
    return edit


def criterion_move(*, criterion: Criterion, offset: int, actor: User) -> Edit:
    with transaction.atomic():
        edit, mapping = _writable(criterion.rubric, actor)
        target = _in(edit, mapping, criterion)
        moved = move(edit.rubric.criteria.all(), target.pk, offset)
        if moved is not None:
            _audit(
                actor,
                edit,
                "rubric.criterion_moved",
                before={"order": moved[0]},
                after={"criterion": target.title, "order": moved[1]},
            )
    return edit


def _level_in(edit: Edit, mapping: dict[int, Criterion], level: Level) -> Level:
    if not edit.versioned:
        return level
    return mapping[level.criterion_id].levels.get(points=level.points)


def _validate_level(level: Level) -> None:
    # Our own wording for the duplicate first; the generic constraint message is vaguer.
    clash = Level.objects.filter(criterion=level.criterion, points=level.points)
    if level.pk:
        clash = clash.exclude(pk=level.pk)
    if clash.exists():
        raise ValidationError(
            {"points": _("Another level already gives %(p)s points.") % {"p": level.points}}
        )
    level.full_clean()


def level_add(*, criterion: Criterion, actor: User, **values: Any) -> Edit:
    with transaction.atomic():
        edit, mapping = _writable(criterion.rubric, actor)
        target = _in(edit, mapping, criterion)
        last = target.levels.aggregate(m=Max("order"))["m"] or 0
        level = Level(criterion=target, order=last + 1)
        apply_values(level, LEVEL_FIELDS, values)
        _validate_level(level)
        level.save()
        _audit(
            actor,
            edit,
            "rubric.level_added",
            after={
                "criterion": target.title,
                "points": level.points,
                "descriptor": level.descriptor,
            },
        )
    return edit


def level_update(*, level: Level, actor: User, **values: Any) -> Edit:
    if unchanged(level, LEVEL_FIELDS, values):
        return Edit(level.criterion.rubric)
    with transaction.atomic():
        edit, mapping = _writable(level.criterion.rubric, actor)
        target = _level_in(edit, mapping, level)
        before = field_state(target, LEVEL_FIELDS)
        apply_values(target, LEVEL_FIELDS, values)
        _validate_level(target)
        target.save()
        old, new = changes(before, field_state(target, LEVEL_FIELDS))
        _audit(
            actor,
            edit,
            "rubric.level_updated",
            before={"criterion": target.criterion.title, **old},
            after=new,
        )
    return edit


def level_delete(*, level: Level, actor: User) -> Edit:
    with transaction.atomic():
        edit, mapping = _writable(level.criterion.rubric, actor)
        target = _level_in(edit, mapping, level)
        criterion = target.criterion
        if criterion.scoring == CriterionScoring.LEVELS and criterion.levels.count() <= 1:
            raise ValidationError(
                _("“%(c)s” is scored by levels; it keeps at least one level.")
                % {"c": criterion.title}
            )
        _audit(
            actor,
            edit,
            "rubric.level_deleted",
            before={
                "criterion": criterion.title,
                "points": target.points,
                "descriptor": target.descriptor,
            },
        )
        target.delete()
    return edit


# --- Answers scored with an older version -----------------------------------------------


def rubric_regrade_outdated(*, rubric: Rubric, assignment: Assignment, actor: User) -> int:
    """Regrade, with this version, the unapproved answers scored with an older one."""
    with transaction.atomic():
        ids = list(
            rubric_outdated_answers(rubric=rubric)
            .filter(question__assignment=assignment)
            .exclude(status=AnswerStatus.APPROVED)
            .values_list("pk", flat=True)
        )
        count = answers_enqueue(answer_ids=ids)
        audit_record(
            actor=actor,
            action="assignment.grading_requested",
            target=assignment,
            after={
                "answers": count,
                "reason": "rubric version",
                "rubric": rubric.pk,
                "version": rubric.version,
            },
            assignment_id=assignment.pk,
        )
    return count
