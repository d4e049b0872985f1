"""The deployment files and production settings, checked without a Docker engine."""

import importlib
import importlib.util
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from config import env

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args, **environ):
    full_env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    full_env.update(environ)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_check_deploy():
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DJANGO_SETTINGS_MODULE="config.settings.production", SECRET_KEY=secrets.token_urlsafe(64),
        CATALOG_MASTER_KEYS="k1:" + "B" * 43,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_missing_master_keys():
    result = run_manage(
        "check", DJANGO_SETTINGS_MODULE="config.settings.production", SECRET_KEY=secrets.token_urlsafe(64),
        CATALOG_MASTER_KEYS="",
    )
    assert result.returncode != 0
    assert "CATALOG_MASTER_KEYS must be set" in result.stderr


def test_production_settings_refuse_a_missing_secret_key():
    result = run_manage("check", DJANGO_SETTINGS_MODULE="config.settings.production")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_malformed_boolean_setting_is_refused(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG must be a boolean"):
        env.env_bool("DEBUG")


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _settings_module(service) -> str:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return environment.get("DJANGO_SETTINGS_MODULE", "")


def test_compose_has_the_five_services():
    assert set(_compose()["services"]) == {"postgres", "redis", "web", "worker", "beat"}


def test_compose_app_services_name_modules_and_settings_that_exist():
    services = _compose()["services"]
    for name in ("web", "worker", "beat"):
        service = services[name]
        command = service["command"] if isinstance(service["command"], list) else service["command"].split()
        settings_module = _settings_module(service)
        assert importlib.util.find_spec(settings_module) is not None, (name, settings_module)
        if name == "web":
            assert command[0] == "gunicorn"
            module, _, attribute = next(arg for arg in command if ":" in arg and not arg.startswith("-")).partition(":")
            assert hasattr(importlib.import_module(module), attribute)
        else:
            assert command[:3] == ["celery", "-A", "config"] and command[3] == name
            assert hasattr(importlib.import_module("config"), "celery_app")
        assert service["build"] == "." and (ROOT / "Dockerfile").exists()
        assert {"postgres", "redis"} <= set(service["depends_on"])
    worker_command = services["worker"]["command"]
    queues = worker_command[worker_command.index("--queues") + 1].split(",")
    assert {"catalog", "sync"} <= set(queues)  # every queue a task is routed to has a worker


def test_compose_app_services_point_at_the_compose_databases():
    services = _compose()["services"]
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")


def test_dockerfile_installs_the_project_and_serves_with_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "pip install" in dockerfile and "collectstatic" in dockerfile
    assert "gunicorn" in dockerfile
