"""JWT verification: pinned algorithms, signatures, expiry, audience/issuer, skew, JWKS rotation."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bee_customers_service.app import create_app
from bee_customers_service.core.errors import Unauthorized
from bee_customers_service.core.security import TokenVerifier
from tests.conftest import JWT_SECRET, client_for, make_settings, running_app
from tests.services import free_port

SUB = uuid.uuid4()


def claims(**overrides):
    now = int(time.time())
    values = {"sub": str(SUB), "roles": ["service"], "business_ids": [], "iat": now, "exp": now + 300}
    values.update(overrides)
    return values


def hs_settings(**overrides):
    return make_settings("postgresql+asyncpg://unused@127.0.0.1:1/none", **overrides)


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_valid_hs256_token_gives_the_principal():
    token = jwt.encode(claims(roles=["admin_business", "bogus"], business_ids=[str(SUB)]), JWT_SECRET, "HS256")
    principal = await TokenVerifier(hs_settings()).verify(token)
    assert principal.user_id == SUB
    assert principal.roles == frozenset({"admin_business"})  # unknown roles are dropped
    assert principal.is_admin_of(SUB)


def _unsigned(payload: dict) -> str:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbled"),
        pytest.param("a.b.c", id="three-garbled-parts"),
        pytest.param(_unsigned(claims()), id="alg-none"),
        pytest.param(jwt.encode(claims(), "another-secret-0123456789abcdef0123456789", "HS256"), id="wrong-key"),
        pytest.param(jwt.encode(claims(exp=int(time.time()) - 3600), JWT_SECRET, "HS256"), id="expired"),
        pytest.param(jwt.encode({k: v for k, v in claims().items() if k != "exp"}, JWT_SECRET, "HS256"), id="no-exp"),
        pytest.param(jwt.encode({k: v for k, v in claims().items() if k != "sub"}, JWT_SECRET, "HS256"), id="no-sub"),
        pytest.param(jwt.encode(claims(sub="not-a-uuid"), JWT_SECRET, "HS256"), id="sub-not-uuid"),
        pytest.param(jwt.encode(claims(roles={"a": 1}), JWT_SECRET, "HS256"), id="roles-malformed"),
        pytest.param(jwt.encode(claims(), JWT_SECRET, "HS512"), id="unpinned-algorithm"),
        pytest.param(jwt.encode(claims(nbf=int(time.time()) + 3600), JWT_SECRET, "HS256"), id="not-yet-valid"),
    ],
)
async def test_bad_tokens_are_rejected(token):
    with pytest.raises(Unauthorized):
        await TokenVerifier(hs_settings()).verify(token)


async def test_small_clock_skew_is_allowed_but_not_more():
    verifier = TokenVerifier(hs_settings(jwt_leeway_seconds=30))
    just_expired = jwt.encode(claims(exp=int(time.time()) - 10), JWT_SECRET, "HS256")
    assert (await verifier.verify(just_expired)).user_id == SUB
    issued_slightly_ahead = jwt.encode(claims(iat=int(time.time()) + 10, nbf=int(time.time()) + 10), JWT_SECRET)
    assert (await verifier.verify(issued_slightly_ahead)).user_id == SUB
    long_expired = jwt.encode(claims(exp=int(time.time()) - 120), JWT_SECRET, "HS256")
    with pytest.raises(Unauthorized):
        await verifier.verify(long_expired)


async def test_audience_and_issuer_are_checked_when_configured():
    verifier = TokenVerifier(hs_settings(jwt_audience="bee-customers", jwt_issuer="https://auth.bee"))
    good = jwt.encode(claims(aud="bee-customers", iss="https://auth.bee"), JWT_SECRET, "HS256")
    assert (await verifier.verify(good)).user_id == SUB
    for bad in (
        claims(aud="bee-orders", iss="https://auth.bee"),
        claims(aud="bee-customers", iss="https://evil"),
        claims(iss="https://auth.bee"),
    ):
        with pytest.raises(Unauthorized):
            await verifier.verify(jwt.encode(bad, JWT_SECRET, "HS256"))


async def test_rs256_public_key_and_no_algorithm_confusion():
    private_key = rsa_key()
    pem = public_pem(private_key)
    verifier = TokenVerifier(hs_settings(jwt_public_key=pem, jwt_algorithms=["RS256"]))
    assert (await verifier.verify(jwt.encode(claims(), private_key, "RS256"))).user_id == SUB

    # The classic confusion attack: HS256 "signed" with the public key as the HMAC secret.
    # PyJWT refuses to sign with a PEM as an HMAC key, so the token is built by hand.
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims()).encode())
    signature = b64(hmac.new(pem.encode(), signing_input, hashlib.sha256).digest())
    with pytest.raises(Unauthorized):
        await verifier.verify((signing_input + b"." + signature).decode())
    with pytest.raises(Unauthorized):
        await verifier.verify(jwt.encode(claims(), rsa_key(), "RS256"))  # another key pair


async def test_es256_public_key():
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(hs_settings(jwt_public_key=pem, jwt_algorithms=["ES256"]))
    assert (await verifier.verify(jwt.encode(claims(), private_key, "ES256"))).user_id == SUB


class _JwksServer:
    """A local JWKS endpoint whose key set the test can rotate; counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def publish(self, kid: str, private_key) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        self.keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})

    def close(self) -> None:
        self.server.shutdown()


