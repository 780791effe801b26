"""The SMS boundary. `send_sms(to, body)` delivers through the backend named by
settings.SMS_BACKEND, like Django's e-mail backends:

- `console`: prints the message on stdout and logs it (development and the demo: the login code
  is read there);
- `memory`: appends to the module-level `outbox` list (tests, like django.core.mail.outbox);
- `twilio`: the real Twilio REST client.

Web code never calls this directly: it queues `accounts.tasks.send_sms_task` after commit."""

import logging
import sys
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


@dataclass
class SmsMessage:
    to: str
    body: str


# Messages "sent" with the memory backend; tests clear it between runs.
outbox: list[SmsMessage] = []

# Hook for tests (and exotic deployments): a `twilio.http.HttpClient` instance the Twilio client
# sends its requests through instead of its default `requests`-based client.
twilio_http_client = None


class ConsoleBackend:
    """Prints the SMS in a box that stands out among other console lines (the demo's login
    code is read there)."""

    def send(self, to: str, body: str) -> None:
        title = f" SMS to {to} "
        width = max(len(title), len(body)) + 4
        lines = [
            "",
            "┏" + title.center(width, "━") + "┓",
            "┃  " + body.ljust(width - 2) + "┃",
            "┗" + "━" * width + "┛",
            "",
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        logger.info("SMS to %s: %s", to, body)


class MemoryBackend:
    def send(self, to: str, body: str) -> None:
        outbox.append(SmsMessage(to=to, body=body))


class TwilioBackend:
    """Sends through Twilio's Messages API from TWILIO_FROM_NUMBER, or through a messaging
    service when TWILIO_MESSAGING_SERVICE_SID is set instead."""

    def __init__(
        self,
        *,
        account_sid=None,
        auth_token=None,
        from_number=None,
        messaging_service_sid=None,
        http_client=None,
    ):
        self.account_sid = account_sid or settings.TWILIO_ACCOUNT_SID
        self.auth_token = auth_token or settings.TWILIO_AUTH_TOKEN
        self.from_number = from_number if from_number is not None else settings.TWILIO_FROM_NUMBER
        self.messaging_service_sid = (
            messaging_service_sid
            if messaging_service_sid is not None
            else settings.TWILIO_MESSAGING_SERVICE_SID
        )
        self.http_client = http_client if http_client is not None else twilio_http_client
        if not (self.account_sid and self.auth_token):
            raise ImproperlyConfigured(
                "The twilio SMS backend needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            )
        if not (self.from_number or self.messaging_service_sid):
            raise ImproperlyConfigured(
                "The twilio SMS backend needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
            )

    def send(self, to: str, body: str) -> str:
        from twilio.rest import Client

        client = Client(self.account_sid, self.auth_token, http_client=self.http_client)
        sender = (
            {"from_": self.from_number}
            if self.from_number
            else {"messaging_service_sid": self.messaging_service_sid}
        )
        message = client.messages.create(to=to, body=body, **sender)
        logger.info("SMS to %s sent through Twilio (%s)", to, message.sid)
        return message.sid


BACKENDS = {"console": ConsoleBackend, "memory": MemoryBackend, "twilio": TwilioBackend}


def get_backend(name: str | None = None, **kwargs):
    name = name or settings.SMS_BACKEND
    try:
        return BACKENDS[name](**kwargs)
    except KeyError:
        raise ImproperlyConfigured(f"Unknown SMS backend {name!r}")


def send_sms(to, body: str) -> None:
    """Send `body` to the phone number `to` (E.164 string or PhoneNumber)."""
    get_backend().send(str(to), body)
