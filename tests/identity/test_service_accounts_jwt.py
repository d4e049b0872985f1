"""OAuth 2.0 JWT access tokens (client credentials) from a provider served over real HTTP on
127.0.0.1: discovery and JWKS, keys generated here, tokens signed in the test."""

import base64
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from rest_framework.test import APIClient

from access.models import AuditEvent, Role, User
from access.services import role_ensure_defaults
from identity.jwt_auth import provider_keys
from tests.factories import registration_payload

AUDIENCE = "catalog-api"


class Provider:
    """A minimal identity provider: discovery, a JWKS whose keys the test changes, and a counter of
    JWKS fetches."""

    def __init__(self):
        self.published: list[dict] = []
        self.jwks_fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/jwks",
                            "token_endpoint": f"{provider.issuer}/token"}
                elif self.path == "/jwks":
                    provider.jwks_fetches += 1
                    body = {"keys": provider.published}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, private_key, kid, alg="RS256"):
        if isinstance(private_key, rsa.RSAPrivateKey):
            jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        self.published.append({**jwk, "kid": kid, "use": "sig", "alg": alg})

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signing_key():
    return rsa_key()


@pytest.fixture
def provider(db, settings, signing_key):
    role_ensure_defaults()
    served = Provider()
    served.publish(signing_key, "key-1")
    settings.OIDC_ISSUER = served.issuer
    settings.OIDC_API_AUDIENCE = AUDIENCE
    settings.OIDC_SERVICE_CLIENTS = ["pipeline=data_engineer", "reporting=data_analyst"]
    provider_keys.clear()
    yield served
    provider_keys.clear()
    served.stop()


def claims_for(provider, **overrides):
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "pipeline", "client_id": "pipeline",
              "iat": now, "nbf": now, "exp": now + 300, "scope": "catalog"}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def sign(claims, key, kid="key-1", alg="RS256"):
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"})


def bearer(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_valid_token_registers_a_dataset_as_the_clients_service_account(provider, signing_key, store):
    token = sign(claims_for(provider), signing_key)
    response = bearer(token).post("/api/v1/datasets/", registration_payload(store=store), format="json")
    assert response.status_code == 201, response.content
    account = User.objects.get(username="oauth:pipeline")
    assert account.is_service_account and not account.has_usable_password()
    assert [role.slug for role in Role.objects.filter(group__user=account)] == ["data_engineer"]
    assert AuditEvent.objects.filter(action="service_account.created", details__client_id="pipeline").exists()
    # The same client again is the same account.
    assert bearer(token).get("/api/v1/datasets/").status_code == 200
    assert User.objects.filter(username__startswith="oauth:").count() == 1


def test_an_ec_signed_token_is_accepted(provider, store):
    key = ec.generate_private_key(ec.SECP256R1())
    provider.publish(key, "ec-1", alg="ES256")
    response = bearer(sign(claims_for(provider), key, kid="ec-1", alg="ES256")).get("/api/v1/datasets/")
    assert response.status_code == 200, response.content


def _refused(token, expected):
    response = bearer(token).get("/api/v1/datasets/")
    assert response.status_code == 401, response.content
    assert expected in response.json()["detail"]
    return response


def test_an_expired_token_is_refused(provider, signing_key):
    now = int(time.time())
    _refused(sign(claims_for(provider, iat=now - 3600, nbf=now - 3600, exp=now - 600), signing_key), "expired")


def test_a_token_for_another_audience_is_refused(provider, signing_key):
    _refused(sign(claims_for(provider, aud="another-api"), signing_key), "not for this API")


def test_a_token_from_another_issuer_is_refused(provider, signing_key):
    _refused(sign(claims_for(provider, iss="https://elsewhere.example"), signing_key), "configured provider")


def test_an_issuer_with_a_trailing_slash_is_the_same_issuer(provider, signing_key):
    token = sign(claims_for(provider, iss=f"{provider.issuer}/"), signing_key)
    assert bearer(token).get("/api/v1/datasets/").status_code == 200


def test_a_token_not_valid_yet_is_refused(provider, signing_key):
    now = int(time.time())
    _refused(sign(claims_for(provider, nbf=now + 3600, iat=now + 3600), signing_key), "not valid yet")


def test_a_token_without_exp_is_refused(provider, signing_key):
    _refused(sign(claims_for(provider, exp=None), signing_key), "'exp'")


def test_an_unsigned_token_is_refused(provider):
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "at+jwt", "kid": "key-1"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims_for(provider)).encode()).rstrip(b"=")
    _refused(f"{header.decode()}.{body.decode()}.", "alg 'none'")


