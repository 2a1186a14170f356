"""The compiled Chinese catalogue matches its source: no string left untranslated."""

from __future__ import annotations

import gettext
import json
import re
from pathlib import Path

LOCALE = Path(__file__).resolve().parent.parent / "locale" / "zh_Hans" / "LC_MESSAGES"


def _entries(po: str) -> dict[str, str]:
    pairs = {}
    pattern = r'^msgid ((?:".*"\n)+)msgstr ((?:".*"\n?)+)'
    for msgid, msgstr in re.findall(pattern, po, re.MULTILINE):
        key = "".join(json.loads(line) for line in msgid.splitlines())
        if key:
            pairs[key] = "".join(json.loads(line) for line in msgstr.splitlines() if line)
    return pairs


def test_every_string_is_translated_and_compiled():
    po = (LOCALE / "django.po").read_text(encoding="utf-8")
    assert "#, fuzzy" not in po
    entries = _entries(po)
    assert len(entries) > 100
    untranslated = [k for k, v in entries.items() if not v]
    assert not untranslated, untranslated
    with (LOCALE / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    stale = [k for k, v in entries.items() if compiled.gettext(k) != v]
    assert not stale, f"run compilemessages: {stale[:5]}"
