"""What the review workspace and the student's feedback page draw: pure functions, no I/O.

Which level of a criterion a score meets (the level descriptor a teacher clicks to score,
and the one a student is told they met), and an answer's text cut into passages with the
inline comments that cover them. The browser repeats `level_met` as the teacher types
(static/js/review.js); both read the same level list from the rubric snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol


def display_text(text: str) -> str:
    """An answer's text as a browser holds it in the page: HTML parsing turns "\r\n" and a
    lone "\r" into "\n" (text saved before `courses.text.clean_text` may have them).
    Comment positions count characters of this text."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_score(value: object) -> int | None:
    """A score as a form or the database holds it ("12", 12), or None when it is none."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isascii() and text.isdigit() else None


def level_met(levels: Sequence[dict[str, Any]], points: int | None) -> int | None:
    """The index in `levels` of the level `points` meets: the level with the most points
    not above `points` (with range scoring a level covers its points up to the next level;
    with level scoring a score is one level's points, so this is that level). None when
    there is no score or no level at or below it."""
    if points is None:
        return None
    best: int | None = None
    for index, level in enumerate(levels):
        if level["points"] <= points and (best is None or level["points"] > levels[best]["points"]):
            best = index
    return best


def level_band(levels: Sequence[dict[str, Any]], index: int, max_points: int) -> str:
    """The scores a level covers with range scoring, "0–15" (a level's points up to the
    next level's); "" when that is its points alone."""
    low = levels[index]["points"]
    higher = [lv["points"] for lv in levels if lv["points"] > low]
    high = min(higher) - 1 if higher else max_points
    return f"{low}–{high}" if high > low else ""


class Comment(Protocol):
    pk: int
    start: int
    end: int


@dataclass
class Passage:
    """A run of the answer's text and the comments that cover all of it (none: plain text)."""

    text: str
    comments: list[int] = field(default_factory=list)  # their numbers, 1-based, in order


def passages(text: str, comments: Iterable[Comment]) -> list[Passage]:
    """`text` cut at every comment's start and end. Comments may overlap or nest: a run
    covered by two lists both. Comments are numbered 1, 2, … in the order given (the
    selector orders them by position), which is how the list beside the text numbers them."""
    numbered = [(n, c) for n, c in enumerate(comments, 1) if 0 <= c.start < c.end <= len(text)]
    cuts = sorted({0, len(text)} | {c.start for _, c in numbered} | {c.end for _, c in numbered})
    runs: list[Passage] = []
    for begin, finish in pairwise(cuts):
        covering = [n for n, c in numbered if c.start <= begin and finish <= c.end]
        if runs and runs[-1].comments == covering == []:
            runs[-1].text += text[begin:finish]
        else:
            runs.append(Passage(text[begin:finish], covering))
    return runs
