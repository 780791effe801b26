"""SMS-code login, end to end through the test client with the memory SMS backend."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from accounts import sms
from accounts.models import LoginCode
from communities.models import Membership, Role
from tests import builders

LOGIN = "/accounts/login/"
CODE = "/accounts/login/code/"
RESEND = "/accounts/login/resend/"


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "memory"
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()


@pytest.fixture
def person(db):
    return builders.make_user(phone="+33612345678", first_name="Alice")


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    """POST and run the on-commit callbacks (the queued SMS tasks) like a real commit would."""

    def _post(url, data=None, **extra):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data or {}, **extra)

    return _post


def code_from(outbox):
    return re.search(r"\b(\d{6})\b", outbox[-1].body).group(1)


def test_login_page_renders(client, db):
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert b'name="phone"' in response.content


def test_code_delivered_and_login(client, post, person, outbox):
    response = post(LOGIN, {"phone": "06 12 34 56 78"})
    assert response.status_code == 302 and response["Location"] == CODE
    assert len(outbox) == 1 and outbox[0].to == "+33612345678"
    code = code_from(outbox)
    stored = LoginCode.objects.get()
    assert code not in stored.code_hash and len(stored.code_hash) == 64  # only a hash is stored
    response = post(CODE, {"code": code})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.session["_auth_user_id"] == str(person.pk)
    person.refresh_from_db()
    assert person.phone_confirmed_at is not None
    assert response.cookies["django_language"].value == "fr"


def test_first_login_activates_invitations(post, person, outbox, community):
    m = builders.make_member(
        community, Role.INDIVIDUAL, user=person, state=Membership.State.INVITED
    )
    post(LOGIN, {"phone": "+33612345678"})
    post(CODE, {"code": code_from(outbox)})
    m.refresh_from_db()
    assert m.state == Membership.State.ACTIVE


def test_code_is_single_use(client, post, person, outbox):
    post(LOGIN, {"phone": "+33612345678"})
    code = code_from(outbox)
    post(CODE, {"code": code})
    client.logout()
    session = client.session
    session["login_phone"] = "+33612345678"
    session.save()
    response = post(CODE, {"code": code})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    # Said as it is, not "expired": the person knows to ask for a new code.
    assert "already used" in response.content.decode()


def test_wrong_code(client, post, person, outbox):
    post(LOGIN, {"phone": "+33612345678"})
    good = code_from(outbox)
    wrong = "000000" if good != "000000" else "111111"
    response = post(CODE, {"code": wrong})
    assert response.status_code == 200
    assert (
        "Wrong code" in response.content.decode() or "Code incorrect" in response.content.decode()
    )
    assert "_auth_user_id" not in client.session


def test_malformed_code(post, person, outbox):
    post(LOGIN, {"phone": "+33612345678"})
    response = post(CODE, {"code": "12ab"})
    assert response.status_code == 200
    assert response.context["form"].errors["code"]


def test_expired_code(client, post, person, outbox, settings):
    post(LOGIN, {"phone": "+33612345678"})
    code = code_from(outbox)
    with time_machine.travel(
        timezone.now() + timedelta(seconds=settings.LOGIN_CODE_TTL_SECONDS + 1)
    ):
        response = post(CODE, {"code": code})
    assert response.status_code == 200
    assert "expired" in str(response.context["form"].errors["code"])
    assert "_auth_user_id" not in client.session


def test_five_wrong_attempts_then_refused_even_with_right_code(
    client, post, person, outbox, settings
):
    post(LOGIN, {"phone": "+33612345678"})
    good = code_from(outbox)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(settings.LOGIN_CODE_MAX_ATTEMPTS):
        post(CODE, {"code": wrong})
    response = post(CODE, {"code": good})
    assert "Too many wrong attempts" in str(response.context["form"].errors["code"])
    assert "_auth_user_id" not in client.session
    assert LoginCode.objects.get().attempts == settings.LOGIN_CODE_MAX_ATTEMPTS


def test_resend_throttled_then_allowed(post, person, outbox):
    post(LOGIN, {"phone": "+33612345678"})
    response = post(RESEND, follow=True)
    assert len(outbox) == 1
    assert "wait a minute" in response.content.decode()
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        post(RESEND)
    assert len(outbox) == 2
    # The newest code is the one that works.
    assert LoginCode.objects.count() == 2


def test_per_phone_limit(post, person, outbox):
    start = timezone.now()
    for i in range(8):
        with time_machine.travel(start + timedelta(seconds=61 * i)):
            post(LOGIN, {"phone": "+33612345678"})
    assert len(outbox) == 5


def test_per_ip_limit(post, outbox, db):
    numbers = [f"+3361100{n:04d}" for n in range(25)]
    for number in numbers:
        builders.make_user(phone=number)
    for number in numbers:
        post(LOGIN, {"phone": number}, REMOTE_ADDR="203.0.113.9")
    assert len(outbox) == 20
    # Another address is not affected.
    post(LOGIN, {"phone": numbers[-1]}, REMOTE_ADDR="198.51.100.1")
    assert len(outbox) == 21


def test_same_answer_for_unknown_number(client, post, person, outbox):
    known = post(LOGIN, {"phone": "+33612345678"}, follow=True)
    client.cookies.clear()
    unknown = post(LOGIN, {"phone": "+33698765432"}, follow=True)
    assert len(outbox) == 1  # no SMS to the unknown number
    assert known.redirect_chain == [(CODE, 302)] == unknown.redirect_chain

    def normalised(response):
        text = response.content.decode().replace("+33698765432", "N").replace("+33612345678", "N")
        return re.sub(r'value="[A-Za-z0-9]{64}"|"X-CSRFToken": "[A-Za-z0-9]{64}"', "", text)

    assert normalised(known) == normalised(unknown)
    # And its code attempts behave the same (wrong code, attempts counted).
    response = post(CODE, {"code": "123456"})
    assert "Wrong code" in str(response.context["form"].errors["code"])


def test_invalid_phone_number(post, outbox, db):
    response = post(LOGIN, {"phone": "12"})
    assert response.status_code == 200
    assert "valid phone number" in str(response.context["form"].errors["phone"])
    assert not outbox


@pytest.mark.parametrize(
    "next_url,expected",
    [
        ("/c/tilleuls/sessions/", "/c/tilleuls/sessions/"),
        ("https://evil.example/steal", "/"),
        ("//evil.example/", "/"),
    ],
)
def test_next_redirect_is_safe(post, person, outbox, next_url, expected):
    post(f"{LOGIN}?next={next_url}", {"phone": "+33612345678"})
    response = post(CODE, {"code": code_from(outbox)})
    assert response["Location"] == expected


def test_code_page_without_phone_goes_back(client, db):
    assert client.get(CODE)["Location"] == LOGIN


def test_logout_is_post_only(client, person):
    client.force_login(person)
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_language_switch_is_remembered(client, person):
    client.force_login(person)
    response = client.post("/accounts/language/", {"language": "en", "next": "/"})
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "en"
    person.refresh_from_db()
    assert person.language == "en"


def test_sms_in_users_language(post, outbox, db):
    builders.make_user(phone="+33612340000", language="en")
    post(LOGIN, {"phone": "+33612340000"})
    assert outbox[-1].body.startswith("Your Sparklin code")
