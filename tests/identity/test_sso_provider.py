"""The test identity provider also issues JWT access tokens to the machine client ``pipeline``
(client_credentials with a resource indicator), for the API's service accounts."""

import base64
import json

import requests

from tests.identity.oidc_fixtures import API_RESOURCE, oidc_provider  # noqa: F401 (fixture)


def jwt_part(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_the_pipeline_client_gets_a_jwt_for_the_api_audience(oidc_provider):
    token = oidc_provider.pipeline_token()

    header, payload = jwt_part(token, 0), jwt_part(token, 1)
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert payload["aud"] == API_RESOURCE and payload["client_id"] == "pipeline"
    assert payload["iss"] == oidc_provider.issuer and set(payload["scope"].split()) == {"api:read", "api:write"}
    keys = requests.get(f"{oidc_provider.issuer}/jwks", timeout=5).json()["keys"]
    assert header["kid"] in {key["kid"] for key in keys}


def test_another_audience_is_refused(oidc_provider):
    response = requests.post(f"{oidc_provider.issuer}/token", auth=("pipeline", "pipeline-test-secret"), timeout=5,
                             data={"grant_type": "client_credentials", "resource": "https://elsewhere.test/"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"
