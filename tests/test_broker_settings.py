"""Which broker a configuration gets, and the deploy check that refuses a production one without
RabbitMQ. Settings are read once per process, so each case runs `manage.py` in a child."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "SECRET_KEY": "a-long-random-secret-for-the-deploy-check-0123456789",
    "DATABASE_URL": "postgres://sparklin@127.0.0.1:5432/sparklin",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SMS_BACKEND": "twilio",
    "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_FROM_NUMBER": "+33700000000",
}

SHOW = (
    "from django.conf import settings as s; "
    "print(s.CELERY_BROKER_URL, s.CELERY_TASK_ALWAYS_EAGER, "
    "s.CELERY_BROKER_TRANSPORT_OPTIONS.get('confirm_publish', False))"
)


def run_manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in (*PRODUCTION, "CELERY_BROKER_URL")}
    clean.pop("CELERY_TASK_ALWAYS_EAGER", None)
    clean.update(env, DJANGO_SETTINGS_MODULE="sparklin.settings")
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_embedded_default_has_no_broker_tasks_run_in_process():
    result = run_manage("shell", "-c", SHOW)
    assert result.stdout.splitlines()[-1].split() == ["memory://", "True", "False"], result.stderr


def test_an_amqp_broker_publishes_with_confirms():
    result = run_manage("shell", "-c", SHOW, CELERY_BROKER_URL="amqp://u:p@rabbitmq:5672/sparklin")
    assert result.stdout.splitlines()[-1].split() == [
        "amqp://u:p@rabbitmq:5672/sparklin",
        "False",
        "True",
    ], result.stderr


def test_deploy_check_refuses_production_without_rabbitmq():
    result = run_manage("check", "--deploy", **PRODUCTION)
    assert result.returncode != 0
    assert "sparklin.E005" in result.stderr


def test_deploy_check_accepts_production_with_rabbitmq():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "ERROR",
        CELERY_BROKER_URL="amqp://u:p@rabbitmq:5672/sparklin",
        **PRODUCTION,
    )
    assert "sparklin.E005" not in result.stderr
    assert result.returncode == 0, result.stderr
