"""Markwise settings: one file, everything read from the environment.

Defaults are safe for development (SQLite file, ORM broker, offline rule
engine); production sets DATABASE_URL, SECRET_KEY, ALLOWED_HOSTS and
LLM_BASE_URL. Any variable may instead be given as NAME_FILE pointing at a
file holding the value (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _from_file(name: str) -> None:
    """Load NAME from the file named by NAME_FILE, unless NAME is already set."""
    path = os.environ.get(f"{name}_FILE")
    if path and name not in os.environ:
        os.environ[name] = Path(path).read_text(encoding="utf-8").strip()


for _secret in ("SECRET_KEY", "DATABASE_URL", "LLM_API_KEY", "REDIS_URL"):
    _from_file(_secret)

DEBUG = env.bool("DEBUG", default=True)
# The development key is only accepted while DEBUG is on; production must set one.
_DEV_SECRET_KEY = "markwise-insecure-development-key-change-me-0123456789"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_htmx",
    "django_q",
    "courses",
    "grading",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "grading.audit.RequestIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "courses.middleware.PasswordChangeRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "grading.context_processors.service_banner",
                "courses.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'markwise.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the qcluster writes; the timeout rides
    # out short write locks instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "courses.User"

# Django's hashers, plus a cheaper one used only for random one-time initial passwords
# (courses/hashers.py); a login re-hashes them with the first, the default.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "courses.hashers.InitialPasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Internationalisation: the first schools are Chinese; every page is bilingual.
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Production hardening follows DEBUG; each can be overridden from the environment.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_REFERRER_POLICY = "same-origin"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

# --- The model endpoint -------------------------------------------------------
# Empty LLM_BASE_URL means: grade subjective answers with the offline rule engine.
LLM_BASE_URL = env.str("LLM_BASE_URL", default="").rstrip("/")
LLM_MODEL = env.str("LLM_MODEL", default="Qwen/Qwen3-4B-Instruct-2507")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=120.0)  # seconds to read one reply
LLM_CONNECT_TIMEOUT = env.float("LLM_CONNECT_TIMEOUT", default=5.0)
LLM_MAX_CONCURRENCY = env.int("LLM_MAX_CONCURRENCY", default=32)  # requests in flight, total
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=3)
LLM_BACKOFF_BASE = env.float("LLM_BACKOFF_BASE", default=0.5)  # seconds, doubled per retry
LLM_INVALID_RETRIES = env.int("LLM_INVALID_RETRIES", default=2)  # re-asks after a bad reply
LLM_TEMPERATURE = env.float("LLM_TEMPERATURE", default=0.2)
LLM_MAX_TOKENS = env.int("LLM_MAX_TOKENS", default=1024)
LLM_SAMPLES = env.int("LLM_SAMPLES", default=1)  # self-consistency: n choices per request
# Optional sampling seed. Servers batch requests, so even with a seed vLLM does not
# promise identical output; measure consistency with LLM_SAMPLES instead.
LLM_SEED = env.int("LLM_SEED", default=None)

# --- The task queue ---------------------------------------------------------------
# Timeout must cover the worst case for one chunk of answers: every request may
# wait LLM_TIMEOUT and be retried. `retry` must exceed `timeout`, or the ORM
# broker would hand a task that is still running to a second worker.
Q_TIMEOUT = env.int(
    "Q_TIMEOUT", default=int((LLM_TIMEOUT + LLM_CONNECT_TIMEOUT) * (LLM_MAX_RETRIES + 1)) + 60
)
Q_RETRY = env.int("Q_RETRY", default=Q_TIMEOUT + 60)
if Q_RETRY <= Q_TIMEOUT:
    raise environ.ImproperlyConfigured("Q_RETRY must be larger than Q_TIMEOUT.")
Q_CLUSTER = {
    "name": "markwise",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "save_limit": 1000,
    "ack_failures": True,
    "catch_up": False,
    "label": "Django Q2",
}
if REDIS_URL := env.str("REDIS_URL", default=""):
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = env.float("Q_POLL", default=0.5)

# Answers per grading task; 0 means four rounds of each worker's share of
# LLM_MAX_CONCURRENCY, so every request slot stays busy until a chunk ends.
GRADING_CHUNK_SIZE = env.int("GRADING_CHUNK_SIZE", default=0)
# An answer stuck in "grading" is re-enqueued this many times, then left to a teacher.
GRADING_MAX_REQUEUES = env.int("GRADING_MAX_REQUEUES", default=2)

# Demo accounts are refused outside DEBUG unless explicitly allowed.
DEMO_PASSWORD = "markwise-demo"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # one INFO line per model call is noise
    },
}