async def test_jwks_keys_are_cached_and_refetched_on_rotation():
    jwks = _JwksServer()
    try:
        first, second = rsa_key(), rsa_key()
        jwks.publish("k1", first)
        verifier = TokenVerifier(
            hs_settings(jwt_jwks_url=jwks.url, jwt_algorithms=["RS256"], jwt_jwks_refresh_cooldown_seconds=0)
        )

        token1 = jwt.encode(claims(), first, "RS256", headers={"kid": "k1"})
        assert (await verifier.verify(token1)).user_id == SUB
        assert (await verifier.verify(token1)).user_id == SUB
        assert jwks.fetches == 1  # cached

        jwks.publish("k2", second)  # the auth service rotates in a new key
        token2 = jwt.encode(claims(), second, "RS256", headers={"kid": "k2"})
        assert (await verifier.verify(token2)).user_id == SUB
        assert jwks.fetches == 2  # one refetch for the unknown kid

        unknown = jwt.encode(claims(), rsa_key(), "RS256", headers={"kid": "k3"})
        with pytest.raises(Unauthorized):
            await verifier.verify(unknown)
    finally:
        jwks.close()


async def test_openapi_documents_the_bearer_scheme():
    app = create_app(hs_settings())
    schema = app.openapi()
    scheme = schema["components"]["securitySchemes"]["BearerJWT"]
    assert (
        scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
        or scheme["scheme"] == "bearer"
    )
    operation = schema["paths"]["/customers/{customer_id}"]["get"]
    assert {"BearerJWT": []} in operation["security"]
    assert "security" not in schema["paths"]["/healthcheck"]["get"]


async def test_401_carries_www_authenticate_and_403_for_wrong_role(database_url):
    app = create_app(make_settings(database_url))
    async with running_app(app), client_for(app) as http:
        missing = await http.post("/customers", json={})
        token = jwt.encode(claims(roles=["customer"]), JWT_SECRET, "HS256")
        wrong_role = await http.post("/customers", json={}, headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong_role.status_code == 403


def test_token_command_mints_a_verifiable_token(capsys, monkeypatch):
    from bee_customers_service.cli import main
    from bee_customers_service.core.config import get_settings

    business = uuid.uuid4()
    monkeypatch.setenv("BEE_JWT_SECRET", JWT_SECRET)
    get_settings.cache_clear()
    try:
        assert (
            main(["token", "--sub", str(SUB), "--role", "admin_business", "--business", str(business), "--ttl", "60"])
            == 0
        )
    finally:
        get_settings.cache_clear()
    token = capsys.readouterr().out.strip()
    decoded = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert decoded["sub"] == str(SUB)
    assert decoded["roles"] == ["admin_business"]
    assert decoded["business_ids"] == [str(business)]
    assert decoded["exp"] - decoded["iat"] == 60


async def test_a_remembered_token_still_expires():
    from freezegun import freeze_time

    verifier = TokenVerifier(hs_settings(jwt_leeway_seconds=0))
    now = int(time.time())
    token = jwt.encode(claims(iat=now, exp=now + 60), JWT_SECRET, "HS256")
    assert (await verifier.verify(token)).user_id == SUB
    assert (await verifier.verify(token)).user_id == SUB  # remembered
    with freeze_time(datetime.fromtimestamp(now + 120, UTC)), pytest.raises(Unauthorized):
        await verifier.verify(token)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):  # a failure is never remembered as a success
        with pytest.raises(Unauthorized):
            await verifier.verify(forged)
