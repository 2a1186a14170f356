"""docker/: the compose file validates against the Compose Specification and makes sense;
the Dockerfile follows our rules; production settings pass `check --deploy`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
    assert not re.search(r"apt-get install|build-essential|\bgcc\b", final)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "collectstatic" in final


def test_no_secrets_in_the_image(dockerfile):
    for line in dockerfile.splitlines():
        if re.match(r"^\s*(ENV|ARG)\b", line):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEY)\w*=", line), line
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignore and "*.sqlite3" in ignore


def test_only_the_web_role_migrates():
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    web, worker = entrypoint.split("worker)")[0], entrypoint.split("worker)")[1].split(";;")[0]
    assert "migrate --noinput" in web and "gunicorn" in web
    assert "migrate --check" in worker and "migrate --noinput" not in worker
    assert "qcluster" in worker


# --- Production settings ----------------------------------------------------------------


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
