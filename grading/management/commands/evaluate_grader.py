"""Grade a labelled data set and say how far the grader agrees with the humans.

    python manage.py evaluate_grader --csv FILE --question-col COL --reference-col COL \
        --answer-col COL --score-col COL --max-score N [--group-col COL] [--exemplars K] \
        [--seed S] [--language zh-hans|en] [--engine rules|llm|bow]

Rows are grouped by --group-col (else by the question text). With --exemplars
K, K answers of each group, drawn with --seed, play the teacher's graded
exemplars and the rest are graded and scored; a group with K or fewer answers
has nothing left to score and is skipped. A blank question or reference cell
takes the group's first non-blank one, so a data set can state them once.
`bow` is the baseline every engine must beat: the bag-of-words cosine to the
reference answer, times the maximum score. The rule engine with exemplars also
prints its zero-shot figures on the same answers (the gain from calibration,
on equal terms). The last line is machine-readable:
`n=<n> qwk=<x> pearson=<x> exact=<x> adjacent=<x> mae=<x>`.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from grading import llm, rules
from grading.agreement import agreement, whole_points
from grading.calibration import QuestionModel
from grading.models import Answer, Snapshot
from grading.prompts import Exemplar, GradingContext, select_exemplars
from grading.services import pipeline


@dataclass(frozen=True)
class Row:
    group: str
    question: str
    reference: str
    answer: str
    score: float


def read_rows(path: Path, options: dict[str, Any]) -> list[Row]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            records = list(csv.DictReader(handle))
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from exc
    columns = {
        name: options[name]
        for name in ("question_col", "reference_col", "answer_col", "score_col", "group_col")
        if options.get(name)
    }
    if records:
        missing = sorted(set(columns.values()) - set(records[0]))
        if missing:
            raise CommandError(f"No such column(s) in {path}: {', '.join(missing)}")
    rows: list[Row] = []
    known: dict[str, tuple[str, str]] = {}
    for number, record in enumerate(records, start=2):
        question = record[columns["question_col"]].strip()
        group = record[columns["group_col"]].strip() if "group_col" in columns else question
        first_question, first_reference = known.get(group, ("", ""))
        question = question or first_question
        reference = record[columns["reference_col"]].strip() or first_reference
        known[group] = (first_question or question, first_reference or reference)
        raw = record[columns["score_col"]].strip()
        try:
            score = float(raw)
        except ValueError as exc:
            raise CommandError(f"Row {number}: score {raw!r} is not a number") from exc
        if not 0 <= score <= options["max_score"]:
            raise CommandError(f"Row {number}: score {score} is outside 0..{options['max_score']}")
        rows.append(Row(group, question, reference, record[columns["answer_col"]], score))
    return rows


def single_criterion(max_score: int, language: str) -> dict[str, Any]:
    """A data set has one score per answer: a one-criterion rubric, any whole number."""
    title = "得分" if language == "zh-hans" else "Score"
    return {
        "title": title,
        "criteria": [
            {
                "id": 1,
                "title": title,
                "description": "",
                "max_points": max_score,
                "scoring": "range",
                "levels": [],
            }
        ],
    }


class Command(BaseCommand):
    help = "Grade a labelled CSV through a grading engine and report agreement with the humans."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--csv", required=True, type=Path, dest="csv_path")
        parser.add_argument("--question-col", required=True)
        parser.add_argument("--reference-col", required=True)
        parser.add_argument("--answer-col", required=True)
        parser.add_argument("--score-col", required=True)
        parser.add_argument("--max-score", required=True, type=int)
        parser.add_argument("--group-col", default="")
        parser.add_argument("--exemplars", type=int, default=0, help="Graded answers per group.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--language", choices=["zh-hans", "en"], default="en")
        parser.add_argument("--engine", choices=["rules", "llm", "bow"], default="rules")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["max_score"] < 1:
            raise CommandError("--max-score must be at least 1")
        if options["exemplars"] < 0:
            raise CommandError("--exemplars cannot be negative")
        rows = read_rows(options["csv_path"], options)
        if not rows:
            raise CommandError("The CSV has no rows.")
        groups: dict[str, list[Row]] = {}
        for row in rows:
            groups.setdefault(row.group, []).append(row)
        snapshot = single_criterion(options["max_score"], options["language"])
        rng = random.Random(options["seed"])
        predicted: list[float] = []
        truth: list[float] = []
        zero_shot: list[float] = []
        tokens = failed = 0
        started = time.perf_counter()
        for name, members in groups.items():
            k = options["exemplars"]
            if len(members) <= k:
                self.stdout.write(f"{name}: {len(members)} answers, none left after {k} exemplars")
                continue
            chosen = set(rng.sample(range(len(members)), k)) if k else set()
            exemplars = [
                Exemplar(members[i].answer, (whole_points(members[i].score),), answer_id=i)
                for i in sorted(chosen)
            ]
            scored = [m for i, m in enumerate(members) if i not in chosen]
            first = members[0]
            group_predicted = self._grade(options, snapshot, first, exemplars, scored)
            tokens += group_predicted.tokens
            pairs = [
                (p, m.score)
                for p, m in zip(group_predicted.scores, scored, strict=True)
                if p is not None
            ]
            failed += len(scored) - len(pairs)
            group_predicted_scores = [p for p, _ in pairs]
            group_truth = [t for _, t in pairs]
            figures = agreement(
                group_predicted_scores, group_truth, min_score=0, max_score=options["max_score"]
            )
            self.stdout.write(f"{name}: {figures.line()}")
            predicted += group_predicted_scores
            truth += group_truth
            zero_shot += group_predicted.zero_shot or []
        if not predicted:
            raise CommandError("Nothing was left to score.")
        overall = agreement(predicted, truth, min_score=0, max_score=options["max_score"])
        elapsed = time.perf_counter() - started
        signed = "nan" if overall.mean_signed is None else f"{overall.mean_signed:+.3f}"
        if options["exemplars"] and zero_shot:
            same = agreement(zero_shot, truth, min_score=0, max_score=options["max_score"])
            self.stdout.write(f"zero-shot on the same answers: {same.line()}")
        self.stdout.write(
            f"engine={options['engine']} exemplars={options['exemplars']} "
            f"mean_signed={signed} failed={failed} tokens={tokens} wall_s={elapsed:.2f}"
        )
        self.stdout.write(overall.line())

    def _grade(
        self,
        options: dict[str, Any],
        snapshot: dict[str, Any],
        first: Row,
        exemplars: list[Exemplar],
        scored: list[Row],
    ) -> _Graded:
        engine = options["engine"]
        if engine == "bow":
            maximum = options["max_score"]
            return _Graded(
                [
                    float(
                        whole_points(rules.bag_of_words_cosine(m.answer, first.reference) * maximum)
                    )
                    for m in scored
                ]
            )
        if engine == "llm":
            return _llm_scores(snapshot, first, exemplars, scored, options["language"])
        model = QuestionModel(
            snapshot, first.question, first.reference, options["language"], exemplars
        )
        return _Graded(
            [float(model.propose(m.answer)[0].total()) for m in scored],
            zero_shot=[float(model.propose(m.answer, zero_shot=True)[0].total()) for m in scored],
        )


@dataclass(frozen=True)
class _Graded:
    scores: list[float | None]  # None: the engine gave no valid grade (never a zero)
    tokens: int = 0
    # The rule engine with exemplars also grades without them: the same answers, so the
    # gain from calibration is measured on equal terms.
    zero_shot: list[float] | None = None


def _llm_scores(
    snapshot: dict[str, Any],
    first: Row,
    exemplars: list[Exemplar],
    scored: list[Row],
    language: str,
) -> _Graded:
    """Grade through the configured model exactly as the pipeline does: the same prompt
    (exemplars in the shared prefix), schema, retries and validation; nothing stored."""
    if not settings.LLM_BASE_URL:
        raise CommandError("--engine llm needs LLM_BASE_URL (the model endpoint).")
    context = GradingContext(
        language=language,
        question=first.question,
        reference_answer=first.reference,
        guidelines="",
        rubric=snapshot,
        exemplars=select_exemplars(exemplars, language=language),
    )
    prepared = pipeline.Prepared(context, Snapshot(), Snapshot())
    jobs = [
        pipeline.Job(Answer(text=row.answer), prepared, f"row-{i}", [])
        for i, row in enumerate(scored)
    ]
    results: dict[str, float | None] = {}
    tokens = 0
    for outcome in llm.engine().map_unordered(
        pipeline._call_model, jobs, on_error=pipeline._crashed
    ):
        tokens += sum((c.prompt_tokens or 0) + (c.completion_tokens or 0) for c in outcome.calls)
        results[outcome.input_hash] = (
            float(outcome.proposal.total()) if outcome.proposal is not None else None
        )
    return _Graded([results.get(job.input_hash) for job in jobs], tokens)
