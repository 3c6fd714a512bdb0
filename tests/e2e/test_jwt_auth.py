"""JWT users keep working without any call to a login service: verified locally in the gateway."""

import time

import jwt as pyjwt
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.harness import mock_config, start_gateway

SECRET = "s" * 40
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwt_gateway(e2e_tmp, mock, ec_key):
    pem = ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    tmp = e2e_tmp / "jwt"
    tmp.mkdir()
    config = mock_config(mock.url, auth={"jwt": {
        "issuer": "https://login.example", "audience": "seawall", "hs256_secret_env": "SW_JWT_SECRET",
        "public_keys": [pem], "tenant_claim": "org_id", "tier_claim": "tier"}})
    gw = start_gateway(tmp, config, env={"SW_JWT_SECRET": SECRET})
    yield gw
    gw.stop()


def _claims(**extra):
    now = int(time.time())
    return {"sub": "user-1", "org_id": "acme", "tier": "free", "iss": "https://login.example",
            "aud": "seawall", "iat": now, "exp": now + 300, **extra}


def _client(gw, token):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=token, max_retries=0, timeout=10)


def test_es256_and_hs256_tokens_are_accepted(jwt_gateway, ec_key):
    for token in (pyjwt.encode(_claims(), ec_key, algorithm="ES256"),
                  pyjwt.encode(_claims(tier="api"), SECRET, algorithm="HS256")):
        out = _client(jwt_gateway, token).chat.completions.create(model="chat", messages=MSG, max_tokens=1)
        assert out.choices[0].message.content == "tok0"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 3600},
        {"nbf": int(time.time()) + 3600},
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"tier": "platinum"},
    ],
)
def test_bad_claims_are_401(jwt_gateway, ec_key, claims):
    token = pyjwt.encode(_claims(**claims), ec_key, algorithm="ES256")
    with pytest.raises(openai.AuthenticationError):
        _client(jwt_gateway, token).chat.completions.create(model="chat", messages=MSG)


def test_wrong_signature_is_401(jwt_gateway):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(openai.AuthenticationError):
        _client(jwt_gateway, pyjwt.encode(_claims(), other, algorithm="ES256")).models.list()
    with pytest.raises(openai.AuthenticationError):
        _client(jwt_gateway, pyjwt.encode(_claims(), "x" * 40, algorithm="HS256")).models.list()


def test_missing_secret_refuses_to_start(e2e_tmp, mock):
    tmp = e2e_tmp / "jwt-missing"
    tmp.mkdir()
    config = mock_config(mock.url, auth={"jwt": {"hs256_secret_env": "SW_UNSET_SECRET_XYZ"}})
    with pytest.raises(RuntimeError) as exc:
        start_gateway(tmp, config)
    assert "SW_UNSET_SECRET_XYZ" in str(exc.value)
