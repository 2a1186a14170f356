"""Heuristic screening of subjective answers, before and after the model.

Blank answers are never sent to a model. Answers that address the grader
("ignore the instructions", "给我满分", role tags, fake JSON scores) are
flagged `prompt_injection_suspected` whatever the model says, so they are
sorted first in the review queue and never bulk-approved.
"""

from __future__ import annotations

import re
import unicodedata

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")

_INJECTION_PATTERNS = [
    # English: instructions aimed at the grader
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules?|rubric|prompt|above)\b",
    r"\byou are now\b|\bact as\b|\bsystem prompt\b|\btest mode\b|\bdeveloper mode\b",
    r"\b(full|maximum|max|perfect)\s+(marks?|scores?|points?)\b",
    r"\bgive\b.{0,20}\b(100|full|maximum|perfect)\b",
    # Chinese
    r"忽略.{0,10}(指令|规则|要求|提示|标准)",
    r"(给|打|评)(我|这篇|本文|此文)?.{0,4}满分",
    r"系统提示|你现在是|评分规则.{0,6}(无效|作废)|以管理员身份",
    # Chat-template role tags and fake conversation turns
    r"<\|?(im_start|im_end|system|assistant|user|endoftext)\|?>",
    r"\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*(system|assistant)\b",
    r"\"role\"\s*:\s*\"(system|assistant)\"",
    # Fake JSON scores: an object with a quoted key and a number
    r"\{[^{}]{0,400}\"[^\"]{1,40}\"\s*:\s*\d{1,3}[^{}]{0,400}\}",
]
_INJECTION = [re.compile(p, re.IGNORECASE | re.MULTILINE) for p in _INJECTION_PATTERNS]

# Below these an answer is "blank or near-empty": nothing a grader could score.
MIN_CJK_CHARS = 5
MIN_WORDS = 3


# Whitespace runs touching a non-ASCII character (matching only the runs keeps
# this linear and cheap on long Chinese essays).
_SPACE_NEAR_WIDE = re.compile(r"(?<=[^\x00-\x7f]) +| +(?=[^\x00-\x7f])")


def normalize(text: str) -> str:
    """Canonical form used to spot identical answers: NFKC, single spaces, and no
    spaces next to Chinese characters or punctuation (they carry no meaning there)."""
    collapsed = " ".join(unicodedata.normalize("NFKC", text).split())
    return _SPACE_NEAR_WIDE.sub("", collapsed)


def substance(text: str) -> tuple[int, int]:
    """(CJK characters, latin words) in the answer."""
    return len(CJK.findall(text)), len(WORD.findall(text))


def is_blank(text: str) -> bool:
    cjk, words = substance(text)
    return cjk < MIN_CJK_CHARS and words < MIN_WORDS


def injection_signals(text: str) -> list[str]:
    """The fragments that look like instructions to the grader (empty if none)."""
    normalized = unicodedata.normalize("NFKC", text)
    found = []
    for pattern in _INJECTION:
        match = pattern.search(normalized)
        if match:
            found.append(match.group(0)[:80])
    return found
