"""Settings come from the environment; production refuses unsafe defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRINT = (
    "import json, config.settings as s; print(json.dumps({"
    "'db': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
    "'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS, 'model': s.LLM_MODEL, 'url': s.LLM_BASE_URL,"
    "'key': s.LLM_API_KEY, 'timeout': s.LLM_TIMEOUT, 'conc': s.LLM_MAX_CONCURRENCY,"
    "'q': s.Q_CLUSTER, 'secure': s.SESSION_COOKIE_SECURE}))"
)


def load(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DATABASE_"))}
    clean.pop("REDIS_URL", None)
    clean.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PRINT], cwd=ROOT, env=clean, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_development_defaults():
    s = load()
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["debug"] is True
    assert s["model"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert s["url"] == ""  # offline rule engine
    assert s["q"]["orm"] == "default"
    assert s["q"]["retry"] > s["q"]["timeout"]


def test_production_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-from-a-file\n")
    s = load(
        DEBUG="false",
        SECRET_KEY="x" * 60,
        ALLOWED_HOSTS="grading.school.example,localhost",
        DATABASE_URL="postgres://markwise:pw@db:5432/markwise",
        LLM_BASE_URL="http://vllm:8000/v1/",
        LLM_API_KEY_FILE=str(key_file),
        LLM_TIMEOUT="90",
        LLM_MAX_CONCURRENCY="64",
        REDIS_URL="redis://redis:6379/0",
    )
    assert s["db"] == "django.db.backends.postgresql" and s["name"] == "markwise"
    assert s["hosts"] == ["grading.school.example", "localhost"]
    assert s["url"] == "http://vllm:8000/v1"
    assert s["key"] == "s3cret-from-a-file"
    assert s["timeout"] == 90.0 and s["conc"] == 64
    assert s["q"]["redis"] == "redis://redis:6379/0" and "orm" not in s["q"]
    assert s["q"]["timeout"] > 4 * 90  # covers every retry of a slow model call
    assert s["secure"] is True


def test_production_without_secret_key_fails():
    clean = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    clean["DEBUG"] = "false"
    out = subprocess.run(
        [sys.executable, "-c", PRINT], cwd=ROOT, env=clean, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "SECRET_KEY" in out.stderr
