"""The calibrated offline engine's cost: fitting once per process versus once per chunk.

A question with 100 teacher-graded exemplars (EXEMPLARS_MAX) is graded in
chunks of 16 answers, as the queue sends them. Before the per-process model
cache every chunk fitted the question's model again (n^2 exemplar pairs);
now the first chunk fits it and the others reuse it. Exemplars and answers
come from the labelled samples in tests/data. Pure computation, no database.

Printed: the fit's cost, the per-answer cost, both ways of grading 10 chunks
and their ratio. The last line is machine-readable:

    cache_speedup=<x> fit_ms=<y> propose_ms_per_answer=<z>
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from grading import calibration  # noqa: E402
from grading.management.commands.evaluate_grader import single_criterion  # noqa: E402
from grading.prompts import Exemplar  # noqa: E402

CHUNKS, CHUNK = 10, 16


def main() -> None:
    with (ROOT / "tests/data/short_answers_en_2.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    question, reference = rows[0]["question"], rows[0]["reference"]
    exemplars = [
        Exemplar(r["answer"], (int(r["score"]),), answer_id=i)
        for i, r in enumerate(rows[: calibration.EXEMPLARS_MAX])
    ]
    answers = [r["answer"] for r in rows[calibration.EXEMPLARS_MAX :]]
    chunks = [
        [answers[(c * CHUNK + i) % len(answers)] for i in range(CHUNK)] for c in range(CHUNKS)
    ]
    snapshot = single_criterion(4, "en")
    args = (snapshot, question, reference, "en", exemplars)

    started = time.perf_counter()
    for chunk in chunks:  # before: a model fitted for every chunk
        model = calibration.QuestionModel(*args)
        for text in chunk:
            model.propose(text)
    per_chunk_fit = time.perf_counter() - started

    started = time.perf_counter()
    for chunk in chunks:  # now: one model per process
        model = calibration.question_model(*args)
        for text in chunk:
            model.propose(text)
    cached = time.perf_counter() - started

    started = time.perf_counter()
    fresh = calibration.QuestionModel(*args)
    fresh.propose(answers[0])
    fit_and_one = time.perf_counter() - started
    started = time.perf_counter()
    for text in answers:
        fresh.propose(text)
    per_answer = (time.perf_counter() - started) / len(answers)

    speedup = per_chunk_fit / cached
    print(f"{len(exemplars)} exemplars, {CHUNKS} chunks of {CHUNK} answers")
    print(f"fit per chunk (before): {per_chunk_fit:.2f} s; one fit per process: {cached:.2f} s")
    print(
        f"cache_speedup={speedup:.1f} fit_ms={(fit_and_one - per_answer) * 1000:.0f} "
        f"propose_ms_per_answer={per_answer * 1000:.1f}"
    )


if __name__ == "__main__":
    main()
