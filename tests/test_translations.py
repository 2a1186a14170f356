"""The compiled Chinese catalogue matches its source: no string left untranslated."""

from __future__ import annotations

import gettext
import json
import re
from pathlib import Path

LOCALE = Path(__file__).resolve().parent.parent / "locale" / "zh_Hans" / "LC_MESSAGES"


def _entries(po: str) -> dict[tuple[str, str], str]:
    """(context, msgid) → msgstr; the context is "" for most entries."""
    pairs = {}
    pattern = r'^(?:msgctxt (".*")\n)?msgid ((?:".*"\n)+)msgstr ((?:".*"\n?)+)'
    for context, msgid, msgstr in re.findall(pattern, po, re.MULTILINE):
        key = "".join(json.loads(line) for line in msgid.splitlines())
        if key:
            ctx = json.loads(context) if context else ""
            pairs[ctx, key] = "".join(json.loads(line) for line in msgstr.splitlines() if line)
    return pairs


def _plural_entries(po: str) -> dict[str, str]:
    """msgid → msgstr[0] of plural entries (Chinese has one form)."""
    pattern = r'^msgid ((?:".*"\n)+)msgid_plural (?:".*"\n)+msgstr\[0\] ((?:".*"\n?)+)'
    return {
        "".join(json.loads(x) for x in msgid.splitlines()): "".join(
            json.loads(x) for x in msgstr.splitlines() if x
        )
        for msgid, msgstr in re.findall(pattern, po, re.MULTILINE)
    }


def test_every_string_is_translated_and_compiled():
    po = (LOCALE / "django.po").read_text(encoding="utf-8")
    assert "#, fuzzy" not in po
    entries = _entries(po)
    assert len(entries) > 100
    untranslated = [k for k, v in entries.items() if not v]
    assert not untranslated, untranslated
    with (LOCALE / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)

    def lookup(ctx: str, msgid: str) -> str:
        return compiled.pgettext(ctx, msgid) if ctx else compiled.gettext(msgid)

    stale = [k for k, v in entries.items() if lookup(*k) != v]
    assert not stale, f"run compilemessages: {stale[:5]}"
    plurals = _plural_entries(po)
    assert len(plurals) == po.count("\nmsgid_plural ")
    assert not [k for k, v in plurals.items() if not v or compiled.ngettext(k, k, 2) != v]
