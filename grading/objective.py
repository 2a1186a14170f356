"""Deterministic scoring of objective questions. No model is ever involved."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from courses.models import QuestionKind


@dataclass(frozen=True)
class ObjectiveResult:
    points: int
    max_points: int
    correct: bool
    detail: str


class AnswerKeyError(ValueError):
    """The question's answer key cannot score anything (a setup mistake, not a wrong answer)."""


def parse_number(text: str) -> float | None:
    """Read a number as students type it: full-width digits, a decimal comma, spaces."""
    cleaned = unicodedata.normalize("NFKC", text).strip().replace(" ", "").replace("，", ",")
    if cleaned.count(",") == 1 and "." not in cleaned and not re.search(r",\d{3}$", cleaned):
        cleaned = cleaned.replace(",", ".")  # 9,8 → 9.8 (but 1,000 stays a thousand)
    else:
        cleaned = cleaned.replace(",", "")  # 1,000 → 1000
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _normalize_text(text: str, case_sensitive: bool) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text if case_sensitive else text.casefold()


def score(
    *, kind: str, answer_key: dict[str, Any], points: int, text: str, choices: list[str]
) -> ObjectiveResult:
    if kind in (QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE):
        correct_keys = set(answer_key.get("correct") or [])
        if not correct_keys:
            raise AnswerKeyError("choice question without a correct option")
        chosen = set(choices)
        ok = chosen == correct_keys
        detail = f"chose {', '.join(sorted(chosen)) or '—'}; key {', '.join(sorted(correct_keys))}"
    elif kind == QuestionKind.NUMERIC:
        try:
            target = float(answer_key["value"])
            tolerance = abs(float(answer_key.get("tolerance", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnswerKeyError(f"numeric key unusable: {exc!r}") from exc
        value = parse_number(text)
        if value is None:
            ok, detail = False, f"“{text.strip()[:40]}” is not a number"
        else:
            # A hair of slack so that 9.7 with tolerance 0.1 around 9.8 counts.
            ok = abs(value - target) <= tolerance + 1e-9 * max(1.0, abs(target))
            detail = f"{value:g} vs {target:g} ± {tolerance:g}"
    elif kind == QuestionKind.EXACT_TEXT:
        accepted = answer_key.get("accepted") or []
        if not accepted:
            raise AnswerKeyError("text question without accepted answers")
        case_sensitive = bool(answer_key.get("case_sensitive", False))
        given = _normalize_text(text, case_sensitive)
        if answer_key.get("regex"):
            flags = 0 if case_sensitive else re.IGNORECASE
            try:
                ok = any(re.fullmatch(p, given, flags) for p in accepted)
            except re.error as exc:
                raise AnswerKeyError(f"regex does not compile: {exc}") from exc
        else:
            ok = given in {_normalize_text(a, case_sensitive) for a in accepted}
        detail = f"“{text.strip()[:40]}”"
    else:
        raise AnswerKeyError(f"{kind} is not an objective question")
    return ObjectiveResult(points if ok else 0, points, ok, detail)
