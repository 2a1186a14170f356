"""`evaluate_grader` on the labelled samples shipped in tests/data."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

DATA = Path(__file__).parent / "data"
LAST = re.compile(
    # An undefined figure (a constant grader has no correlation) is "nan", never 0.
    r"^n=(\d+) qwk=(-?[\d.]+|nan) pearson=(-?[\d.]+|nan) exact=([\d.]+) adjacent=([\d.]+) "
    r"mae=([\d.]+)$"
)


def evaluate(name: str, *extra: str) -> tuple[str, dict[str, float]]:
    out = StringIO()
    call_command(
        "evaluate_grader",
        "--csv",
        str(DATA / name),
        "--question-col",
        "question",
        "--reference-col",
        "reference",
        "--answer-col",
        "answer",
        "--score-col",
        "score",
        "--max-score",
        "4",
        "--group-col",
        "question_id",
        *extra,
        stdout=out,
    )
    text = out.getvalue()
    match = LAST.match(text.strip().splitlines()[-1])
    assert match, text
    keys = ("n", "qwk", "pearson", "exact", "adjacent", "mae")
    return text, dict(zip(keys, map(float, match.groups()), strict=True))


SAMPLES = [
    ("short_answers_en.csv", "en", 60),
    ("short_answers_zh.csv", "zh-hans", 60),
    ("short_answers_en_2.csv", "en", 240),
    ("short_answers_zh_2.csv", "zh-hans", 240),
]


@pytest.mark.parametrize(("name", "language", "rows"), SAMPLES)
def test_zero_shot_rules_beat_bag_of_words(name, language, rows):
    text, rules = evaluate(name, "--language", language)
    _, bow = evaluate(name, "--language", language, "--engine", "bow")
    assert rules["n"] == bow["n"] == rows
    assert rules["qwk"] > bow["qwk"] + 0.05 and rules["pearson"] > bow["pearson"] + 0.05
    assert "tokens=0" in text and "wall_s=" in text
    assert "zero-shot on the same answers" not in text  # nothing to compare without exemplars


def test_one_line_per_question_then_the_summary():
    text, _ = evaluate("short_answers_en.csv")
    lines = text.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["photo", "stack", "rates"]
    assert lines[-2].startswith("engine=rules exemplars=0 ")


@pytest.mark.parametrize(("name", "language", "rows"), SAMPLES)
def test_ten_exemplars_beat_the_zero_shot_engine_on_the_same_answers(name, language, rows):
    text, calibrated = evaluate(name, "--language", language, "--exemplars", "10", "--seed", "1")
    zero_line = next(line for line in text.splitlines() if line.startswith("zero-shot on the"))
    zero = LAST.match(zero_line.split(": ", 1)[1])
    assert zero, zero_line
    assert int(zero.group(1)) == calibrated["n"] == rows - 10 * rows // (20 if rows == 60 else 30)
    # One seed, so a margin smaller than the average over seeds (test_calibration).
    assert calibrated["qwk"] > float(zero.group(2)) + 0.03


def test_exemplars_are_held_out_per_group_and_the_seed_is_repeatable():
    _, first = evaluate("short_answers_zh.csv", "--language", "zh-hans", "--exemplars", "10")
    _, again = evaluate("short_answers_zh.csv", "--language", "zh-hans", "--exemplars", "10")
    assert first["n"] == 30  # 3 questions x (20 answers - 10 exemplars)
    assert first == again
    _, other = evaluate(
        "short_answers_zh.csv", "--language", "zh-hans", "--exemplars", "10", "--seed", "7"
    )
    assert other["n"] == 30


def test_nothing_left_to_score_is_an_error():
    with pytest.raises(CommandError, match="Nothing was left to score"):
        evaluate("short_answers_en.csv", "--exemplars", "20")


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(CommandError, match="No such column"):
        call_command(
            "evaluate_grader",
            "--csv",
            str(DATA / "short_answers_en.csv"),
            "--question-col",
            "prompt",
            "--reference-col",
            "reference",
            "--answer-col",
            "answer",
            "--score-col",
            "score",
            "--max-score",
            "4",
            stdout=StringIO(),
        )
    bad = tmp_path / "bad.csv"
    bad.write_text("q,r,a,s\nQ,R,A,9\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"outside 0\.\.4"):
        call_command(
            "evaluate_grader",
            "--csv",
            str(bad),
            "--question-col",
            "q",
            "--reference-col",
            "r",
            "--answer-col",
            "a",
            "--score-col",
            "s",
            "--max-score",
            "4",
            stdout=StringIO(),
        )


@pytest.mark.django_db
def test_the_llm_engine_grades_through_the_model_with_exemplars_in_the_prefix(fake_llm):
    from grading.prompts import EXEMPLAR_OPEN

    text, figures = evaluate("short_answers_en.csv", "--engine", "llm", "--exemplars", "5")
    assert figures["n"] == 45  # 3 questions x 15 graded answers
    assert "failed=0" in text and "tokens=0" not in text
    systems = [r["messages"][0]["content"] for r in fake_llm.requests]
    assert len(systems) == 45 and len(set(systems)) == 3  # one shared prefix per question
    assert all(system.count(EXEMPLAR_OPEN) == 5 for system in systems)


def test_the_llm_engine_needs_an_endpoint(settings):
    settings.LLM_BASE_URL = ""
    with pytest.raises(CommandError, match="LLM_BASE_URL"):
        evaluate("short_answers_en.csv", "--engine", "llm")
