"""Configuration from the environment: the embedded default and production mode.

Each case runs Django in a fresh interpreter, because settings are read once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "Zq8-vT3_xP0wL7nR2sM9yB4cF6hJ1dG5aE"


def _run(code: str, **env_overrides: str):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _settings_json(**env_overrides: str) -> dict:
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "from django.db import connection;"
        "mode = connection.cursor().execute('PRAGMA journal_mode').fetchone()[0] "
        "if connection.vendor == 'sqlite' else None;"
        "print(json.dumps({'engine': settings.DATABASES['default']['ENGINE'],"
        "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'],"
        "'broker': settings.CELERY_BROKER_URL, 'journal': mode,"
        "'tz': settings.TIME_ZONE, 'lang': settings.LANGUAGE_CODE}))"
    )
    result = _run(code, DJANGO_SETTINGS_MODULE="telehealth.settings", **env_overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_default_needs_no_server(tmp_path):
    config = _settings_json(TELEHEALTH_DATA_DIR=str(tmp_path))

    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["journal"] == "wal"
    assert config["layer"] == "channels.layers.InMemoryChannelLayer"
    assert config["broker"] == "filesystem://"
    assert (config["tz"], config["lang"]) == ("Asia/Ho_Chi_Minh", "vi")


def test_urls_switch_to_postgres_and_redis(tmp_path):
    config = _settings_json(
        TELEHEALTH_DATA_DIR=str(tmp_path),
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )

    assert config["engine"] == "django.db.backends.postgresql"
    assert config["layer"] == "channels_redis.core.RedisChannelLayer"
    assert config["broker"] == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("key", [None, "short", "a" * 60])
def test_production_mode_refuses_to_start_without_a_real_secret_key(tmp_path, key):
    env = {"DJANGO_DEBUG": "0", "TELEHEALTH_DATA_DIR": str(tmp_path)}
    if key is not None:
        env["DJANGO_SECRET_KEY"] = key

    result = _run(
        "import django; django.setup()", DJANGO_SETTINGS_MODULE="telehealth.settings", **env
    )

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_mode_refuses_the_development_relay_secret(tmp_path):
    result = _run(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="telehealth.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=GOOD_KEY,
        TELEHEALTH_DATA_DIR=str(tmp_path),
    )

    assert result.returncode != 0
    assert "RELAY_TOKEN_SECRET" in result.stderr


@pytest.mark.parametrize("services", ["embedded", "postgres-redis-turn"])
def test_production_mode_passes_the_deployment_checklist(tmp_path, services):
    # given production mode, on the embedded default or with PostgreSQL, Redis and TURN
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "TURN_"))
    }
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="telehealth.example.vn",
        RELAY_TOKEN_SECRET="r" * 40,
        TELEHEALTH_DATA_DIR=str(tmp_path),
    )
    if services != "embedded":
        env.update(
            DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
            REDIS_URL="redis://127.0.0.1:6379/0",
            TURN_URLS="turn:turn.example.vn:3478",
            TURN_SHARED_SECRET="t" * 16 + "Zq8-vT3_xP0wL7nR2sM9",
        )
    # when Django's deployment checklist runs, failing on any warning
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then it finds nothing, and nothing was silenced to get there
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_mode_sends_hsts_and_the_policy_over_https(tmp_path):
    # given production mode behind the TLS proxy (X-Forwarded-Proto: https)
    code = (
        "import json, django; django.setup();"
        "from django.test import Client;"
        "r = Client(HTTP_HOST='telehealth.example.vn', HTTP_X_FORWARDED_PROTO='https')"
        ".get('/api/docs/?script=');"
        "print(json.dumps({'status': r.status_code, 'headers': dict(r.headers)}))"
    )
    result = _run(
        code,
        DJANGO_SETTINGS_MODULE="telehealth.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="telehealth.example.vn",
        RELAY_TOKEN_SECRET="r" * 40,
        RELAY_PUBLIC_ORIGINS="https://relay1.example.vn,https://relay2.example.vn",
        TELEHEALTH_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    headers = answer["headers"]
    # then the browser must keep to HTTPS for a year, and to the secure socket and the
    # relay nodes named in RELAY_PUBLIC_ORIGINS
    assert answer["status"] == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    connect = next(
        part.split()[1:]
        for part in headers["Content-Security-Policy"].split(";")
        if part.split()[0] == "connect-src"
    )
    assert set(connect) == {
        "'self'",
        "wss://telehealth.example.vn",
        "https://relay1.example.vn",
        "https://relay2.example.vn",
    }


@pytest.mark.parametrize("secret", ["", "change-me-turn-secret", "short"])
def test_production_mode_refuses_a_guessable_turn_secret(tmp_path, secret):
    # given production mode with TURN switched on and a missing or well-known secret
    result = _run(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="telehealth.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=GOOD_KEY,
        RELAY_TOKEN_SECRET="r" * 40,
        TURN_URLS="turn:turn.example.vn:3478",
        TURN_SHARED_SECRET=secret,
        TELEHEALTH_DATA_DIR=str(tmp_path),
    )
    # then it refuses to start and says which setting
    assert result.returncode != 0
    assert "TURN_SHARED_SECRET" in result.stderr


def test_compose_needs_real_secrets_and_checks_every_long_running_service():
    # given the production-like compose file
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    # then every long-running service has a health check (migrate is a one-shot job)
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, name
    # and no well-known TURN secret is shipped as a default
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_production_static_files_cache_bust_the_modules_pages_import(tmp_path):
    # given production mode collecting the static files
    static_root = tmp_path / "static"
    result = _run(
        "import django; django.setup();"
        "from django.core.management import call_command;"
        "call_command('collectstatic', '--noinput', verbosity=0)",
        DJANGO_SETTINGS_MODULE="telehealth.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=GOOD_KEY,
        RELAY_TOKEN_SECRET="r" * 40,
        DJANGO_STATIC_ROOT=str(static_root),
        TELEHEALTH_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    # then a page's module imports the shared socket module under its hashed name
    page_module = next((static_root / "js").glob("conversations.*.js"))
    source = page_module.read_text()
    assert "./realtime.js" not in source
    assert any(
        f"./{hashed.name}" in source for hashed in (static_root / "js").glob("realtime.*.js")
    )
