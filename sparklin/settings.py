"""Sparklin settings, read from the environment.

With nothing set, Sparklin runs on the *embedded default*: SQLite and Celery tasks executed
in-process, so `make demo` works on a laptop. With `DATABASE_URL`, `REDIS_URL` and
`CELERY_BROKER_URL` it runs the production shape: PostgreSQL, Celery over RabbitMQ, the cache,
the gateway registry and command bus in Redis.
Every variable is listed in `.env.example`.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or "insecure-development-key-change-me"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "phonenumber_field",
    "template_partials",
    "sparklin",
    "accounts",
    "communities",
    "chargers",
    "rules",
    "notifications",
    "ocpp_gateway",
    "simulator",
    "forwarding",
    "billing",
    "meters",
    "power",
    "support",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "communities.middleware.CommunityScopeMiddleware",
]

ROOT_URLCONF = "sparklin.urls"
WSGI_APPLICATION = "sparklin.wsgi.application"
ASGI_APPLICATION = "sparklin.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "communities.context_processors.community",
                "support.context_processors.support",
            ],
        },
    }
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # Persistent connections are checked before reuse (CONN_HEALTH_CHECKS): a connection the
    # server closed (restart, fail-over, pg_terminate_backend) is replaced at the next request
    # or task instead of failing it. Celery's Django fixup closes unusable ones around tasks.
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    }
    # PostgreSQL's JIT compiles a query whose estimated cost passes `jit_above_cost`: at fleet
    # scale a month of sessions for the CSV export spent 0.56 s in LLVM before its first row,
    # which the index then gave in 0.3 s. Sparklin's queries are short, index-driven OLTP ones
    # that JIT does not pay off for, so its connections turn it off. DATABASE_JIT=true leaves
    # the server's setting (e.g. a pooler that refuses startup options).
    if DATABASES["default"]["ENGINE"].endswith("postgresql") and not env_bool("DATABASE_JIT"):
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # The demo's web, gateway and simulator processes share this file: WAL lets readers
            # go on while one writes, IMMEDIATE avoids lock-upgrade deadlocks between writers.
            "OPTIONS": {
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# Django's defaults, plus the fast salted hash of the charger passwords Sparklin generates
# (chargers.hashers: 120-bit secrets, never a password a person chose).
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "chargers.hashers.ChargerSecretHasher",
]
# Portal users log in with an SMS code (accounts.services); passwords exist only for staff in the admin.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
SESSION_COOKIE_AGE = 14 * 24 * 3600

# --- I18N -------------------------------------------------------------------------------------
LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", _("French")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Paris"
# English pages with European dates and the 24-hour clock (sparklin/formats/en/formats.py).
FORMAT_MODULE_PATH = ["sparklin.formats"]
USE_I18N = True
USE_TZ = True
PHONENUMBER_DEFAULT_REGION = env_str("PHONENUMBER_DEFAULT_REGION", "FR")
PHONENUMBER_DB_FORMAT = "E164"

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env_bool("STATIC_MANIFEST", not DEBUG and bool(DATABASE_URL))
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Redis, Celery ----------------------------------------------------------------------------
# Redis: cache, rate limits, the gateway registry and command bus. The broker of Celery's tasks
# (the gateway's events among them) is RabbitMQ in production — durable queues, persistent
# messages, publisher confirms, so that "published" means "on the broker's disk". Redis still
# works as a broker for development; `check --deploy` refuses it in production.
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://")
BROKER_IS_AMQP = CELERY_BROKER_URL.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")
CELERY_RESULT_BACKEND = None
# Embedded default: no broker at all, tasks run in-process (in the gateway: in its publishing
# thread, so "published" there means "committed").
CELERY_TASK_ALWAYS_EAGER = env_bool(
    "CELERY_TASK_ALWAYS_EAGER", not (REDIS_URL or env_str("CELERY_BROKER_URL"))
)
CELERY_TASK_EAGER_PROPAGATES = True
# A task is acknowledged once it ran, and a worker lost mid-task (kill -9, OOM) has its task
# delivered again: every task is idempotent.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Unacknowledged messages the broker hands each worker process ahead of time: a few keep the
# worker busy between round trips; with acks_late they are redelivered if the worker dies.
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4)
CELERY_TASK_SERIALIZER = "json"
# The worker applies the gateway's event messages waiting for it as one batch
# (chargers/batching.py): a first message waits this long for others, a batch is applied at
# once when it holds this many events.
WORKER_EVENTS_WINDOW_SECONDS = env_float("WORKER_EVENTS_WINDOW_SECONDS", 0.05)
WORKER_EVENTS_MAX_BATCH = env_int("WORKER_EVENTS_MAX_BATCH", 5000)
# Keep the worker's database connection across tasks (Celery's Django fixup would open one per
# task); sparklin/celery.py drops broken or expired ones around each task instead.
CELERY_DB_REUSE_MAX = 1000
# The queue every task goes to (and the worker reads); benchmarks use a queue of their own.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Durable queues (Celery's default queue is declared durable) and persistent messages (2).
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
# The worker reconnects to the broker forever (a broker restart is an event, not an outage),
# logging each attempt; it also waits for the broker at start-up.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 4)
CELERY_BROKER_HEARTBEAT = env_int("CELERY_BROKER_HEARTBEAT", 30)
# A publish that cannot complete raises instead of blocking: bounded retries here, the
# gateway's batcher keeps the events and tries again (GATEWAY_PUBLISH_TIMEOUT_SECONDS).
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
if BROKER_IS_AMQP:
    # Publisher confirms: every publish waits for the broker's ack, which RabbitMQ sends for a
    # persistent message on a durable queue once it is written to disk; a nack raises.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"confirm_publish": True}
else:
    # A task that waits in Redis longer than this is delivered again to another worker; keep
    # it above the longest task (expense-note batches) so acks_late never duplicates a task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
    }

# Celery beat (`celery -A sparklin beat`): chargers whose heartbeats stopped become "not
# connected" within two heartbeat intervals; the OCPP message log is kept OCPP_MESSAGE_LOG_DAYS.
OFFLINE_SWEEP_SECONDS = env_int("OFFLINE_SWEEP_SECONDS", 60)
# How often sessions are checked against the limits of use (rules.tasks.check_limits).
RULES_LIMITS_SECONDS = env_int("RULES_LIMITS_SECONDS", 60)
# How often chargers' local authorization lists are brought in line (rules.tasks.sync_local_lists).
RULES_LOCAL_LIST_SECONDS = env_int("RULES_LOCAL_LIST_SECONDS", 30)
# Notifications (notifications/): how often facts are collected and due messages sent; at most
# one message per person, kind and channel per NOTIFY_THROTTLE_MINUTES (the rest is gathered into
# the next one); facts older than NOTIFY_MAX_AGE_MINUTES when first seen are not announced; a
# charger not connected for NOTIFY_OFFLINE_MINUTES is announced (an installation may change it);
# rows are kept NOTIFY_KEEP_DAYS.
NOTIFY_SCAN_SECONDS = env_float("NOTIFY_SCAN_SECONDS", 30)
NOTIFY_THROTTLE_MINUTES = env_float("NOTIFY_THROTTLE_MINUTES", 15)
NOTIFY_MAX_AGE_MINUTES = env_float("NOTIFY_MAX_AGE_MINUTES", 60)
NOTIFY_OFFLINE_MINUTES = int(env_float("NOTIFY_OFFLINE_MINUTES", 15))
NOTIFY_KEEP_DAYS = env_float("NOTIFY_KEEP_DAYS", 30)
CELERY_BEAT_SCHEDULE = {
    "chargers-sweep-offline": {
        "task": "chargers.tasks.sweep_offline",
        "schedule": float(OFFLINE_SWEEP_SECONDS),
    },
    # The live regions' change counters, folded so that a poll reads a few rows.
    "chargers-compact-live-changes": {
        "task": "chargers.tasks.compact_live_changes",
        "schedule": 60.0,
    },
    "chargers-purge-message-log": {
        "task": "chargers.tasks.purge_message_log",
        "schedule": 6 * 3600.0,
    },
    "chargers-purge-unknown-chargers": {
        "task": "chargers.tasks.purge_unknown_chargers",
        "schedule": 3600.0,
    },
    # Login codes nobody can use any more (their phone numbers with them), idle rate limits.
    "accounts-prune-login-data": {
        "task": "accounts.tasks.prune_login_data",
        "schedule": 3600.0,
    },
    # Expense notes: hourly, the month-end run where the 1st 06:00 local time has passed,
    # new versions of notes whose sessions changed, retries of failed sends.
    "billing-expense-notes": {
        "task": "billing.tasks.check_months",
        "schedule": 3600.0,
    },
    # Frames forwarded to operators, kept for the charger page's log.
    "forwarding-purge-frames": {
        "task": "forwarding.tasks.purge_forwarded_frames",
        "schedule": 6 * 3600.0,
    },
    # Site meter readings older than METER_READINGS_DAYS.
    "meters-purge-readings": {
        "task": "meters.tasks.purge_readings",
        "schedule": 3600.0,
    },
    # Sessions whose holder reached a limit of use (duration, kWh per month) are stopped.
    "rules-check-limits": {
        "task": "rules.tasks.check_limits",
        "schedule": float(RULES_LIMITS_SECONDS),
    },
    # Local authorization lists and offline behaviour follow card and rule changes.
    "rules-sync-local-lists": {
        "task": "rules.tasks.sync_local_lists",
        "schedule": float(RULES_LOCAL_LIST_SECONDS),
    },
    # Notifications: facts to tell (access requests, refusals, chargers offline), then the
    # messages due (throttled digests, retries).
    "notifications-collect": {
        "task": "notifications.tasks.collect",
        "schedule": NOTIFY_SCAN_SECONDS,
    },
    "notifications-dispatch": {
        "task": "notifications.tasks.dispatch",
        "schedule": NOTIFY_SCAN_SECONDS,
    },
    "notifications-purge": {
        "task": "notifications.tasks.purge",
        "schedule": 24 * 3600.0,
    },
}

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- SMS, e-mail ------------------------------------------------------------------------------
SMS_BACKEND = env_str("SMS_BACKEND", "console")
if SMS_BACKEND not in ("console", "twilio", "memory"):
    raise ImproperlyConfigured("SMS_BACKEND must be one of console, twilio, memory")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env_str("TWILIO_FROM_NUMBER")
TWILIO_MESSAGING_SERVICE_SID = env_str("TWILIO_MESSAGING_SERVICE_SID")

DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Sparklin <no-reply@sparklin.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if env_str("EMAIL_HOST") and "EMAIL_BACKEND" not in os.environ:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# The month's e-mail to finance is split into parts whose PDFs stay under this size (mail
# servers commonly refuse messages over 20–25 MB, and base64 adds a third).
EXPENSE_NOTES_FINANCE_PART_MB = env_float("EXPENSE_NOTES_FINANCE_PART_MB", 12)

# --- Support ("Report a problem", support/) ---------------------------------------------------
# Where reports are e-mailed, and the address and phone shown in every page's footer (the
# Sparklin guide's after-sales contacts by default).
SUPPORT_EMAIL = env_str("SUPPORT_EMAIL", "sav@sparklin.io")
SUPPORT_PHONE = env_str("SUPPORT_PHONE", "06 64 18 21 96")
SUPPORT_SCREENSHOT_MAX_MB = env_int("SUPPORT_SCREENSHOT_MAX_MB", 5)
SUPPORT_REPORTS_PER_HOUR = env_int("SUPPORT_REPORTS_PER_HOUR", 5)
SUPPORT_REPORTS_PER_DAY = env_int("SUPPORT_REPORTS_PER_DAY", 20)

# --- Login codes ------------------------------------------------------------------------------
LOGIN_CODE_TTL_SECONDS = env_int("LOGIN_CODE_TTL_SECONDS", 600)
LOGIN_CODE_MAX_ATTEMPTS = env_int("LOGIN_CODE_MAX_ATTEMPTS", 5)
# Sign-up: how long the e-mail confirmation link stays valid.
EMAIL_CONFIRMATION_DAYS = env_int("EMAIL_CONFIRMATION_DAYS", 7)

# --- SMS limits (against SMS pumping: each SMS costs money and fraudsters farm them) ---------
# Destination countries (ISO 3166 alpha-2, comma-separated, "*" for any). Default: the EU/EEA.
SMS_ALLOWED_COUNTRIES = env_list(
    "SMS_ALLOWED_COUNTRIES",
    "AT,BE,BG,HR,CY,CZ,DK,EE,FI,FR,DE,GR,HU,IE,IT,LV,LT,LU,MT,NL,PL,PT,RO,SK,SI,ES,SE,IS,LI,NO,"
    "GP,MQ,GF,RE,YT,MF,BL,PM",
)
# SMS one community may trigger (welcome, invitations, access answers), per hour and per day.
SMS_PER_COMMUNITY_PER_HOUR = env_int("SMS_PER_COMMUNITY_PER_HOUR", 20)
SMS_PER_COMMUNITY_PER_DAY = env_int("SMS_PER_COMMUNITY_PER_DAY", 60)
# SMS of any kind (login codes included) to one number, per hour and per day.
SMS_PER_NUMBER_PER_HOUR = env_int("SMS_PER_NUMBER_PER_HOUR", 5)
SMS_PER_NUMBER_PER_DAY = env_int("SMS_PER_NUMBER_PER_DAY", 10)

# --- Gateway ----------------------------------------------------------------------------------
GATEWAY_HOST = env_str("GATEWAY_HOST", "0.0.0.0")
GATEWAY_PORT = env_int("GATEWAY_PORT", 9000)
# What chargers are told to enter as their central-system URL (shown on commissioning pages).
GATEWAY_PUBLIC_URL = env_str("GATEWAY_PUBLIC_URL", "ws://localhost:9000/ocpp/")
GATEWAY_HEARTBEAT_INTERVAL = env_int("GATEWAY_HEARTBEAT_INTERVAL", 300)
GATEWAY_METER_SAMPLE_INTERVAL = env_int("GATEWAY_METER_SAMPLE_INTERVAL", 60)
# Clock-aligned main-meter data asked of a charger that is a site's OCPP meter (seconds; keep it
# well below METER_SILENT_SECONDS).
GATEWAY_MAIN_METER_INTERVAL = env_int("GATEWAY_MAIN_METER_INTERVAL", 10)
GATEWAY_RESPONSE_TIMEOUT = env_int("GATEWAY_RESPONSE_TIMEOUT", 30)
# How often each gateway looks for commands asked in the portal (ocpp_gateway.commands).
GATEWAY_COMMAND_POLL_SECONDS = env_float("GATEWAY_COMMAND_POLL_SECONDS", 1.0)
GATEWAY_EVENT_FLUSH_SECONDS = env_float("GATEWAY_EVENT_FLUSH_SECONDS", 0.5)
# Durable before answered (ocpp_gateway.batcher): how long the flusher gathers events once a
# handler waits to answer (the window grows from the first figure when idle to the second when
# the gateway publishes big batches back to back), and how long a handler waits before giving up (CALLERROR).
GATEWAY_DURABLE_WINDOW_SECONDS = env_float("GATEWAY_DURABLE_WINDOW_SECONDS", 0.02)
GATEWAY_DURABLE_WINDOW_MAX_SECONDS = env_float("GATEWAY_DURABLE_WINDOW_MAX_SECONDS", 0.1)
GATEWAY_DURABLE_TIMEOUT_SECONDS = env_float("GATEWAY_DURABLE_TIMEOUT_SECONDS", 20)
# Longest a single publish (connect, send, broker confirm) may take before it counts as failed
# and the batcher retries; never blocks the publishing thread forever.
GATEWAY_PUBLISH_TIMEOUT_SECONDS = env_float("GATEWAY_PUBLISH_TIMEOUT_SECONDS", 5)
OCPP_MESSAGE_LOG_DAYS = env_int("OCPP_MESSAGE_LOG_DAYS", 30)
# Storms (ocpp_gateway.server): the listen backlog (the kernel caps it at net.core.somaxconn),
# the time a charger has to finish its opening handshake, and how often the charger directory
# is refreshed by delta / reloaded whole.
GATEWAY_BACKLOG = env_int("GATEWAY_BACKLOG", 4096)
# This gateway process's name (several behind a balancer); default host name + random suffix.
GATEWAY_INSTANCE_ID = env_str("GATEWAY_INSTANCE_ID")
GATEWAY_OPEN_TIMEOUT = env_float("GATEWAY_OPEN_TIMEOUT", 60)
GATEWAY_DIRECTORY_REFRESH_SECONDS = env_float("GATEWAY_DIRECTORY_REFRESH_SECONDS", 5)
GATEWAY_DIRECTORY_RELOAD_SECONDS = env_float("GATEWAY_DIRECTORY_RELOAD_SECONDS", 300)
# Redis connections of one gateway process (registry and takeover notices), whatever the fleet.
GATEWAY_REDIS_MAX_CONNECTIONS = env_int("GATEWAY_REDIS_MAX_CONNECTIONS", 4)
# Lifetime of a registry entry; each gateway re-claims its chargers every third of it.
GATEWAY_REGISTRY_TTL = env_int("GATEWAY_REGISTRY_TTL", 90)
# Forwarding to third-party operators (forwarding/, ocpp_gateway/upstream.py).
# Key of the operators' stored passwords (any text; default: derived from SECRET_KEY).
FORWARDING_KEY = env_str("FORWARDING_KEY")
# What operators must still receive is kept in the database (forwarding.OutboxFrame), bounded
# per operator connection; one gateway at a time relays a connection, under a lease it renews.
FORWARDING_BUFFER_MAX = env_int("FORWARDING_BUFFER_MAX", 5000)  # frames per operator connection
FORWARDING_ANSWER_TIMEOUT = env_float("FORWARDING_ANSWER_TIMEOUT", 5)
FORWARDING_REFRESH_SECONDS = env_float("FORWARDING_REFRESH_SECONDS", 2)
# Operators on loopback/private addresses (tests, a lab): refused by default (SSRF).
FORWARDING_ALLOW_PRIVATE_HOSTS = env_bool("FORWARDING_ALLOW_PRIVATE_HOSTS", False)
FORWARDING_RECONNECT_MAX_SECONDS = env_float("FORWARDING_RECONNECT_MAX_SECONDS", 60)
# A relay lease not renewed for this long (its gateway died) may be taken by another gateway.
FORWARDING_LEASE_SECONDS = env_float("FORWARDING_LEASE_SECONDS", 15)
# Refused identities kept (chargers.tasks.purge_unknown_chargers).
UNKNOWN_CHARGER_MAX = env_int("UNKNOWN_CHARGER_MAX", 5000)
UNKNOWN_CHARGER_DAYS = env_int("UNKNOWN_CHARGER_DAYS", 30)

# --- Site meters (meters/, power management's measurements) -----------------------------------
# Readings kept (days); a meter with no reading for METER_SILENT_SECONDS is shown silent and
# power management stops trusting it (failsafe limits).
METER_READINGS_DAYS = env_int("METER_READINGS_DAYS", 7)
METER_SILENT_SECONDS = env_int("METER_SILENT_SECONDS", 60)
# The MQTT broker of meters whose configuration names none (run_meters, the demo meter).
METER_MQTT_URL = env_str("METER_MQTT_URL", "mqtt://127.0.0.1:1883")

# --- Power management (power/, `python manage.py run_power`) -------------------------------------
# The controller's cycle; a charger measured over its limit for POWER_OBEDIENCE_SECONDS is marked
# non-compliant; a dynamic limit is valid POWER_PROFILE_VALIDITY_SECONDS in the charger (refreshed
# at half of it; after it the charger falls back to its failsafe limit by itself); limits move
# by POWER_HYSTERESIS_A at least, upwards at most every POWER_MIN_INTERVAL_SECONDS per charger;
# a history point per site every POWER_HISTORY_SECONDS, kept POWER_HISTORY_HOURS.
POWER_CYCLE_SECONDS = env_float("POWER_CYCLE_SECONDS", 2.0)
POWER_OBEDIENCE_SECONDS = env_int("POWER_OBEDIENCE_SECONDS", 60)
# A charger gets this long to apply a new limit before its draw is compared with it.
POWER_APPLY_SECONDS = env_int("POWER_APPLY_SECONDS", 15)
POWER_PROFILE_VALIDITY_SECONDS = env_int("POWER_PROFILE_VALIDITY_SECONDS", 120)
POWER_HYSTERESIS_A = env_float("POWER_HYSTERESIS_A", 1.0)
POWER_MIN_INTERVAL_SECONDS = env_int("POWER_MIN_INTERVAL_SECONDS", 10)
POWER_HISTORY_SECONDS = env_int("POWER_HISTORY_SECONDS", 10)
POWER_HISTORY_HOURS = env_int("POWER_HISTORY_HOURS", 48)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "ocpp": {"level": "WARNING"},
        # 4xx answers (403, 404) log a warning with a traceback; the demo raises this to ERROR.
        "django.request": {"level": env_str("REQUEST_LOG_LEVEL", "WARNING")},
        "websockets": {"level": "WARNING"},
    },
}

SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
