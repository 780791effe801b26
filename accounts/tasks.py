"""Background work of the accounts app: SMS delivery (retried: providers have bad minutes)."""

from celery import shared_task

from . import sms


@shared_task(bind=True, acks_late=True, max_retries=3, default_retry_delay=20)
def send_sms_task(self, to: str, body: str) -> None:
    """Deliver one SMS. Queued after commit by the services that need it (login codes,
    welcome messages); retried a few times on provider errors."""
    try:
        sms.send_sms(to, body)
    except Exception as exc:  # provider or network error: try again later
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc)


@shared_task(acks_late=True, autoretry_for=(OSError,), max_retries=3, default_retry_delay=30)
def send_email_confirmation_task(user_id: int) -> None:
    """E-mail the link that confirms a person's address (sign-up, profile change)."""
    from .models import User
    from .signup import send_email_confirmation

    user = User.objects.filter(pk=user_id, is_active=True).exclude(email="").first()
    if user is not None and user.email_confirmed_at is None:
        send_email_confirmation(user)


@shared_task
def prune_login_data() -> dict[str, int]:
    """Hourly (beat): delete stale login codes and idle rate-limit buckets."""
    from .services import prune_login_data as prune

    return prune()
