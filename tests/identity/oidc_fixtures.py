"""The identity provider of the single sign-on tests: panva's oidc-provider (tests/identity/provider)
under Node, on 127.0.0.1 at a free port, started once per test session. ``make test`` installs it
(scripts/ensure-identity-provider.sh); a machine without Node or the package fails these tests.
Import the fixtures into a test module: ``from tests.identity.oidc_fixtures import oidc_provider, oidc_settings``."""

import json
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
CATALOG_CLIENT_SECRET = "catalog-test-secret"
PIPELINE_CLIENT_SECRET = "pipeline-test-secret"
API_RESOURCE = "https://catalog.test/api"
PASSWORD = "password"  # every user of the test provider


@dataclass
class TestProvider:
    issuer: str
    process: subprocess.Popen
    __test__ = False

    def user_set(self, username: str, **claims) -> dict:
        """Change a provider user (``groups``, ``amr``, ``email``, ``name``) for their next sign-in."""
        response = requests.post(f"{self.issuer}/__test/users/{username}", json=claims, timeout=5)
        response.raise_for_status()
        return response.json()

    def tamper_next_id_token(self) -> None:
        """The next token response carries an ID token with one signature character flipped."""
        requests.post(f"{self.issuer}/__test/tamper-next-id-token", timeout=5).raise_for_status()

    def pipeline_token(self, *, resource: str = API_RESOURCE, scope: str = "api:read api:write") -> str:
        """A JWT access token for the machine client ``pipeline`` (client_credentials, audience ``resource``)."""
        response = requests.post(
            f"{self.issuer}/token", auth=("pipeline", PIPELINE_CLIENT_SECRET), timeout=5,
            data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
        )
        response.raise_for_status()
        return response.json()["access_token"]


def _provider_start(*, redirect_uris: list[str], post_logout_uris: list[str]) -> TestProvider:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: the single sign-on tests run oidc-provider under Node 20+ "
                    "(scripts/ensure-identity-provider.sh installs it)", pytrace=False)
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"oidc-provider is not installed in {PROVIDER_DIR}: run scripts/ensure-identity-provider.sh "
                    "(npm ci)", pytrace=False)
    env = {
        "PATH": "/usr/bin:/bin", "NODE_ENV": "test",
        "CATALOG_REDIRECT_URIS": ",".join(redirect_uris),
        "CATALOG_POST_LOGOUT_URIS": ",".join(post_logout_uris),
        "CATALOG_CLIENT_SECRET": CATALOG_CLIENT_SECRET,
        "PIPELINE_CLIENT_SECRET": PIPELINE_CLIENT_SECRET,
        "API_RESOURCE": API_RESOURCE,
    }
    process = subprocess.Popen([node, "server.mjs"], cwd=PROVIDER_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            pytest.fail("the test identity provider did not start:\n" + "".join(seen), pytrace=False)
        seen.append(line)
        if line.startswith("{"):
            return TestProvider(issuer=json.loads(line)["issuer"], process=process)


@pytest.fixture(scope="session")
def oidc_provider(live_server):
    """The running provider; its ``catalog`` client redirects to the live server."""
    provider = _provider_start(redirect_uris=[f"{live_server.url}/oidc/callback/"],
                               post_logout_uris=[f"{live_server.url}/login/"])
    yield provider
    provider.process.terminate()
    provider.process.wait(timeout=10)


@pytest.fixture
def oidc_settings(settings, oidc_provider):
    """The catalog configured for the test provider, with alice's and bob's groups mapped to roles."""
    from access.services import role_ensure_defaults

    settings.OIDC_ISSUER = oidc_provider.issuer
    settings.OIDC_CLIENT_ID = "catalog"
    settings.OIDC_CLIENT_SECRET = CATALOG_CLIENT_SECRET
    settings.OIDC_PROVIDER_NAME = "Test IdP"
    settings.OIDC_GROUP_ROLES = ["security-engineers=security_engineer", "data-engineers=data_engineer"]
    role_ensure_defaults()
    for username, groups, amr in [("alice", ["security-engineers", "staff"], ["pwd", "mfa"]),
                                  ("bob", ["data-engineers"], ["pwd"]), ("carol", ["staff"], ["pwd"])]:
        oidc_provider.user_set(username, groups=groups, amr=amr)
    return settings
