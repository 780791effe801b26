"""The SMS boundary: console, memory and Twilio backends. The Twilio test lets the real
`twilio.rest.Client` build its request and records it through an HttpClient stand-in."""

import json

import pytest
from twilio.http import HttpClient
from twilio.http.response import Response

from accounts import sms
from accounts.tasks import send_sms_task


class RecordingHttpClient(HttpClient):
    def __init__(self):
        super().__init__(logger=None, is_async=False)
        self.requests = []

    def request(
        self,
        method,
        uri,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ):
        self.requests.append(
            {"method": method, "uri": uri, "data": data, "headers": headers, "auth": auth}
        )
        body = {
            "sid": "SM0123456789abcdef0123456789abcdef",
            "status": "queued",
            "to": data.get("To"),
            "from": data.get("From"),
            "body": data.get("Body"),
        }
        return Response(201, json.dumps(body), headers={"Content-Type": "application/json"})


@pytest.fixture
def twilio_settings(settings):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "secret-token"
    settings.TWILIO_FROM_NUMBER = "+33700000000"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    return settings


def test_twilio_backend_builds_the_real_request(twilio_settings):
    http = RecordingHttpClient()
    sid = sms.get_backend(http_client=http).send("+33612345678", "Your code: 123456")
    assert sid == "SM0123456789abcdef0123456789abcdef"
    [req] = http.requests
    assert req["method"] == "POST"
    assert (
        req["uri"] == f"https://api.twilio.com/2010-04-01/Accounts/{'AC' + '1' * 32}/Messages.json"
    )
    assert req["data"]["To"] == "+33612345678"
    assert req["data"]["From"] == "+33700000000"
    assert req["data"]["Body"] == "Your code: 123456"
    assert req["auth"] == ("AC" + "1" * 32, "secret-token")


def test_twilio_messaging_service(twilio_settings, monkeypatch):
    twilio_settings.TWILIO_FROM_NUMBER = ""
    twilio_settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "2" * 32
    http = RecordingHttpClient()
    # The module-level hook, as used by send_sms() and the Celery task.
    monkeypatch.setattr(sms, "twilio_http_client", http)
    send_sms_task.delay("+33612345678", "hello")
    [req] = http.requests
    assert req["data"]["MessagingServiceSid"] == "MG" + "2" * 32
    assert "From" not in req["data"]


def test_twilio_error_is_raised(twilio_settings):
    from twilio.base.exceptions import TwilioRestException

    class Failing(RecordingHttpClient):
        def request(self, *args, **kwargs):
            return Response(
                400, json.dumps({"code": 21211, "message": "Invalid 'To' Phone Number"})
            )

    with pytest.raises(TwilioRestException):
        sms.get_backend(http_client=Failing()).send("+33000", "x")


def test_twilio_needs_credentials(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.TWILIO_ACCOUNT_SID = ""
    with pytest.raises(ImproperlyConfigured):
        sms.get_backend("twilio")


def test_console_backend_prints(capsys, settings):
    settings.SMS_BACKEND = "console"
    sms.send_sms("+33612345678", "Your code: 654321")
    out = capsys.readouterr().out
    assert "SMS to +33612345678" in out and "Your code: 654321" in out


def test_memory_backend(settings):
    settings.SMS_BACKEND = "memory"
    sms.outbox.clear()
    sms.send_sms("+33612345678", "hi")
    assert sms.outbox == [sms.SmsMessage(to="+33612345678", body="hi")]
    sms.outbox.clear()
