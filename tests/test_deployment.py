"""docker/: the compose file validates against the Compose Specification and makes sense;
the Dockerfile follows our rules; production settings pass `check --deploy`."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
MODEL = "Qwen/Qwen3-4B-Instruct-2507"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_matches_the_specification(compose):
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_catches_mistakes(compose):
    """The validation is real: a misspelt key is refused."""
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["depends_onn"] = ["db"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def _depends(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on", {})
    return {name: {} for name in deps} if isinstance(deps, list) else deps


def test_dependencies_exist_and_are_healthchecked(compose):
    services = compose["services"]
    for name, service in services.items():
        for target, spec in _depends(service).items():
            assert target in services, f"{name} depends on missing {target}"
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{target} needs a healthcheck"
            if set(services[target].get("profiles", [])) - set(service.get("profiles", [])):
                # Depending on a service that may be switched off must be optional.
                assert spec.get("required") is False or service.get("profiles"), (name, target)


def test_volumes_are_declared(compose):
    declared = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
    assert "pgdata" in declared and "models" in declared


def test_services_and_profiles(compose):
    services = compose["services"]
    assert {"db", "web", "worker", "vllm", "redis", "vllm-a", "vllm-b", "vllm-lb"} <= set(services)
    for always in ("db", "web", "worker"):
        assert "profiles" not in services[always]  # run without any GPU
    assert services["vllm"]["profiles"] == ["gpu"]
    assert services["redis"]["profiles"] == ["redis"]
    assert services["db"]["volumes"] and services["db"]["healthcheck"]
    assert services["web"]["command"] == ["web"] and services["worker"]["command"] == ["worker"]
    assert "ports" not in services["worker"]  # scaled with --scale worker=N


@pytest.mark.parametrize("name", ["vllm", "vllm-a", "vllm-b"])
def test_vllm_serves_the_model_with_a_gpu(compose, name):
    service = compose["services"][name]
    command = " ".join(service["command"])
    assert f"--model={MODEL}" in command and f"--served-model-name={MODEL}" in command
    assert "--max-model-len=" in command and "--enable-prefix-caching" in command
    assert "guided" not in command
    assert service["image"].startswith("vllm/vllm-openai:v")
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "/health" in " ".join(service["healthcheck"]["test"])


def test_load_balancer_points_at_the_replicas(compose):
    conf = (DOCKER / "nginx-vllm.conf").read_text()
    assert "least_conn" in conf
    for replica in ("vllm-a", "vllm-b"):
        assert f"server {replica}:8000" in conf
    lb = compose["services"]["vllm-lb"]
    assert "./nginx-vllm.conf:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]


def test_env_example_documents_every_setting_the_compose_file_reads(compose):
    example = (DOCKER / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", (DOCKER / "compose.yaml").read_text()))
    assert used - {"MARKWISE_VERSION"} <= documented, used - documented
    for setting in (
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "LLM_BASE_URL",
        "LLM_MAX_CONCURRENCY",
        "Q_WORKERS",
        "REDIS_URL",
    ):
        assert setting in documented
    # Each setting has an explanation right above it.
    lines = example.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]+=", line):
            block = lines[max(0, i - 3) : i]
            assert any(b.startswith("#") for b in block) or lines[i - 1][:1].isupper(), line


# --- Dockerfile ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


def test_dockerfile_is_multi_stage_with_a_pinned_base(dockerfile):
    assert len(_stages(dockerfile)) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    for line in re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE):
        assert ":latest" not in line


def test_hadolint_is_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_runs_as_non_root_without_build_tools(dockerfile):
    final = _stages(dockerfile)[-1]
    users = re.findall(r"^USER (\S+)", final, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    # Runtime libraries (Pango and fonts for the PDFs) may be installed; build tools may not.
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bcmake\b|\S+-dev\b", final)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "collectstatic" in final


def test_no_secrets_in_the_image(dockerfile):
    for line in dockerfile.splitlines():
        if re.match(r"^\s*(ENV|ARG)\b", line):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEY)\w*=", line), line
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignore and "*.sqlite3" in ignore


def _roles() -> dict[str, str]:
    """The entrypoint's roles, each with the shell lines it runs."""
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    body = entrypoint.split('case "${1:-web}" in', 1)[1].split("esac", 1)[0]
    return {
        name.strip(): lines
        for name, lines in re.findall(r"^\s*([\w*|]+)\)\n(.*?);;", body, re.MULTILINE | re.DOTALL)
    }


