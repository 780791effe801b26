"""System checks that refuse an incomplete production configuration."""

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register


@register(Tags.security, deploy=True)
def production_settings(app_configs: object, **kwargs: object) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if settings.SECRET_KEY.startswith("insecure-"):
        errors.append(Error("SECRET_KEY is not set.", id="sparklin.E001"))
    if not settings.DATABASE_URL:
        errors.append(
            Error("DATABASE_URL is not set: production runs on PostgreSQL.", id="sparklin.E002")
        )
    if not settings.REDIS_URL:
        errors.append(
            Error(
                "REDIS_URL is not set: production keeps its cache, rate limits and the gateway "
                "registry in Redis.",
                id="sparklin.E003",
            )
        )
    if not settings.BROKER_IS_AMQP or settings.CELERY_TASK_ALWAYS_EAGER:
        errors.append(
            Error(
                "CELERY_BROKER_URL is not an AMQP URL: production publishes its tasks to RabbitMQ "
                "(durable queues, persistent messages, publisher confirms), so that an event the "
                "gateway answered for is on disk.",
                hint="CELERY_BROKER_URL=amqp://user:password@rabbitmq:5672/sparklin",
                id="sparklin.E005",
            )
        )
    if settings.SMS_BACKEND == "twilio" and not (
        settings.TWILIO_ACCOUNT_SID
        and settings.TWILIO_AUTH_TOKEN
        and (settings.TWILIO_FROM_NUMBER or settings.TWILIO_MESSAGING_SERVICE_SID)
    ):
        errors.append(
            Error(
                "SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
                "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID.",
                id="sparklin.E004",
            )
        )
    if settings.SMS_BACKEND in ("console", "memory"):
        errors.append(
            Error(
                f"SMS_BACKEND={settings.SMS_BACKEND} does not send SMS: login codes would only "
                "be written to the logs (console) or kept in memory.",
                hint="Set SMS_BACKEND=twilio and the TWILIO_* variables in production.",
                id="sparklin.E006",
            )
        )
    return errors
