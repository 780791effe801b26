"""French ships with English: every message is translated, and the committed .mo matches."""

import ast
import gettext
import re
from pathlib import Path

PO = Path(__file__).resolve().parent.parent / "locale" / "fr" / "LC_MESSAGES" / "django.po"


def entries():
    for block in PO.read_text().split("\n\n"):
        if "msgid" not in block or '\nmsgid ""\nmsgstr ""\n"Project-Id' in "\n" + block:
            continue  # the header
        if block.lstrip().startswith("#~"):  # obsolete entries
            continue
        yield block


def test_no_fuzzy_or_untranslated_message():
    missing = []
    for block in entries():
        msgstrs = re.findall(r'^msgstr(?:\[\d\])? ((?:".*"\n?)+)', block + "\n", re.M)
        if "#, fuzzy" in block or any(m.strip() == '""' for m in msgstrs):
            missing.append(block)
    assert not missing, "untranslated or fuzzy:\n\n" + "\n\n".join(missing[:10])


def _unquote(text: str) -> str:
    """The value of a .po string: its quoted lines, joined, C escapes read."""
    return "".join(ast.literal_eval(f'"{part}"') for part in re.findall(r'"(.*)"', text))


def test_compiled_catalog_is_up_to_date():
    catalog = gettext.GNUTranslations(PO.with_suffix(".mo").open("rb"))
    for block in entries():
        if "msgid_plural" in block or "msgctxt" in block:
            continue
        msgid_part, msgstr_part = block.split("\nmsgstr ", 1)
        msgid = _unquote(msgid_part.split("msgid ", 1)[1])
        assert catalog.gettext(msgid) == _unquote(msgstr_part), f"stale .mo for {msgid!r}"
