""" "Report a problem": a ticket kept for staff and e-mailed to the support address with the
page and community it came from; a screenshot checked by its content, size-limited, stored
re-encoded where the web server does not publish it and served to staff only; limited per
person; the footer shows the support contacts from the settings."""

import io

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import User
from support.models import Ticket


@pytest.fixture(autouse=True)
def _setup(settings, tmp_path):
    settings.LANGUAGE_CODE = "en"
    settings.MEDIA_ROOT = tmp_path
    settings.SUPPORT_EMAIL = "help@example.org"
    settings.SUPPORT_PHONE = "01 02 03 04 05"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def image_file(kind="PNG", size=(40, 30), name="screen.png", exif=None):
    out = io.BytesIO()
    image = Image.new("RGB", size, (10, 120, 90))
    if exif is not None:
        image.save(out, kind, exif=exif)
    else:
        image.save(out, kind)
    return SimpleUploadedFile(name, out.getvalue(), content_type="image/png")


def report(client, **data):
    fields = {"description": "The Start button does nothing on my phone.", "phone": ""}
    fields.update(data)
    return client.post("/support/", fields)


def test_the_page_is_prefilled(manager_client, manager):
    html = manager_client.get("/support/?from=/c/tilleuls/outlets/").content.decode()
    assert f'value="{manager.phone.as_national}"' in html and 'value="/c/tilleuls/outlets/"' in html
    assert 'enctype="multipart/form-data"' in html


def test_a_report_becomes_a_ticket_and_an_email(
    manager_client, manager, community, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = report(
            manager_client,
            page="/c/tilleuls/outlets/",
            phone="+33612345678",
            screenshot=image_file(),
        )
    assert answer.status_code == 302 and answer.url == "/c/tilleuls/outlets/"
    ticket = Ticket.objects.get()
    assert ticket.reporter == manager and ticket.status == Ticket.Status.OPEN
    assert ticket.source_community == community and ticket.community_name == community.name
    assert ticket.page == "/c/tilleuls/outlets/" and str(ticket.phone) == "+33612345678"
    assert ticket.screenshot.name.startswith("support/") and ticket.emailed_at is not None
    (message,) = mail.outbox
    assert message.to == ["help@example.org"]
    assert f"#{ticket.pk}" in message.subject and community.name in message.subject
    assert "/c/tilleuls/outlets/" in message.body and "+33612345678" in message.body
    assert "The Start button does nothing" in message.body
    (name, content, kind) = message.attachments[0]
    assert kind == "image/png" and Image.open(io.BytesIO(content)).size == (40, 30)


def test_a_file_that_is_not_an_image_is_refused(manager_client):
    fake = SimpleUploadedFile("screen.png", b"<script>alert(1)</script>", content_type="image/png")
    answer = report(manager_client, screenshot=fake)
    assert answer.status_code == 400 and "This file is not an image" in answer.content.decode()
    assert not Ticket.objects.exists() and not mail.outbox


def test_a_too_large_screenshot_is_refused(manager_client, settings):
    settings.SUPPORT_SCREENSHOT_MAX_MB = 0
    answer = report(manager_client, screenshot=image_file())
    assert "too large" in answer.content.decode() and not Ticket.objects.exists()


def test_a_photo_is_stored_without_its_metadata(manager_client):
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    report(manager_client, screenshot=image_file("JPEG", name="photo.jpg", exif=exif.tobytes()))
    stored = Ticket.objects.get().screenshot
    assert stored.name.endswith(".jpg")
    with stored.open("rb") as f:
        assert "PhoneMaker" not in str(Image.open(f).getexif().values())


def test_the_community_is_named_only_when_the_person_has_access(manager_client, outsider):
    report(manager_client, page="/c/elsewhere/outlets/")
    report(manager_client, page="https://evil.example/c/tilleuls/")
    answer = report(manager_client, page="/\\evil.example/")
    assert answer.url == "/"  # never redirected off the site
    first, second, third = Ticket.objects.order_by("pk")
    assert first.source_community is None and first.community_name == ""
    assert second.page == "" and second.source_community is None and third.page == ""


def test_reports_are_limited_per_person(manager_client, settings):
    settings.SUPPORT_REPORTS_PER_HOUR = 2
    assert report(manager_client).status_code == 302
    assert report(manager_client).status_code == 302
    answer = report(manager_client)
    assert answer.status_code == 400 and "01 02 03 04 05" in answer.content.decode()
    assert Ticket.objects.count() == 2


def test_the_description_is_checked_on_the_server(manager_client):
    answer = report(manager_client, description="bug")
    assert "10 characters at least" in answer.content.decode()
    answer = report(manager_client, description="")
    assert "Describe the problem." in answer.content.decode()
    assert not Ticket.objects.exists()


def test_anonymous_people_are_sent_to_the_login(client):
    assert client.get("/support/").status_code == 302


def test_the_screenshot_is_served_to_staff_only(client, manager_client, manager):
    report(manager_client, screenshot=image_file())
    ticket = Ticket.objects.get()
    url = f"/support/tickets/{ticket.pk}/screenshot/"
    assert manager_client.get(url).status_code == 302  # to the admin login: not staff
    staff = User.objects.create_user(phone="+33699999999", is_staff=True, is_superuser=True)
    client.force_login(staff)
    answer = client.get(url)
    assert answer.status_code == 200 and answer["Content-Type"] == "image/png"
    assert answer["X-Content-Type-Options"] == "nosniff"
    admin_page = client.get(f"/admin/support/ticket/{ticket.pk}/change/").content.decode()
    assert url in admin_page
    client.post("/admin/support/ticket/", {"action": "close", "_selected_action": [ticket.pk]})
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.CLOSED and ticket.closed_at is not None


def test_a_failed_email_is_kept_on_the_ticket(
    manager_client, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.support.test_report.BrokenBackend"
    with django_capture_on_commit_callbacks(execute=True):
        report(manager_client)
    ticket = Ticket.objects.get()
    assert ticket.emailed_at is None and "SMTP down" in ticket.email_error


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise OSError("SMTP down")


def test_footer_and_account_menu(manager_client):
    html = manager_client.get("/c/tilleuls/").content.decode()
    assert 'href="mailto:help@example.org"' in html and "01 02 03 04 05" in html
    assert html.count('href="/support/?from=/c/tilleuls/"') == 2  # account menu and footer
