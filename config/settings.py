"""Markwise settings: one file, everything read from the environment.

Defaults are safe for development (SQLite file, ORM broker, offline rule
engine); production sets DATABASE_URL, SECRET_KEY, ALLOWED_HOSTS and
LLM_BASE_URL. Any variable may instead be given as NAME_FILE pointing at a
file holding the value (Docker/Kubernetes secrets); NAME_FILE wins over NAME.
Read the environment only through `env` below, so that this holds for every
setting.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from environ.fileaware_mapping import FileAwareMapping

BASE_DIR = Path(__file__).resolve().parent.parent


class _SecretFileEnviron(FileAwareMapping):
    """The process environment, where NAME_FILE supplies NAME's value. The file's last
    line break is not part of the value: `echo value > file` and most editors end a file
    with one, and a secret key or token with a stray newline would silently not match."""

    def __getitem__(self, key: str) -> str:
        value: str = super().__getitem__(key)
        return value.rstrip("\r\n")


class _Env(environ.FileAwareEnv):
    ENVIRON = _SecretFileEnviron()


env = _Env()

DEBUG = env.bool("DEBUG", default=True)
# The development key is only accepted while DEBUG is on; production must set one, and
# config/checks.py refuses this one (it is in the repository) or any short key.
DEVELOPMENT_SECRET_KEY = "markwise-insecure-development-key-change-me-0123456789"
SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY if DEBUG else "")
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
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us (no CDN)
    "django_htmx",
    "django_q",
    "axes",
    "csp",
    "config",  # the deployment checks (config/checks.py)
    "courses",
    "grading",
    "lti",
]

MIDDLEWARE = [
    # First: probes from Docker and the kubelet use the container's own address over plain
    # HTTP; /healthz and anonymous /readyz answer them before the host and HTTPS checks.
    "config.middleware.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
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
    # After the two above: an HTMX response's messages go out in its HX-Trigger header.
    "courses.middleware.HtmxMessagesMiddleware",
    # After XFrameOptionsMiddleware and CSPMiddleware: a session opened by an LTI launch may
    # be framed by its platform's registered origins only (lti/middleware.py).
    "lti.middleware.LtiFramingMiddleware",
    # Last, as django-axes asks: it turns a lockout flagged during the view into its page.
    "axes.middleware.AxesMiddleware",
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
    # The first-login change must not keep the printed initial password.
    {"NAME": "courses.accounts.NotCurrentPasswordValidator"},
]

# --- Logging in --------------------------------------------------------------------------
# django-axes refuses a login after LOGIN_FAILURE_LIMIT wrong passwords for one username
# from one address, for LOGIN_COOLOFF_MINUTES. The pair, not the address alone, because a
# whole school reaches the site from one NAT address and one pupil's typos (or a classmate
# guessing at the teacher's account) must not lock everyone else out. Administrators unlock
# in Django admin (Axes → access attempts) or with `manage.py axes_reset_username NAME`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: it refuses locked-out pairs
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a typo last week does not count towards today's lockout
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Behind the proxy every request comes from its address; the proxy's X-Forwarded-For
# names the client. Only trust that header when a proxy we run sets it (a client can send
# one of its own): TRUSTED_PROXY_COUNT is how many proxies stand in front of gunicorn.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "courses.accounts.client_ip"

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
# HTTPS is whatever the WSGI server says (wsgi.url_scheme), never a request header read
# here: gunicorn believes X-Forwarded-Proto only from FORWARDED_ALLOW_IPS (the proxy),
# while Django's SECURE_PROXY_SSL_HEADER would believe it from anyone who reaches the
# port directly (docker/entrypoint.sh, README: Production).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Markwise runs inside an LMS's iframe after an LTI launch: a cross-site frame gets its
# session and CSRF cookies only with SameSite=None, which browsers accept only with Secure.
# CSRF protection does not rest on SameSite (Django checks the token and the Origin).
SESSION_COOKIE_SAMESITE = "None" if SESSION_COOKIE_SECURE else "Lax"
CSRF_COOKIE_SAMESITE = "None" if CSRF_COOKIE_SECURE else "Lax"
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_REFERRER_POLICY = "same-origin"

# Content-Security-Policy (django-csp 4): only our own scripts, styles and requests. No
# inline code anywhere: behaviour lives in static/js (data- attributes, not onclick), htmx
# gets its configuration from a <meta> tag and does not inject its indicator <style>
# (static/css has those rules), and htmx's eval features are off. A template that truly
# needs an inline script adds nonce="{{ request.csp_nonce }}": the nonce source is added
# to script-src for that response only when a template asks for it.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],  # as X-Frame-Options: DENY, for browsers that prefer CSP
    },
}

# --- What people type -----------------------------------------------------------------
# The longest answer a student may save, in characters. A long school essay is 1,000–3,000
# Chinese characters; 20,000 holds anything written for school and keeps one answer well
# inside the model's context. A longer answer is refused with a message, and the student's
# text stays in the form.
ANSWER_MAX_CHARS = env.int("ANSWER_MAX_CHARS", default=20_000)
# The largest form body Django reads; a larger one gets the "too long" page (config/urls.py
# handler400). A form-encoded CJK character takes 9 bytes (%E4%B8%AD), so the default
# holds 50 answers at the limit in one hand-in.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int(
    "DATA_UPLOAD_MAX_MEMORY_SIZE", default=max(2_621_440, ANSWER_MAX_CHARS * 9 * 50)
)

# --- LTI 1.3 (lti/, README: Connect your LMS) ------------------------------------------
# The public https address of this installation; `lti_platform add` prints the URLs to paste
# into the LMS from it.
LTI_TOOL_URL = env.str("LTI_TOOL_URL", default="http://localhost:8000")

# --- The REST API (grading/api, README: API) --------------------------------------------
# School systems authenticate with API keys (`Authorization: Bearer mw_…`), browsers with
# their session (and CSRF token). Errors are problem details (RFC 9457), lists paginate.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "grading.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["grading.api.access.CallerPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "grading.api.pagination.PagePagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["grading.api.throttling.PrincipalRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "grading.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "grading.api.problems.exception_handler",
}
# Requests per key, per signed-in person and per anonymous address ("N/second|minute|
# hour|day"; empty: no limit). Counted in the cache below.
API_RATE_KEY = env.str("API_RATE_KEY", default="1200/minute")
API_RATE_USER = env.str("API_RATE_USER", default="600/minute")
API_RATE_ANON = env.str("API_RATE_ANON", default="60/minute")
# How long a retried POST waits for the first request with its Idempotency-Key to finish
# before it is answered 409 (seconds).
API_IDEMPOTENCY_WAIT = env.float("API_IDEMPOTENCY_WAIT", default=10.0)
# The cache the API's rate limits count in. One process: memory is enough. Several
# (gunicorn workers, hosts): a shared one, e.g. CACHE_URL=redis://… or
# dbcache://markwise_cache (after `manage.py createcachetable`).
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

SPECTACULAR_SETTINGS = {
    "TITLE": "Markwise API",
    "VERSION": "1.0.0",
    # The long description (authentication, retries, errors) lives beside the API code, which
    # the Docker image carries (docs/ it does not).
    "DESCRIPTION": (BASE_DIR / "grading" / "api" / "description.md").read_text(encoding="utf-8"),
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "grading.api.schema.describe_hook",
    ],
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": True},
    "ENUM_NAME_OVERRIDES": {
        "AnswerStatusEnum": "grading.models.AnswerStatus",
        "SubmissionStatusEnum": "grading.models.SubmissionStatus",
        "LanguageEnum": "courses.models.Language",
    },
    "TAGS": [
        {"name": "courses", "description": "The courses a caller teaches or studies in."},
        {"name": "enrollments", "description": "Who is in a course, and as what."},
        {"name": "assignments", "description": "Assignments with their questions and rubrics."},
        {"name": "rubrics", "description": "Scoring guides, versioned once they have scored."},
        {"name": "submissions", "description": "Handing in, and what was handed in."},
        {"name": "answers", "description": "Answers under review and their AI assessments."},
        {"name": "grading", "description": "Start grading, watch it, release grades."},
        {"name": "grades", "description": "Approved grades: approve, override, bulk approve."},
        {"name": "regrade requests", "description": "Students ask, teachers answer."},
        {"name": "audit", "description": "The tamper-evident record of every change."},
    ],
}

# --- The model endpoint -------------------------------------------------------
# Empty LLM_BASE_URL means: grade subjective answers with the offline rule engine. Several
# replicas without a router in front: list their URLs, comma-separated; each has its own
# request budget and circuit breaker (README: Using a real model).
LLM_BASE_URL = env.str("LLM_BASE_URL", default="").rstrip("/")
LLM_MODEL = env.str("LLM_MODEL", default="Qwen/Qwen3-4B-Instruct-2507")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=120.0)  # seconds to read one reply
LLM_CONNECT_TIMEOUT = env.float("LLM_CONNECT_TIMEOUT", default=5.0)
# The server's --max-num-seqs (per replica): how many sequences it runs at once.
LLM_MAX_NUM_SEQS = env.int("LLM_MAX_NUM_SEQS", default=64)
# Requests in flight per endpoint from every worker process on every host together: a
# budget leased from Redis (REDIS_URL) or the database. By default the server's batch
# plus half a batch queued, so the batch stays full while workers store results.
LLM_MAX_CONCURRENCY = env.int("LLM_MAX_CONCURRENCY", default=LLM_MAX_NUM_SEQS * 3 // 2)
# A budget lease a worker stops renewing (it died) is free again after this many seconds.
LLM_SLOT_LEASE_SECONDS = env.float("LLM_SLOT_LEASE_SECONDS", default=30.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=3)
LLM_BACKOFF_BASE = env.float("LLM_BACKOFF_BASE", default=0.5)  # seconds, doubled per retry
LLM_INVALID_RETRIES = env.int("LLM_INVALID_RETRIES", default=2)  # re-asks after a bad reply
# Circuit breaker: after this many consecutive connection errors (refused, reset, connect
# timeouts), 429, 502, 503, 504 or "model loading" answers an endpoint gets no requests;
# its answers wait (never manual grading) while /models is probed with backoff, at most
# LLM_OUTAGE_MAX_WAIT seconds apart, and are queued again once it serves.
LLM_BREAKER_THRESHOLD = env.int("LLM_BREAKER_THRESHOLD", default=3)
LLM_OUTAGE_MAX_WAIT = env.float("LLM_OUTAGE_MAX_WAIT", default=300.0)
# Sampling. Unset: the defaults of the model's family (grading/llm.py, README: Sampling).
LLM_TEMPERATURE = env.float("LLM_TEMPERATURE", default=None)
LLM_TOP_P = env.float("LLM_TOP_P", default=None)
LLM_TOP_K = env.int("LLM_TOP_K", default=None)
LLM_MIN_P = env.float("LLM_MIN_P", default=None)
LLM_PRESENCE_PENALTY = env.float("LLM_PRESENCE_PENALTY", default=None)
# Token budget of one reply: the schema's free-text limits are sized so that its worst
# case fits, and max_tokens is that worst case.
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
# LLM_MAX_CONCURRENCY, so every request slot stays busy until a chunk ends. A chunk starts
# no new request after half of Q_TIMEOUT; what it could not send goes back to the queue.
GRADING_CHUNK_SIZE = env.int("GRADING_CHUNK_SIZE", default=0)
# An answer stuck in "grading" is re-enqueued this many times, then left to a teacher.
GRADING_MAX_REQUEUES = env.int("GRADING_MAX_REQUEUES", default=2)

# --- Webhooks (README: Webhooks) ---------------------------------------------------------
# Seconds to connect to and hear back from a receiver; a slow one is retried, not waited for.
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=5.0)
# Attempts per delivery, the first included; then the delivery is marked failed.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
# Seconds before the first retry, doubled after each failure up to WEBHOOK_BACKOFF_MAX
# (30 s, 1, 2, 4 … 32 min: eight attempts span a little over an hour).
WEBHOOK_BACKOFF_BASE = env.float("WEBHOOK_BACKOFF_BASE", default=30.0)
WEBHOOK_BACKOFF_MAX = env.float("WEBHOOK_BACKOFF_MAX", default=6 * 3600.0)
# Plain-http receivers, and receivers on loopback or private networks, are for development:
# in production a teacher's subscription must not reach the school's internal services.
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=DEBUG)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=DEBUG)

# --- The audit trail --------------------------------------------------------------------
# The key of the audit hash chain (an HMAC) and of its checkpoints. It is never stored in
# the database, so whoever can write the tables cannot re-hash an edited trail. Empty: a
# key derived from SECRET_KEY, which then must never change (README: the audit trail).
AUDIT_KEY = env.str("AUDIT_KEY", default="")
if AUDIT_KEY and len(AUDIT_KEY) < 32:
    raise environ.ImproperlyConfigured("AUDIT_KEY must be at least 32 characters long.")
# Signed checkpoints (the chain's length and newest hash) are appended to daily files here,
# outside the database; `verify_audit` reads them, so deleting the newest events or
# emptying the table shows. Ship copies elsewhere. A checkpoint every AUDIT_CHECKPOINT_EVERY
# events (0: only the 5-minute schedule and `verify_audit --write-checkpoint`).
AUDIT_CHECKPOINT_DIR = Path(
    env.str("AUDIT_CHECKPOINT_DIR", default="") or BASE_DIR / "data/audit-checkpoints"
)
AUDIT_CHECKPOINT_EVERY = env.int("AUDIT_CHECKPOINT_EVERY", default=100)

# /readyz answers anyone with {"ready": true|false} and its status code; the details
# (database, migrations, backlog, the model endpoint's URL and errors) need a staff
# session or this token, sent as "Authorization: Bearer TOKEN" or ?token=TOKEN.
# Empty: staff only.
READYZ_TOKEN = env.str("READYZ_TOKEN", default="")

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
        # Failed logins and lockouts are warnings; every successful login is INFO noise.
        "axes": {"level": "WARNING"},
    },
}