def test_an_hmac_token_is_refused(provider):
    # HS* would let anyone holding a shared secret (or the public key, in the classic confusion) sign.
    forged = jwt.encode(claims_for(provider), "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256",
                        headers={"kid": "key-1"})
    _refused(forged, "alg 'HS256'")


def test_a_token_signed_by_another_key_with_a_known_kid_is_refused(provider):
    _refused(sign(claims_for(provider), rsa_key(), kid="key-1"), "signature does not match")


def test_a_token_signed_by_an_unknown_key_is_refused(provider):
    _refused(sign(claims_for(provider), rsa_key(), kid="key-from-nowhere"), "unknown kid")


def test_an_unmapped_client_is_refused_and_no_account_is_made(provider, signing_key):
    _refused(sign(claims_for(provider, client_id="stranger", sub="stranger"), signing_key), "'stranger' is not mapped")
    assert not User.objects.filter(username__startswith="oauth:").exists()


def test_the_client_is_client_id_before_sub(provider, signing_key):
    # RFC 9068: client_id names the client; sub may be anything the provider chose.
    token = sign(claims_for(provider, client_id="reporting", sub="pipeline"), signing_key)
    assert bearer(token).get("/api/v1/datasets/").status_code == 200
    assert User.objects.filter(username="oauth:reporting").exists()
    assert not User.objects.filter(username="oauth:pipeline").exists()


def test_a_disabled_account_is_refused(provider, signing_key):
    token = sign(claims_for(provider), signing_key)
    assert bearer(token).get("/api/v1/datasets/").status_code == 200
    User.objects.filter(username="oauth:pipeline").update(is_active=False)
    _refused(token, "disabled")


def test_the_account_follows_the_mapping(provider, signing_key, settings):
    token = sign(claims_for(provider), signing_key)
    assert bearer(token).get("/api/v1/datasets/").status_code == 200
    settings.OIDC_SERVICE_CLIENTS = ["pipeline=data_analyst"]
    assert bearer(token).get("/api/v1/datasets/").status_code == 200
    account = User.objects.get(username="oauth:pipeline")
    assert [role.slug for role in Role.objects.filter(group__user=account)] == ["data_analyst"]
    assert AuditEvent.objects.filter(action="service_account.role_changed").count() == 1


def test_keys_are_cached_and_fetched_again_when_the_provider_rotates(provider, signing_key):
    assert bearer(sign(claims_for(provider), signing_key)).get("/api/v1/datasets/").status_code == 200
    assert bearer(sign(claims_for(provider), signing_key)).get("/api/v1/datasets/").status_code == 200
    assert provider.jwks_fetches == 1
    rotated = rsa_key()
    provider.published = []
    provider.publish(rotated, "key-2")
    assert bearer(sign(claims_for(provider), rotated, kid="key-2")).get("/api/v1/datasets/").status_code == 200
    assert provider.jwks_fetches == 2


def test_unknown_key_ids_do_not_flood_the_provider(provider):
    _refused(sign(claims_for(provider), rsa_key(), kid="made-up-1"), "unknown kid")
    _refused(sign(claims_for(provider), rsa_key(), kid="made-up-2"), "unknown kid")
    assert provider.jwks_fetches == 2  # the first fetch, and one more look for the first unknown kid


def test_an_unreachable_provider_is_a_401_saying_so(provider, signing_key):
    token = sign(claims_for(provider), signing_key)
    provider.stop()
    _refused(token, "could not be fetched")


def test_without_issuer_and_audience_jwts_are_refused_with_the_reason(provider, signing_key, settings):
    settings.OIDC_API_AUDIENCE = ""
    _refused(sign(claims_for(provider), signing_key), "OIDC_API_AUDIENCE")


def test_service_token_keys_still_work_as_bearer(service_account, provider):
    _, key = service_account
    assert bearer(key).get("/api/v1/datasets/").status_code == 200


def test_refused_tokens_are_logged_without_the_token(provider, signing_key, caplog):
    tokens = [
        sign(claims_for(provider, aud="another-api"), signing_key),
        sign(claims_for(provider), rsa_key(), kid="key-1"),
        sign(claims_for(provider, client_id="stranger"), signing_key),
    ]
    with caplog.at_level(logging.WARNING, logger="identity.jwt_auth"):
        for token in tokens:
            assert bearer(token).get("/api/v1/datasets/").status_code == 401
    refusals = [record for record in caplog.records if record.name == "identity.jwt_auth"]
    assert len(refusals) == 3
    logged = caplog.text + str(list(AuditEvent.objects.values()))
    for token in tokens:
        assert token not in logged and token.split(".")[2] not in logged
