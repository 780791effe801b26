"""Issue 10's smaller bullets that had no test of their own: the favicon, the dashboard's
expense-note alert pointing to the configuration (not Tools), and the demo running as the
product (DEBUG off, quiet logs, the SMS code in a box)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from communities.models import Role
from tests import builders

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def test_every_page_links_an_svg_favicon(manager_client):
    page = manager_client.get("/c/tilleuls/").content.decode()
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link and link.group(1).endswith("favicon.svg")
    found = finders.find("favicon.svg")
    assert found and "<svg" in Path(found).read_text()
    assert (
        'rel="icon"' in Client().get(reverse("accounts:login")).content.decode()
    )  # before login too


def test_dashboard_alert_without_recipient_links_to_the_configuration(manager_client, community):
    community.expense_email = ""
    community.save()
    page = manager_client.get("/c/tilleuls/").content.decode()
    alert = re.search(r'<p class="callout" role="alert".*?</p>', page, re.S)
    assert alert, "no alert"
    assert 'href="/c/tilleuls/settings/#id_expense_email"' in alert.group(0)
    assert "/exports/" not in alert.group(0)  # not Tools, where the recipient is not set


def test_drivers_see_no_expense_note_alert(client, community):
    community.expense_email = ""
    community.save()
    driver = builders.make_member(community, Role.INDIVIDUAL).user
    client.force_login(driver)
    assert 'role="alert"' not in client.get("/c/tilleuls/").content.decode()


def _demo_environment() -> dict[str, str]:
    """The variables scripts/run-demo exports (`export NAME=${NAME:-default}`), defaults."""
    script = (ROOT / "scripts" / "run-demo").read_text()
    found = dict(re.findall(r"^export (\w+)=\$\{\w+:-([^}]*)\}", script, re.M))
    assert {"DEBUG", "LOG_LEVEL", "REQUEST_LOG_LEVEL"} <= set(found), found
    return found


def test_the_demo_runs_as_the_product_and_quietly():
    """The demo's settings, as scripts/run-demo sets them, in a fresh process: DEBUG off (the
    product's own 404/403 pages), task traces and 4xx tracebacks below the log level."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_LEVEL")}
    env.update(_demo_environment(), DJANGO_SETTINGS_MODULE="sparklin.settings")
    code = (
        "import django, logging; django.setup(); from django.conf import settings; "
        "print(settings.DEBUG, logging.getLogger().level, "
        "logging.getLogger('django.request').level, logging.getLogger('celery.app.trace')"
        ".getEffectiveLevel())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "False"
    assert int(out[1]) >= 30 and int(out[2]) >= 40 and int(out[3]) >= 30  # WARNING, ERROR


def test_the_demo_prints_the_sms_code_in_a_box(capsys, settings):
    from accounts import sms

    settings.SMS_BACKEND = "console"
    sms.send_sms("+33600000001", "Sparklin code: 123456")
    lines = capsys.readouterr().out.splitlines()
    box = [line for line in lines if line.startswith(("┏", "┃", "┗"))]
    assert len(box) == 3 and "123456" in box[1]
