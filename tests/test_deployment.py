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


def test_compose_has_the_six_services():
    assert set(_compose()["services"]) == {"postgres", "redis", "nginx", "web", "worker", "beat"}


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


# The reverse proxy and the address the audit trail and the sign-in lockout trust ---------------

NGINX_CONF = ROOT / "deploy" / "nginx.conf"


def _nginx_directives() -> list[list[str]]:
    """deploy/nginx.conf as a list of directives (words up to each ';' or '{'), comments dropped."""
    text = "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())
    directives, words = [], []
    for token in text.replace("{", " { ").replace("}", " } ").replace(";", " ; ").split():
        if token in {";", "{", "}"}:
            if words:
                directives.append(words)
            words = []
        else:
            words.append(token)
    return directives


def _proxies_in_front_of_web() -> list[str]:
    """Compose services that publish a port and whose nginx config passes requests to web:8000."""
    services = _compose()["services"]
    proxies = []
    for name, service in services.items():
        mounted = [volume.split(":")[0] for volume in service.get("volumes", [])]
        if name != "web" and service.get("ports") and "./deploy/nginx.conf" in mounted:
            proxies.append(name)
    return proxies


def test_compose_puts_nginx_in_front_and_web_publishes_no_port():
    services = _compose()["services"]
    nginx, web = services["nginx"], services["web"]
    assert nginx["image"].startswith("nginx:")
    assert nginx["ports"] and "web" in nginx["depends_on"]
    assert any(volume.startswith("./deploy/nginx.conf:/etc/nginx/conf.d/") for volume in nginx["volumes"])
    assert NGINX_CONF.exists()
    assert "ports" not in web, "gunicorn must be reachable only through the proxy"
    assert [str(port) for port in web["expose"]] == ["8000"]
    for name in ("postgres", "redis", "worker", "beat"):
        assert "ports" not in services[name], name


def test_web_trusts_exactly_the_proxies_in_front_of_it():
    web_environment = _compose()["services"]["web"]["environment"]
    assert int(web_environment["AUDIT_TRUSTED_PROXIES"]) == len(_proxies_in_front_of_web()) == 1


def test_nginx_proxies_to_web_and_appends_the_address_it_saw():
    directives = _nginx_directives()
    upstreams = {words[1] for words in directives if words[0] == "upstream"}
    assert ["server", "web:8000"] in directives
    passes = [words[1] for words in directives if words[0] == "proxy_pass"]
    assert passes and all(target.removeprefix("http://") in upstreams | {"web:8000"} for target in passes)
    assert ["proxy_set_header", "X-Forwarded-For", "$proxy_add_x_forwarded_for"] in directives
    assert ["proxy_set_header", "X-Forwarded-Proto", "$scheme"] in directives
    listens = [words[1] for words in directives if words[0] == "listen"]
    published = [str(port).rsplit(":", 1)[-1] for port in _compose()["services"]["nginx"]["ports"]]
    assert set(published) <= set(listens)


def test_no_settings_module_trusts_a_proxy_unless_told():
    script = (
        "import importlib\n"
        "for name in ('local', 'test', 'production'):\n"
        "    print(name, importlib.import_module('config.settings.' + name).AUDIT_TRUSTED_PROXIES)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "AUDIT_TRUSTED_PROXIES"}
    environ.update(SECRET_KEY=secrets.token_urlsafe(64), CATALOG_MASTER_KEYS="k1:" + "B" * 43)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["local", "0", "test", "0", "production", "0"]


def test_production_settings_keep_sign_in_throttling_on():
    result = run_manage(
        "shell", "--verbosity", "0", "-c",
        "from django.conf import settings; print(settings.AUTHENTICATION_BACKENDS[0], settings.MIDDLEWARE[-1],"
        " settings.AXES_FAILURE_LIMIT, settings.AXES_LOCKOUT_PARAMETERS)",
        DJANGO_SETTINGS_MODULE="config.settings.production", SECRET_KEY=secrets.token_urlsafe(64),
        CATALOG_MASTER_KEYS="k1:" + "B" * 43,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(maxsplit=3) == [
        "axes.backends.AxesStandaloneBackend", "axes.middleware.AxesMiddleware", "5", "['username', 'ip_address']",
    ]


def test_file_stores_are_off_in_production_and_only_var_warehouses_locally(tmp_path):
    script = (
        "import importlib\n"
        "for name in ('local', 'production'):\n"
        "    module = importlib.import_module('config.settings.' + name)\n"
        "    print(name, module.CATALOG_FILE_STORES_DIRS, repr(module.CATALOG_CONNECTION_FILES_DIR),"
        " module.CATALOG_CONNECTION_ALLOWED_HOSTS)\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_FILE", "CATALOG_CONNECTION"))}
    environ.update(SECRET_KEY=secrets.token_urlsafe(64), CATALOG_MASTER_KEYS="k1:" + "B" * 43,
                   CATALOG_VAR_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"local ['{tmp_path / 'warehouses'}'] '' []",
        "production [] '' []",
    ]


@pytest.mark.parametrize(("name", "value", "read"), [
    ("CATALOG_FILE_STORES_DIRS", "warehouses", env.env_paths),
    ("CATALOG_CONNECTION_ALLOWED_HOSTS", "db.internal,10.0.0.0/33", env.env_hosts),
    ("CATALOG_CONNECTION_ALLOWED_HOSTS", "db internal", env.env_hosts),
    ("SYNC_READ_TIMEOUT", "0", lambda name: env.env_int(name, 300, minimum=1)),
])
def test_malformed_connection_settings_are_refused(name, value, read, monkeypatch):
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        read(name)


def test_production_refuses_a_malformed_connection_setting():
    result = run_manage(
        "check", DJANGO_SETTINGS_MODULE="config.settings.production", SECRET_KEY=secrets.token_urlsafe(64),
        CATALOG_MASTER_KEYS="k1:" + "B" * 43, CATALOG_CONNECTION_TEST_TIMEOUT="ten",
    )
    assert result.returncode != 0
    assert "CATALOG_CONNECTION_TEST_TIMEOUT must be an integer" in result.stderr
