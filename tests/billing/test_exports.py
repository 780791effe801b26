import csv
import io

import pytest
from django.core.management import CommandError, call_command

from billing.exports import SESSIONS_HEADER
from tests import builders
from tests.communities.portal_data import local, make_session

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope

HEADER = (
    "charger,connector,transaction_id,user,card,started_at,stopped_at,energy_kwh,price_per_kwh,"
    "cost,free"
)


@pytest.fixture
def sessions(community, charger, individual, outsider):
    connector = builders.make_connector(charger, 2)
    card = builders.make_card(community, holder=individual, uid="04A23B11")
    # Month boundaries in the community's time zone (Europe/Paris, UTC+1 in winter).
    first = make_session(
        charger,
        connector,
        individual,
        card,
        energy_wh="12345.6",
        started_at=local(community, 2025, 1, 1, 0, 30),
        transaction_id="42",
    )
    make_session(
        charger,
        connector,
        individual,
        card,
        energy_wh="1000",
        started_at=local(community, 2024, 12, 31, 23, 59),
    )
    make_session(
        charger,
        connector,
        individual,
        card,
        energy_wh="1000",
        started_at=local(community, 2025, 2, 1, 0, 0),
    )
    other = builders.community_of(outsider)
    make_session(
        builders.make_charger(other), energy_wh="5", started_at=local(community, 2025, 1, 10)
    )
    return first


def test_header_is_exact():
    assert ",".join(SESSIONS_HEADER) == HEADER


def test_portal_download(manager_client, sessions, individual):
    response = manager_client.get("/c/tilleuls/exports/sessions.csv", {"month": "2025-01"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "sessions-tilleuls-2025-01.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert ",".join(rows[0]) == HEADER
    assert len(rows) == 2  # one session in January, not the neighbours nor the other community
    row = dict(zip(rows[0], rows[1], strict=True))
    assert (
        row["charger"] == "CP-TEST-01" and row["connector"] == "2" and row["transaction_id"] == "42"
    )
    assert row["user"] == individual.get_full_name() and row["card"] == "04A23B11"
    assert row["started_at"] == "2025-01-01T00:30:00+01:00"
    assert row["stopped_at"] == "2025-01-01T02:30:00+01:00"
    assert (
        row["energy_kwh"] == "12.346" and row["price_per_kwh"] == "0.2516" and row["cost"] == "3.11"
    )
    assert row["free"] == "false"


def test_free_session_is_marked_free_at_no_cost(manager_client, sessions):
    sessions.free, sessions.price_per_kwh, sessions.cost = True, 0, 0
    sessions.save()
    response = manager_client.get("/c/tilleuls/exports/sessions.csv", {"month": "2025-01"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert (row["free"], row["price_per_kwh"], row["cost"]) == ("true", "0.0000", "0.00")


def test_bad_month_in_portal(manager_client, sessions):
    assert (
        manager_client.get("/c/tilleuls/exports/sessions.csv", {"month": "2025-1"}).status_code
        == 400
    )


def test_command_matches_portal(manager_client, sessions, tmp_path):
    out = io.StringIO()
    call_command("export_sessions", "--community", "tilleuls", "--month", "2025-01", stdout=out)
    response = manager_client.get("/c/tilleuls/exports/sessions.csv", {"month": "2025-01"})
    portal = b"".join(response.streaming_content).decode()
    assert out.getvalue() == portal
    target = tmp_path / "x.csv"
    call_command(
        "export_sessions",
        "--community",
        "tilleuls",
        "--month",
        "2025-01",
        "--output",
        str(target),
        stderr=io.StringIO(),
    )
    assert target.read_text() == portal


@pytest.mark.parametrize("month", ["2025-13", "25-01", "January"])
def test_command_invalid_month(month, community):
    with pytest.raises(CommandError, match="Invalid month"):
        call_command("export_sessions", "--community", "tilleuls", "--month", month)


def test_command_unknown_community(db):
    with pytest.raises(CommandError, match="Unknown community 'nope'"):
        call_command("export_sessions", "--community", "nope", "--month", "2025-01")


def test_export_page_renders_form(manager_client):
    assert b'name="month"' in manager_client.get("/c/tilleuls/exports/").content


def test_export_hides_name_and_card_of_a_member_who_left(manager_client, sessions, individual):
    from communities.models import Membership

    Membership.objects.filter(user=individual).update(state=Membership.State.LEFT)
    response = manager_client.get(
        "/c/tilleuls/exports/sessions.csv", {"month": "2025-01"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["user"], r["card"]) for r in rows] == [("Former member", "")]
    assert rows[0]["energy_kwh"] == "12.346"  # the session itself stays in the history


def test_dashboard_says_why_expense_notes_are_not_sent(manager_client, community):
    community.expense_email = ""
    community.save()
    page = manager_client.get("/c/tilleuls/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No expense-note recipient is set: notes are created but not e-mailed." in page
    community.expense_email = "finance@example.com"
    community.save()
    page = manager_client.get("/c/tilleuls/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No expense-note recipient is set" not in page


def test_a_holder_without_a_name_is_shown_by_phone(manager_client, sessions, individual):
    """The user column falls back on the E.164 phone number (read as stored, not parsed), made
    inert like any text in that column (it starts with "+")."""
    individual.first_name = individual.last_name = ""
    individual.save()
    response = manager_client.get("/c/tilleuls/exports/sessions.csv", {"month": "2025-01"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][3] == "'" + str(individual.phone) and str(individual.phone).startswith("+33")
