"""Heuristic screening of subjective answers, before and after the model.

Blank answers are never sent to a model. Answers that address the grader
("ignore the instructions", "给我满分", role tags, chat turns, fake JSON
scores, forged answer markers) are flagged `prompt_injection_suspected`
whatever the model says, so they are sorted first in the review queue and
never bulk-approved. The model's own flag still counts; this is the floor.

Detection works on a folded copy of the answer, so that the disguises cost
nothing to see through: NFKC (full-width and mathematical letters), invisible
characters removed (zero-width, bidi controls, soft hyphens) and Unicode tag
characters read as the ASCII they smuggle, Cyrillic and Greek look-alikes
folded to Latin, the traditional forms of the key Chinese words folded to
simplified, letters spelt out with spaces or dots joined, separators
between Chinese characters dropped, and base64 runs decoded and screened
too. The patterns then look for intent rather than words: an imperative
("ignore", "忽略", "无视" …) aimed at the grader's instructions, a demand for a
score, a role or chat-turn marker where a turn would start, JSON keyed like a
grade, or the answer markers from prompts.py. Narrative uses ("he ignored the
doctor's instructions", "忽略它的风险", "我考了满分") do not match. The
labelled corpus in tests/data/injection_corpus.jsonl measures both rates.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from .prompts import ANSWER_OPEN, FLAG_NAMES

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")

# Below these an answer is "blank or near-empty": nothing a grader could score.
MIN_CJK_CHARS = 5
MIN_WORDS = 3


# Whitespace runs touching a non-ASCII character (matching only the runs keeps
# this linear and cheap on long Chinese essays).
_SPACE_NEAR_WIDE = re.compile(r"(?<=[^\x00-\x7f]) +| +(?=[^\x00-\x7f])")


def normalize(text: str) -> str:
    """Canonical form used to spot identical answers: NFKC, single spaces, and no
    spaces next to Chinese characters or punctuation (they carry no meaning there).

    This is part of every input hash (identical answers share one grading), so it
    stays this conservative; screening folds far more aggressively, in `_Folded`."""
    collapsed = " ".join(unicodedata.normalize("NFKC", text).split())
    return _SPACE_NEAR_WIDE.sub("", collapsed)


def substance(text: str) -> tuple[int, int]:
    """(CJK characters, latin words) in the answer."""
    return len(CJK.findall(text)), len(WORD.findall(text))


def is_blank(text: str) -> bool:
    # NFKC first: an answer typed in full-width letters (ｎｏ ｉｄｅａ, or a whole
    # essay) is counted like its ASCII form, and invisible characters count for nothing.
    visible = _nfkc(text)
    if _HAS_INVISIBLE.search(visible):
        visible = visible.translate(_INVISIBLE)
    # Count only up to the thresholds: a long essay is decided in its first words.
    cjk = sum(1 for _ in islice(CJK.finditer(visible), MIN_CJK_CHARS))
    words = sum(1 for _ in islice(WORD.finditer(visible), MIN_WORDS))
    return cjk < MIN_CJK_CHARS and words < MIN_WORDS


# --- Folding ------------------------------------------------------------------

# Characters that render as nothing (or almost): zero-width spaces and joiners,
# bidi controls, soft hyphen, word joiner, BOM, Mongolian vowel separator,
# combining grapheme joiner, Hangul fillers, interlinear annotation marks.
_INVISIBLE_RANGES = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0xE0000, 0xE001F),
    (0xE007F, 0xE01EF),
]
_INVISIBLE: dict[int, str | None] = {
    cp: None for lo, hi in _INVISIBLE_RANGES for cp in range(lo, hi + 1)
}
_HAS_INVISIBLE = re.compile(
    "["
    + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in _INVISIBLE_RANGES)
    + "]"
)

# Unicode tag characters U+E0020–E007E are invisible copies of ASCII that some
# tokenizers still read: screen them as the text they spell.
_TAGS = {0xE0000 + cp: chr(cp) for cp in range(0x20, 0x7F)}

# Cyrillic and Greek letters that look like Latin ones.
_HOMOGLYPHS = dict(
    zip(
        map(ord, "АВЕЅІЈКМНОРСТХУаеѕіјорсхуԁһӏԛԝѵ" + "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορτυχ"),
        "ABESIJKMHOPCTXYaesijopcxydhlqwv" + "ABEZHIKMNOPTYXaikvoptux",
        strict=True,
    )
)

# Traditional → simplified, for the characters of the key words only (not a
# converter: enough that 無視以上規則 and 给满分's traditional forms read the same).
_TRADITIONAL = dict(
    zip(
        map(
            ord,
            "無視規則給滿評標準請統現這說為項應設該總數務員輸記譯碼級優閱從開試測當細達內們過"
            "執學備註變廢適啟發關遺棄繞斷個問題錄録幫調寬鬆將讓審結詞剛時須懇煩獄機進辦畢戶"
            "稱讀會議後號層類並",
        ),
        "无视规则给满评标准请统现这说为项应设该总数务员输记译码级优阅从开试测当细达内们过"
        "执学备注变废适启发关遗弃绕断个问题录录帮调宽松将让审结词刚时须恳烦狱机进办毕户"
        "称读会议后号层类并",
        strict=True,
    )
)

# Typographic apostrophes, so "Don’t ignore" reads like "Don't ignore". (Not the
# double quotation marks: Chinese essays quote with “”, and those are not JSON.)
_APOSTROPHES = {0x2018: "'", 0x2019: "'", 0x2032: "'"}
_FOLD = str.maketrans({**_INVISIBLE, **_TAGS, **_HOMOGLYPHS, **_TRADITIONAL, **_APOSTROPHES})
_NEEDS_FOLD = re.compile(
    "["
    + "".join(re.escape(chr(cp)) for cp in sorted(_FOLD) if cp < 0x10000)
    + "\U000e0000-\U000e01ef]"
)
# What NFKC does to ordinary Chinese punctuation, done with str.replace first:
# NFKC of text that is already normal is only a quick check, while NFKC of a
# Chinese essay full of "，" costs more than all the patterns together.
_WIDE_PUNCTUATION = [*zip("，：！？；（）\u3000", ",:!?;() ", strict=True), ("…", "...")]

# Letters spelt out one at a time ("i g n o r e", "f.u.l.l"): joined.
_SPELT = re.compile(r"(?<![a-z])[a-z](?:[ .\-_*·][a-z](?![a-z])){2,}")
_SPELT_SEP = re.compile(r"[ .\-_*·]")
# A hyphen, underscore or asterisk inside a word ("ru-bric", "full_marks").
_INWORD = re.compile(r"[\-_*·](?<=[a-z][\-_*·])(?=[a-z])")
_CJK_CLASS = r"\u3400-\u4dbf\u4e00-\u9fff"
# Spaces and light separators between two Chinese characters ("请 忽 略", "忽-略").
_GAP = r"[ \-_.*·/|~]"
_CJK_GAP = re.compile(rf"{_GAP}(?<=[{_CJK_CLASS}]{_GAP}){_GAP}*(?=[{_CJK_CLASS}])")
# Latin words, for deciding cheaply which patterns can match at all.
_WORD_BYTES = bytes(c if (97 <= c <= 122 or c == 39) else 32 for c in range(256))


def _nfkc(text: str) -> str:
    for wide, narrow in _WIDE_PUNCTUATION:
        if wide in text:
            text = text.replace(wide, narrow)
    return unicodedata.normalize("NFKC", text)


def _words(folded: str) -> frozenset[bytes]:
    return frozenset(folded.encode("ascii", "replace").translate(_WORD_BYTES).split())


class _Folded:
    """The answer as screening reads it (see the module docstring): the folded
    text, its Latin words, whether it has Chinese, and the words it spelt out."""

    def __init__(self, nfkc: str) -> None:
        ascii_only = nfkc.isascii()
        if not ascii_only and _NEEDS_FOLD.search(nfkc):
            nfkc = nfkc.translate(_FOLD)
        text = nfkc.lower()
        words = _words(text)
        self.spelt: list[str] = []
        # Two different one-letter "words" besides a and i: maybe something spelt out.
        if len({w for w in words if len(w) == 1} - {b"a", b"i"}) >= 2:
            text = _SPELT.sub(self._join, text)
        squeezed = _INWORD.sub("", text)
        if self.spelt or len(squeezed) != len(text):
            words = _words(squeezed)
        text = squeezed
        if "  " in text or "\n" in text or not text.isprintable():
            # One space between words, no blank lines; line starts matter (chat turns).
            lines = (" ".join(line.split()) for line in text.split("\n"))
            text = "\n".join(line for line in lines if line)
        self.cjk = not ascii_only and CJK.search(text) is not None
        if self.cjk:
            text = _CJK_GAP.sub("", text)
        self.text = text
        self.words = words

    def _join(self, match: re.Match[str]) -> str:
        self.spelt.append(_SPELT_SEP.sub("", match.group(0)))
        return self.spelt[-1]


# --- Intent patterns (on folded text) -----------------------------------------
#
# Every pattern starts with literal text (so the regex engine skips straight to
# candidates) and runs only when one of its words occurs, or when the answer has
# Chinese, or always when it starts with a rare character. Where a match must
# start a word, a clause or a turn, a check on the preceding characters says so.

# English. Separators are optional (` ?`) because spelt-out words are joined.
_EN_VERB = (
    "(?:ignore|disregard|forget|overlook|bypass|override|skip|set aside|discard|drop"
    "|do not follow|do not apply|do not use|do not obey|don't follow|don't apply|don't use"
    "|don't obey|dont follow|stop following|stop applying|no longer follow|no longer apply)"
)
# Words that point at the grader's own instructions, and harmless fillers.
_EN_POINTER = (
    r"(?:previous|prior|above|preceding|earlier|foregoing|original|initial|old|system"
    r"|your|grader'?s?|grading|marking|scoring|assessment|evaluation)"
)
_EN_FILLER = r"(?:all|any|every|the|of|these|those|my|other|that|this|and)"
_EN_WEAK = (
    r"instructions?|rules?|guidelines?|directions?|directives?|commands?|constraints?"
    r"|criteria|prompts?"
)
_EN_STRONG = (
    r"rubrics?|system ?prompts?|marking ?(?:criteria|scheme|rules|guide)"
    r"|grading ?(?:criteria|rules|scheme|guidelines|instructions)"
    r"|scoring ?(?:criteria|rules|guidelines|instructions)"
)
_EN_WORDS = rf"(?:(?:{_EN_FILLER}|{_EN_POINTER}) ?)"
# Roles a model or grader could be told to take.
_EN_ROLE = r"(?:grader|examiner|marker|assessor|evaluator|ai|model|chatbot|bot|teacher)"

# Chinese.
_ZH_VERB = (
    r"(?:忽略|忽视|无视|不要理会|不用理会|别理会|不必理会|不要管|别管|不用管|抛开|抛弃|忘掉|忘记|忘了"
    r"|跳过|绕过|不要遵守|不必遵守|不用遵守|无需遵守|不再遵守|不要遵循|不要按照?|不必按照?|不适用)"
)
_ZH_POINTER = r"(?:以上|上述|上面|前面|之前|先前|此前|原有|原来|原先|刚才|系统|你的|你收到的)"
_ZH_FILLER = r"(?:所有|一切|全部|你|您|的|了|掉|收到|都|这些|任何|其他|其它|请)"
_ZH_WEAK = r"(?:规则|要求|指示|指令|标准|说明|规定|约束|限制|设定|内容|命令|提示)"
_ZH_STRONG = (
    r"(?:评分(?:标准|规则|细则|要求|指令|说明|量表|依据)|阅卷(?:规则|标准|要求|说明)"
    r"|打分(?:规则|标准)|提示词|系统(?:提示|指令|设定|消息))"
)
_ZH_TOP = r"(?:满分|最高分|一百分|100分|二十分|20分|最高等级|最高档|一等|优秀)"
_ZH_TARGET = (
    r"(?:我|本文|这篇(?:作文|文章|答案)?|此文|该文|本篇|这份(?:答卷|答案)?|本答案|该答案|作者)"
)
_ZH_GIVE = r"(?:给出|给予|给|打出|打|评为|评|判为|判|记为|记|赋予)"
_ZH_ALL = (
    r"(?:每一?项|各项|所有(?:评分)?项目?|全部(?:评分)?项目?|每个(?:评分)?项目?|所有分数|全部分数"
    r"|每个维度|各个维度)"
)
# The model's side of a chat and the grader's; "User:" / "用户：" alone is ordinary
# dialogue, and a forged conversation needs the other side's turn anyway.
_ROLE_WORDS = "system sys assistant developer ai grader examiner marker admin administrator"
_ROLE_ZH = "系统 助手 助理 管理员 开发者 评分员 阅卷员"
# The marker word of prompts.py as screening folds it ("studentanswer").
_MARKER = ANSWER_OPEN.strip("<>").replace("_", "").lower()
_FLAGS = "|".join(f.replace("_", "") for f in FLAG_NAMES if f != "blank")  # folded
_SCORE_KEY = (
    r"(?:\w{0,20}score\w{0,20}|total|points|marks?|grade|content|structure|language|creativity"
    r"|style|organi[sz]ation|grammar|relevance|clarity|originality|presentation|coherence"
    r"|得分|分数|总分|评分|成绩|分值|满分|内容\w{0,8}|结构\w{0,8}|语言\w{0,8}|文采\w{0,8}|书写\w{0,8})"
)

_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_CLAUSE_END = frozenset(",.!?;:。、 \n\"'“”‘’「」()")
_TURN_LEAD = frozenset(" >*#-[(【")
# A negation or a subject right before the verb: not an order to the grader.
_EN_NOT_ORDER = frozenset(
    {"not", "never", "dont", "i", "we", "they", "he", "she", "would", "will"}
    | {"you'd", "i'd", "we'd", "they'd", "i'll", "we'll", "who", "which", "people", "students"}
    | {"often", "sometimes", "usually", "always", "rarely", "seldom"}
)
_ZH_NEGATION = "不别勿莫没"


def _word(text: str, i: int) -> bool:
    return i == 0 or text[i - 1] not in _ASCII_ALNUM


def _en_imperative(text: str, i: int) -> bool:
    # An order has no subject and no negation: "Don't ignore the rubric" is advice,
    # "I'd give it 10/10" an opinion.
    if not _word(text, i):
        return False
    previous = text[max(0, i - 12) : i].split()
    return not previous or (previous[-1] not in _EN_NOT_ORDER and not previous[-1].endswith("n't"))


def _zh_imperative(text: str, i: int) -> bool:
    # "我们不能忽视这些规则", "请不要忽略评分标准": advice, not an order.
    return not any(c in _ZH_NEGATION for c in text[max(0, i - 3) : i])


def _clause(text: str, i: int) -> bool:
    return i == 0 or text[i - 1] in _CLAUSE_END


def _turn(text: str, i: int) -> bool:
    """At the start of a line or sentence, after any list or quote markers."""
    while i > 0 and text[i - 1] in _TURN_LEAD:
        i -= 1
    return i == 0 or text[i - 1] in ".!?。\n"


def _anywhere(text: str, i: int) -> bool:
    return True


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    before: Callable[[str, int], bool] = _anywhere
    words: frozenset[bytes] = frozenset()  # run when one of these Latin words occurs
    cjk: bool = False  # run when the answer has Chinese
    # With neither, the pattern starts with a rare character and always runs.

    def search(self, folded: _Folded) -> re.Match[str] | None:
        if (self.words or self.cjk) and not (
            (self.cjk and folded.cjk) or not self.words.isdisjoint(folded.words)
        ):
            return None
        pos = 0
        while (match := self.pattern.search(folded.text, pos)) is not None:
            if self.before(folded.text, match.start()):
                return match
            pos = match.start() + 1
        return None


def _rule(
    kind: str,
    pattern: str,
    before: Callable[[str, int], bool] = _anywhere,
    words: str = "",
    cjk: bool = False,
) -> _Rule:
    return _Rule(kind, re.compile(pattern), before, frozenset(words.encode().split()), cjk)


_RULES = [
    # An imperative aimed at the grader's instructions.
    _rule(
        "instruction",
        rf"{_EN_VERB} ?(?:{_EN_WORDS}{{0,4}}{_EN_POINTER} ?{_EN_WORDS}{{0,4}}(?:{_EN_WEAK})\b"
        rf"|{_EN_WORDS}{{0,4}}(?:{_EN_STRONG})\b"
        rf"|{_EN_WORDS}{{0,4}}(?:{_EN_WEAK}) ?(?:above|you (?:were|have been|'ve been) given"
        r"|given above)\b"
        r"|(?:everything|all|what) ?(?:above|before"
        r"|(?:you )?(?:were|have been|'ve been) (?:told|given|instructed)))",
        _en_imperative,
        "ignore disregard forget overlook bypass override skip aside discard drop follow"
        " following apply applying obey use",
    ),
    _rule(
        "instruction",
        rf"(?:{_EN_WEAK}|{_EN_STRONG}) ?(?:(?:above|you were given) ?(?:is|are) ?(?:outdated"
        r"|obsolete|void|invalid|cancel+ed|wrong|replaced|superseded|no longer valid)"
        r"|(?:no longer|do not|don't) ?apply)",
        _word,
        "outdated obsolete void invalid cancelled canceled wrong replaced superseded valid apply",
    ),
    _rule(
        "instruction",
        r"(?:updated|revised|real|actual|official|corrected) ?(?:rubric|marking ?scheme"
        r"|grading ?(?:criteria|rules|scheme)|scoring ?rules|system ?prompt)\b",
        _word,
        "updated revised real actual official corrected",
    ),
    _rule(
        "instruction",
        r"new ?instructions? ?(?:from|:)|your ?new ?(?:task|role|instructions?|job|goal)\b",
        _word,
        "new",
    ),
    _rule(
        "instruction",
        r"(?:system|admin|developer|teacher|grading|scoring) ?override\b",
        _word,
        "override",
    ),
    _rule(
        "instruction",
        r"replaces? ?the ?(?:one|rubric|rules|instructions) ?above",
        _word,
        "replace replaces",
    ),
    _rule(
        "role change",
        rf"you ?are ?(?:now|no longer) ?(?:a|an|the|my)? ?(?:\w+ ?)?(?:{_EN_ROLE}|assistant)\b",
        _word,
        "now longer",
    ),
    _rule(
        "role change",
        r"(?:act ?as|behave ?as|pretend ?(?:that )?(?:you are|you're|to be))"
        rf" ?(?:a|an|the)? ?(?:\w+ ?)?{_EN_ROLE}\b",
        _word,
        "act behave pretend",
    ),
    # Not "developer mode" or "debug mode": phones and web frameworks have those.
    _rule(
        "role change",
        r"(?:jailbreak|dan|god|unrestricted|unfiltered) ?mode\b",
        _word,
        "mode",
    ),
    _rule(
        "grader note",
        r"(?:grader|examiner|marker|teacher|assessor)(?:'?s)? ?note\b",
        _word,
        "note",
    ),
    _rule(
        "grader note",
        r"note ?(?:to|for) ?(?:the )?(?:grader|examiner|marker|assessor|ai|model)\b",
        _word,
        "note",
    ),
    _rule(
        "grader note",
        r"to ?(?:whoever|the person|the ai|the model) ?(?:is )?(?:grading|marking)",
        _word,
        "grading marking",
    ),
    # A demand for a score.
    _rule(
        "score demand",
        r"(?:give|award|assign|grant|output|set|mark|score|rate|enter|record|put)\b[^.!?\n]{0,30}?"
        r"(?:\b(?:full|max|maximum|perfect|top|highest) ?(?:marks?|scores?|points?|grades?|credit"
        r"|band|level|(?=(?:on|for|in) ?(?:every|each|all)\b))"
        r"|\b(\d{1,3}) ?(?:/|out of) ?\1\b|\b100 ?%)",
        _en_imperative,
        "give award assign grant output set mark score rate enter record put",
    ),
    _rule(
        "score demand",
        r"(?:this|my) ?(?:essay|answer|response|work|submission) ?(?:deserves|merits|earns"
        r"|should (?:get|receive)|must (?:get|receive)) ?(?:a |the )?(?:full|max|maximum|perfect"
        r"|top|highest)",
        _word,
        "deserves merits earns should must",
    ),
    _rule(
        "score demand",
        r"(?:every|each|all|any) ?(?:of the )?(?:criteri\w*|categor\w*|dimensions?|scores?)\b"
        r"[^.!?\n]{0,40}?\b(?:to|=|:|at|gets?|receives?|be) ?(?:the )?"
        r"(?:\d{1,3}\b(?! ?points? (?:each|per))|max\w*(?! ?of\b)|full|top|highest|perfect)",
        _word,
        "criterion criteria category categories dimension dimensions scores",
    ),
    _rule(
        "score demand",
        r"(?:(\d{1,3}) ?(?:/|out of) ?\1|full ?(?:marks|points)|top ?(?:band|score|marks)|\d{1,3})"
        r" ?(?:on|for|in|across) ?(?:every|each|all) ?(?:the |of the )?criteri",
        _word,
        "criterion criteria",
    ),
    _rule(
        "score demand",
        r"(?:score|scores|grade|marks?|points|result|total) ?[:=] ?"
        r"(?:max\w*|full|top|perfect|highest|100\b|\d{1,3} ?/ ?\d{1,3})(?! ?\()",
        _word,
        "score scores grade mark marks points result total",
    ),
    _rule(
        "instruction",
        rf"{_ZH_VERB}(?:(?:{_ZH_FILLER}|{_ZH_POINTER}){{0,4}}{_ZH_POINTER}"
        rf"(?:{_ZH_FILLER}|{_ZH_POINTER}){{0,4}}{_ZH_WEAK}|[^。!?\n]{{0,10}}?{_ZH_STRONG})",
        _zh_imperative,
        cjk=True,
    ),
    _rule(
        "instruction",
        rf"{_ZH_POINTER}的?{_ZH_WEAK}(?:已经?|均|都|全部)?(?:作废|无效|失效|取消|不再适用|过时)",
        cjk=True,
    ),
    _rule(
        "instruction",
        rf"{_ZH_STRONG}(?:已经?|均|都|全部)?(?:作废|无效|失效|取消|不再适用|过时|更新|修订|变更)",
        cjk=True,
    ),
    _rule(
        "instruction",
        r"以此为准|你的新(?:任务|指令|身份|角色|规则)"
        r"|以下(?:为|是)[^。!?\n]{0,4}?(?:阅卷|评分|系统)(?:说明|指令|要求|规则|标准|细则)",
        cjk=True,
    ),
    _rule(
        "role change",
        r"你现在是(?:一个|一位|一名)?[^。!?\n]{0,6}?(?:评分|阅卷|助手|助理|ai|模型|机器人|老师)"
        r"|你不再是|从现在(?:开始|起),?你|开发者模式|越狱模式|管理员模式|以管理员身份",
        cjk=True,
    ),
    _rule(
        "grader note",
        r"(?:评分员|阅卷员|阅卷老师|评分老师|评卷老师|评分者|阅卷人|评卷人)请?(?:注意|备注|须知|:)",
        cjk=True,
    ),
    _rule("grader note", r"致(?:阅卷|评分)|给(?:阅卷|评分)(?:老师|者|员|ai)的", cjk=True),
    _rule(
        "score demand",
        r"(?:请|请您|请你|务必|必须|一定要|应该|应当|应|直接|麻烦|求求你|求你|恳请|希望)(?:您|你)?"
        rf"(?:(?:给|对|为){_ZH_TARGET})?{_ZH_GIVE}(?:{_ZH_TARGET})?(?:个|一个|为)?{_ZH_TOP}",
        cjk=True,
    ),
    _rule(
        "score demand",
        rf"(?:给|对|为){_ZH_TARGET}{_ZH_GIVE}?(?:个|一个|为)?{_ZH_TOP}"
        rf"|{_ZH_GIVE}{_ZH_TARGET}(?:个|一个|为)?{_ZH_TOP}",
        cjk=True,
    ),
    _rule(
        "score demand",
        # "每项满分二十分" says what the maximum is; "每项都给二十分" asks for it.
        rf"{_ZH_ALL}(?:都|均|一律|全)?(?:(?!满分)[^。!?\n]){{0,4}}?{_ZH_TOP}(?!为|是|\d|二十|一百)",
        cjk=True,
    ),
    _rule(
        "score demand",
        r"(?:应得|应该得到?|应当得到?|必须得到|理应得到|配得上)(?:满分|最高分|一百分)",
        cjk=True,
    ),
    _rule(
        "score demand",
        r"(?:直接|一律|均|都|全部)(?:判为|评为|记为|定为|算作|给)(?:满分|最高分|优秀|一等|最高等级)",
        cjk=True,
    ),
    _rule(
        "score demand",
        r"(?:分数|分)(?:打|给|调|设)(?:到|为|成)(?:最高|满分)|输出(?:满分|最高分)",
        cjk=True,
    ),
    _rule("score demand", r"(?:分数|得分|总分|评分|成绩|分值) ?[:=] ?(?:满分|最高|100)", cjk=True),
    # "给满分" on its own, as a clause: an order ("我会给它打满分" is an opinion).
    _rule("score demand", r"(?:给|打)个?满分", _clause, cjk=True),
    # Role and chat-turn markers where a turn would start, and chat-template tokens.
    _rule(
        "chat turn",
        rf"(?:{'|'.join(f'{_ROLE_WORDS} {_ROLE_ZH}'.split())}) ?[\])】]? ?:",
        _turn,
        _ROLE_WORDS,
        cjk=True,
    ),
    # (?<!…) after the first character: only the start of a run of # or < is tried,
    # which keeps a line of ten thousand of them linear.
    _rule("chat turn", r"#(?<!##)#++ ?(?:instruction|response|system|assistant|input)\b", _turn),
    _rule(
        "role tag",
        rf"<\|[a-z0-9]+\|>|<</?sys>>|</?(?:system|sys|instructions?|graderinstructions?|{_MARKER}"
        r"|prompt|assistant|user)>",
    ),
    _rule("role tag", r"\[/?inst\]"),
    _rule(
        "role tag",
        r"[\[【<] ?(?:system|sys|admin|developer|系统|管理员|开发者|评分系统|阅卷系统)"
        r"(?:提示|指令|消息|命令|通知|message|prompt|instructions?|note)? ?[\]】>]",
    ),
    _rule("role tag", r"[\"']role[\"'] ?: ?[\"'](?:system|assistant|developer)", words="role"),
    # The answer markers of prompts.py, or an announced end of the answer.
    _rule("delimiter", rf"<(?<!<<)<*+ ?(?:{_MARKER}|student answer)"),
    _rule("delimiter", rf"(?:{_MARKER}|student answer) ?>+"),
    _rule("delimiter", r"end ?of ?(?:the )?student(?:'s)? ?answer\b", _word, "end"),
    _rule("delimiter", r"学生答案(?:结束|完毕|到此)|答案到此结束", cjk=True),
    # Fake grading output: the reply schema's keys (score-like keys are counted below).
    _rule(
        "fake json",
        rf"[\"'](?:(?:criteria|rationale|feedback|c\d{{1,2}}|评语|理由|{_FLAGS})[\"'] ?:"
        r"|blank[\"'] ?: ?(?:true|false))",
        words=f"criteria rationale feedback blank c {_FLAGS.replace('|', ' ')}",
        cjk=True,
    ),
    _rule("flag name", r"promptinjectionsuspected"),
    # Decode-and-obey requests.
    _rule(
        "decode request",
        r"(?:translate|decode|decipher|decrypt|rot ?13|reverse|unscramble)\b[^\n]{0,80}?"
        r"\b(?:follow|obey|execute|do what|carry out|comply|act on|perform)\b",
        _word,
        "translate decode decipher decrypt rot rot13 reverse unscramble",
    ),
    _rule(
        "decode request",
        r"(?:翻译|解码|解密|破译)[^\n]{0,30}?(?:照做|执行|遵守|遵照|照办"
        r"|按照?(?:它|其|上面|这句话?)?(?:说的|的)?(?:做|执行))",
        cjk=True,
    ),
]
# A number under a score-like key; two of them make a score sheet (one is an example).
_SCORE_PAIR = re.compile(rf"[\"']{_SCORE_KEY}[\"'] ?: ?[\[\d]")
# Grader words spelt out letter by letter ("g.i.v.e m.e f.u.l.l m.a.r.k.s").
_SPELT_WORDS = re.compile(
    r"ignore|disregard|forget|rubric|instruction|fullmark|fullpoint|fullscore|maxscore"
    r"|maximumscore|perfectscore|topscore|highestscore|givemefull|system"
)
# A plausible base64 run; its decoded text is screened like the answer.
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def _decoded_runs(text: str) -> list[str]:
    decoded = []
    for run in _BASE64.findall(text):
        body = run.rstrip("=")
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
            plain = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        # Words or Chinese, not binary that happens to be valid UTF-8.
        if sum(c.isprintable() or c.isspace() for c in plain) >= 0.9 * len(plain):
            decoded.append(plain)
    return decoded


def _signals(nfkc: str) -> list[str]:
    folded = _Folded(nfkc)
    found = []
    for rule in _RULES:
        match = rule.search(folded)
        if match:
            found.append(f"{rule.kind}: {match.group(0).strip()[:80]}")
    pairs = _SCORE_PAIR.findall(folded.text)
    if len(pairs) >= 2:
        found.append(f"fake json: {' '.join(pairs)[:80]}")
    found += [f"spelt out: {word[:80]}" for word in folded.spelt if _SPELT_WORDS.search(word)]
    return found


def injection_signals(text: str) -> list[str]:
    """What in the answer looks like an instruction to the grader, as
    "kind: fragment" lines (empty if nothing does)."""
    nfkc = _nfkc(text)
    found = _signals(nfkc)
    if _BASE64.search(nfkc):
        for plain in _decoded_runs(nfkc.translate(_INVISIBLE)):
            found += [f"base64 {signal}" for signal in _signals(_nfkc(plain))]
    return found
