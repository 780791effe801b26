"""Login data does not grow forever: stale codes (unknown numbers' included) and idle rate-limit
buckets are pruned by a beat task; bucket keys are salted with the secret key; production
settings refuse an SMS backend that sends nothing."""

from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.utils import timezone

from accounts import services
from accounts.models import LoginCode, TokenBucket, salted_digest
from accounts.tasks import prune_login_data
from sparklin.celery import app
from tests import builders

pytestmark = pytest.mark.django_db


def code(phone, expires_in, user=None):
    now = timezone.now()
    return LoginCode.objects.create(
        phone=phone, user=user, code_hash="x", created_at=now, expires_at=now + expires_in
    )


def test_stale_codes_go_with_their_numbers_fresh_ones_stay():
    known = builders.make_user(phone="+33611111111")
    code("+33611111111", -timedelta(hours=2), user=known)
    code("+33699999999", -timedelta(hours=2))  # asked for a number nobody has
    fresh = code("+33688888888", timedelta(minutes=5))
    recently_expired = code("+33677777777", -timedelta(minutes=10))
    result = prune_login_data.delay().get()
    assert result["login_codes"] == 2
    assert set(LoginCode.objects.values_list("pk", flat=True)) == {fresh.pk, recently_expired.pk}
    assert not LoginCode.objects.filter(phone="+33699999999").exists()


def test_idle_buckets_are_pruned_as_they_are_full_again():
    now = timezone.now()
    TokenBucket.objects.create(value="old", tokens=0.0, updated=now - timedelta(days=2))
    TokenBucket.objects.create(value="busy", tokens=0.0, updated=now - timedelta(minutes=5))
    assert services.prune_login_data(now)["token_buckets"] == 1
    assert list(TokenBucket.objects.values_list("value", flat=True)) == ["busy"]
    # A pruned bucket behaves as a full one.
    assert TokenBucket.authorize("old", capacity=2, refill_time_secs=3600)


def test_pruning_is_on_the_beat_schedule():
    schedule = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "accounts.tasks.prune_login_data" in schedule


def test_bucket_keys_name_no_number_and_depend_on_the_secret_key(settings, rf):
    phone = "+33612345678"
    services.request_login_code(phone=phone, ip="192.0.2.7")
    values = list(TokenBucket.objects.values_list("value", flat=True))
    assert values and not any("612345678" in v or "192.0.2.7" in v for v in values)
    assert f"login-phone:{salted_digest(phone)}" in values
    first = salted_digest(phone)
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789"
    assert salted_digest(phone) != first


def test_deploy_check_refuses_sms_that_are_not_sent(settings):
    for backend in ("console", "memory"):
        settings.SMS_BACKEND = backend
        ids = {e.id for e in run_checks(include_deployment_checks=True)}
        assert "sparklin.E006" in ids
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC1", "token"
    settings.TWILIO_FROM_NUMBER = "+33100000000"
    ids = {e.id for e in run_checks(include_deployment_checks=True)}
    assert "sparklin.E006" not in ids and "sparklin.E004" not in ids