def test_only_the_migrate_role_migrates():
    """Two web replicas starting together must not both run migrations: a one-off role
    does, and web and worker wait for it."""
    roles = _roles()
    assert {"web", "worker", "migrate", "manage"} <= set(roles)
    assert "migrate --noinput" in roles["migrate"] and "gunicorn" not in roles["migrate"]
    for name, lines in roles.items():
        if name != "migrate":
            assert "migrate --noinput" not in lines, name
    assert "gunicorn" in roles["web"]
    # Outside compose (Kubernetes: a Job) nothing orders the start: workers wait.
    assert "migrate --check" in roles["worker"] and "qcluster" in roles["worker"]


def test_migrations_run_once_before_web_and_workers(compose):
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"] and "profiles" not in migrate
    assert migrate["restart"] == "no"  # a one-off: done is done
    assert _depends(migrate)["db"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        assert _depends(services[name])["migrate"] == {
            "condition": "service_completed_successfully"
        }, name


# --- Production settings ----------------------------------------------------------------


def _check_deploy(tmp_path, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DATABASE_"))}
    env.pop("SECRET_KEY", None)
    env.update(
        DEBUG="false",
        ALLOWED_HOSTS="grading.school.example",
        CSRF_TRUSTED_ORIGINS="https://grading.school.example",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        **overrides,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def _development_key() -> str:
    settings_py = (ROOT / "config" / "settings.py").read_text()
    return re.search(r'^DEVELOPMENT_SECRET_KEY = "([^"]+)"', settings_py, re.MULTILINE).group(1)


@pytest.mark.parametrize(
    "key,error",
    [
        (_development_key(), "markwise.E001"),  # long enough, but published in the repository
        ("change-me-to-a-long-random-string", "markwise.E001"),  # docker/.env.example
        ("Zx9q-k3y-" * 5, "markwise.E002"),  # 45 characters
    ],
    ids=["development key", "placeholder", "short"],
)
def test_check_deploy_refuses_a_published_or_short_key(tmp_path, key, error):
    result = _check_deploy(tmp_path, SECRET_KEY=key)
    assert result.returncode != 0
    assert error in result.stderr, result.stdout + result.stderr
    # Not only with --deploy: `migrate` (the migrate service's one step) stops too.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DATABASE_"))}
    env.update(DEBUG="false", SECRET_KEY=key, DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}")
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--plan"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert migrate.returncode != 0 and error in migrate.stderr


def test_a_previous_key_kept_for_rotation_is_checked_too(tmp_path):
    from django.core.checks import Error
    from django.test import override_settings

    from config.checks import check_secret_key

    good = "k3y-" + "Zx9q" * 15
    with override_settings(DEBUG=False, SECRET_KEY=good, SECRET_KEY_FALLBACKS=[_development_key()]):
        assert [e.id for e in check_secret_key(None)] == ["markwise.E001"]
        assert all(isinstance(e, Error) for e in check_secret_key(None))
    with override_settings(DEBUG=True, SECRET_KEY="short"):
        assert check_secret_key(None) == []  # development: the default key is fine


def test_check_deploy_passes_with_production_environment(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("k3y-" + "Zx9q" * 15)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DATABASE_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY_FILE=str(secret),
        ALLOWED_HOSTS="grading.school.example",
        CSRF_TRUSTED_ORIGINS="https://grading.school.example",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    env.pop("SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- Compose, as an operator's values make it ---------------------------------------------

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: ${NAME}, ${NAME-default} (only when unset),
    ${NAME:-default} (unset or empty) and ${NAME:?error}."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        given = variables.get(name)
        if op == "-":
            return arg if given is None else given
        if op == ":-":
            return given or arg
        if op in ("?", ":?") and (given is None or (op == ":?" and not given)):
            raise ValueError(f"{name}: {arg}")
        return given or ""

    return _VARIABLE.sub(one, value)


def _app_environment(compose: dict, service: str, **variables: str) -> dict[str, str]:
    environment = compose["services"][service]["environment"]
    return {name: interpolate(str(value), variables) for name, value in environment.items()}


@pytest.mark.parametrize("service", ["web", "worker", "migrate"])
def test_an_empty_model_url_chooses_the_offline_rule_engine(compose, service):
    """docker/.env's `LLM_BASE_URL=` (empty) means the offline rule engine, as documented;
    only an unset variable falls back to the bundled vLLM."""
    assert (
        _app_environment(compose, service, POSTGRES_PASSWORD="pw", LLM_BASE_URL="")["LLM_BASE_URL"]
        == ""
    )
    unset = _app_environment(compose, service, POSTGRES_PASSWORD="pw")
    assert unset["LLM_BASE_URL"] == "http://vllm:8000/v1"
    chosen = _app_environment(compose, service, POSTGRES_PASSWORD="pw", LLM_BASE_URL="http://x/v1")
    assert chosen["LLM_BASE_URL"] == "http://x/v1"


def test_web_is_published_on_loopback_and_trusts_only_the_proxy(compose):
    """Reachable directly, gunicorn would believe anyone's X-Forwarded-Proto: the port is
    published for a proxy on the same host only, and only that proxy is trusted."""
    web = compose["services"]["web"]
    assert [interpolate(port, {}) for port in web["ports"]] == ["127.0.0.1:8000:8000"]
    trusted = _app_environment(compose, "web", POSTGRES_PASSWORD="pw")["FORWARDED_ALLOW_IPS"]
    # The proxy on the host reaches the container from the network's gateway.
    gateway = compose["networks"]["default"]["ipam"]["config"][0]["gateway"]
    assert trusted == gateway and "*" not in trusted
    assert "forwarded-allow-ips" not in (DOCKER / "entrypoint.sh").read_text()


@pytest.mark.parametrize("name", ["vllm", "vllm-a", "vllm-b"])
def test_vllm_reports_cached_tokens_and_keeps_json_compact(compose, name):
    command = compose["services"][name]["command"]
    # Without it vLLM never reports cached prompt tokens: the cache-hit figures stay 0.
    assert "--enable-prompt-tokens-details" in command
    (config,) = [c for c in command if c.startswith("--structured-outputs-config=")]
    # A weak model otherwise pads the JSON with whitespace until max_tokens.
    assert json.loads(config.split("=", 1)[1]) == {
        "backend": "xgrammar",
        "disable_any_whitespace": True,
    }
    image = compose["services"][name]["image"]
    assert re.fullmatch(r"vllm/vllm-openai:v(\d+)\.(\d+)\.(\d+)", image), image
    assert image == compose["services"]["vllm"]["image"]  # one version everywhere


def test_nginx_retries_a_chat_request_on_another_replica():
    """A chat completion is a POST: nginx passes it to the next replica after a 502/503
    only with non_idempotent (generating twice has no side effect; grading is idempotent)."""
    conf = (DOCKER / "nginx-vllm.conf").read_text()
    (directive,) = re.findall(r"^\s*proxy_next_upstream\s+([^;]+);", conf, re.MULTILINE)
    assert {"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(directive.split())
    assert re.search(r"^\s*proxy_next_upstream_tries\s+\d+;", conf, re.MULTILINE)


def test_the_image_ships_the_redis_broker(dockerfile):
    """REDIS_URL (the "redis" profile) needs the redis package in the image."""
    installs = re.findall(r"pip install [^\n]*", dockerfile)
    assert any('".[redis]"' in line for line in installs), installs
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^redis = \["redis>=', pyproject, re.MULTILINE)


# --- Settings from files (Docker and Kubernetes secrets) ----------------------------------


def _settings_with(tmp_path: Path, files: dict[str, str], **plain: str) -> dict:
    """Load config.settings in a fresh process with NAME_FILE for each of `files`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLM_", "DATABASE_", "REDIS_", "CACHE_", "SECRET_", "DEBUG"))
    }
    for name, content in files.items():
        path = tmp_path / name.lower()
        path.write_text(content, encoding="utf-8")
        env[f"{name}_FILE"] = str(path)
    env.update(plain, DJANGO_SETTINGS_MODULE="config.settings")
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({n: getattr(s, n)"
        " for n in dir(s) if n.isupper()}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_kind_of_setting_can_come_from_a_file(tmp_path):
    """Booleans, numbers, lists, URLs and paths alike, each file ending in a line break as
    `echo value > file` writes it (the break is not part of the value)."""
    key = "k3y-" + "Zx9q" * 15
    loaded = _settings_with(
        tmp_path,
        {
            "DEBUG": "false\n",
            "SECRET_KEY": key + "\n",
            "ALLOWED_HOSTS": "grading.school.example,10.0.0.5\n",
            "DATABASE_URL": "postgres://markwise:s3cret@db:5432/markwise\n",
            "CACHE_URL": "dummycache://\n",
            "REDIS_URL": "redis://redis:6379/2\n",
            "LLM_BASE_URL": "http://vllm:8000/v1/\n",
            "LLM_MAX_CONCURRENCY": "48\n",
            "WEBHOOK_TIMEOUT": "2.5\n",
            "TIME_ZONE": "Europe/Berlin\n",
            "READYZ_TOKEN": "probe-token-0123456789\n",
            "AUDIT_KEY": "a" * 40 + "\n",
        },
    )
    assert loaded["DEBUG"] is False and loaded["SECRET_KEY"] == key
    assert loaded["ALLOWED_HOSTS"] == ["grading.school.example", "10.0.0.5"]
    database = loaded["DATABASES"]["default"]
    assert (database["HOST"], database["NAME"], database["PASSWORD"]) == (
        "db",
        "markwise",
        "s3cret",
    )
    assert loaded["CACHES"]["default"]["BACKEND"].endswith("DummyCache")
    assert loaded["Q_CLUSTER"]["redis"] == "redis://redis:6379/2"
    assert loaded["LLM_BASE_URL"] == "http://vllm:8000/v1"
    assert loaded["LLM_MAX_CONCURRENCY"] == 48 and loaded["WEBHOOK_TIMEOUT"] == 2.5
    assert loaded["TIME_ZONE"] == "Europe/Berlin"
    assert loaded["READYZ_TOKEN"] == "probe-token-0123456789" and loaded["AUDIT_KEY"] == "a" * 40


def test_a_file_wins_over_the_plain_variable(tmp_path):
    loaded = _settings_with(tmp_path, {"LLM_MODEL": "from-file"}, LLM_MODEL="from-env")
    assert loaded["LLM_MODEL"] == "from-file"


def test_settings_read_the_environment_only_through_the_file_aware_env():
    """So that NAME_FILE works for every setting, present and future."""
    source = (ROOT / "config" / "settings.py").read_text()
    assert not re.search(r"\bos\.(environ|getenv)\b|\bgetenv\(", source)
    assert re.search(r"^env = \w+\(\)$", source, re.MULTILINE)


# --- Health probes: answered for the container's own address, over plain HTTP ---------------


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["grading.school.example"]
    settings.SECURE_SSL_REDIRECT = True
    return settings


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "10.42.3.17:8000", "grading.school.example"])
def test_healthz_answers_any_host_over_plain_http(client, production, host):
    response = client.get("/healthz", HTTP_HOST=host)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_anonymous_readyz_answers_the_kubelet(client, production, db):
    response = client.get("/readyz", HTTP_HOST="10.42.3.17:8000")
    assert response.status_code == 200 and response.json() == {"ready": True}


def test_the_exemption_covers_nothing_else(client, production, db, settings):
    settings.READYZ_TOKEN = "probe-Zx9q-k3y-0123456789"
    wrong_host = {"HTTP_HOST": "10.42.3.17:8000"}
    assert client.get("/", **wrong_host).status_code == 400
    assert client.get("/healthz/", **wrong_host).status_code == 400
    assert client.post("/healthz", **wrong_host).status_code == 400
    assert client.get("/", HTTP_HOST="grading.school.example").status_code == 301
    # Credentials take the normal path: a token is never read from an unlisted host or
    # over plain HTTP, and a session cookie never meets a host Django refuses.
    token = {"HTTP_AUTHORIZATION": f"Bearer {settings.READYZ_TOKEN}"}
    assert client.get("/readyz", **wrong_host, **token).status_code == 400
    assert client.get("/readyz?token=x", **wrong_host).status_code == 400
    assert client.get("/readyz", HTTP_HOST="grading.school.example", **token).status_code == 301
    detail = client.get("/readyz", HTTP_HOST="grading.school.example", secure=True, **token)
    assert detail.status_code == 200 and "checks" in detail.json()
    client.cookies[settings.SESSION_COOKIE_NAME] = "anything"
    assert client.get("/readyz", **wrong_host).status_code == 400


# --- The real web role: gunicorn as the container runs it ----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(
    scope="module", params=["192.0.2.10", "127.0.0.1"], ids=["proxy elsewhere", "we are the proxy"]
)
def web_role(request, tmp_path_factory):
    """`entrypoint.sh web` with production settings, trusting forwarded headers from
    request.param only; the probes and requests below come from 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("web")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DATABASE_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        DEBUG="false",
        SECRET_KEY="k3y-" + "Zx9q" * 15,
        ALLOWED_HOSTS="grading.school.example",
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp / "static"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        FORWARDED_ALLOW_IPS=request.param,
    )
    log = (tmp / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        ["sh", str(DOCKER / "entrypoint.sh"), "web"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            break
        assert proc.poll() is None, (tmp / "gunicorn.log").read_text()
        time.sleep(0.2)
    yield {"port": port, "trusted": request.param, "env": env}
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def _probe(command: list[str], port: int) -> int:
    command = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in command]
    return subprocess.run(command, capture_output=True, timeout=30).returncode


def test_container_healthchecks_pass_with_production_settings(web_role, dockerfile, compose):
    """The commands Docker runs, as written in the Dockerfile and compose.yaml."""
    image = json.loads(re.search(r"^\s+CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    service = compose["services"]["web"]["healthcheck"]["test"]
    for command in (image, service[1:]):
        command[0] = sys.executable if command[0] == "python" else command[0]
        assert _probe(command, web_role["port"]) == 0, command


def test_forwarded_https_is_believed_only_from_the_proxy(web_role):
    """X-Forwarded-Proto from anyone but FORWARDED_ALLOW_IPS is ignored: the request
    stays plain HTTP and is redirected to https://."""
    connection = http.client.HTTPConnection("127.0.0.1", web_role["port"], timeout=10)
    # An API page: it renders no static files (the image collects those at build time).
    connection.request(
        "GET",
        "/api/v1/courses/",
        headers={"Host": "grading.school.example", "X-Forwarded-Proto": "https"},
    )
    response = connection.getresponse()
    response.read()
    if web_role["trusted"] == "127.0.0.1":
        assert response.status in (401, 403)  # served over "https": it asks who is calling
    else:
        assert response.status == 301
        assert response.getheader("Location") == "https://grading.school.example/api/v1/courses/"


# --- nginx in front of two vLLM replicas ----------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class _Replica(ThreadingHTTPServer):
    """A stand-in vLLM replica on loopback that answers every chat request with `status`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.posts = 0
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                replica.posts += 1
                body = json.dumps({"replica": replica.status}).encode()
                self.send_response(replica.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.mark.skipif(not os.path.exists(NGINX), reason="apt-get install nginx-light")
def test_nginx_passes_a_chat_request_to_the_other_replica(tmp_path):
    """docker/nginx-vllm.conf itself, its replicas on loopback: one is restarting (503
    to everything), yet every chat POST is answered by the other."""
    restarting, healthy = _Replica(503), _Replica(200)
    port = _free_port()
    conf = (DOCKER / "nginx-vllm.conf").read_text()
    conf = conf.replace("server vllm-a:8000", f"server 127.0.0.1:{restarting.server_port}")
    conf = conf.replace("server vllm-b:8000", f"server 127.0.0.1:{healthy.server_port}")
    conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path};\n{conf}\n}}\n"
    )
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
            time.sleep(0.1)
        statuses = []
        for _ in range(6):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request(
                "POST",
                "/v1/chat/completions",
                body=json.dumps({"model": "m", "messages": []}),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            statuses.append((response.status, json.loads(response.read())))
            connection.close()
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        restarting.shutdown()
        healthy.shutdown()
    assert statuses == [(200, {"replica": 200})] * 6
    assert restarting.posts >= 1  # it was asked, failed, and nginx tried the other
    assert healthy.posts == 6
