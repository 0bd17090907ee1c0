"""Bearer-token authentication and the access rules every endpoint is protected by.

Tokens are JWTs issued by bee_auth_service. Keys are parsed once at start-up (never per request);
the accepted algorithms are pinned by the kind of key configured, so a token cannot choose its own
verification (no `alg: none`, no HS256 signed with a public key).

Claims: `sub` = user id, `roles` = customer | admin_business | admin_manager | service,
`business_ids` = the businesses an admin administers.
"""

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import Forbidden, Unauthorized

ROLE_CUSTOMER = "customer"
ROLE_SERVICE = "service"
ADMIN_ROLES = frozenset({"admin_business", "admin_manager"})
KNOWN_ROLES = ADMIN_ROLES | {ROLE_CUSTOMER, ROLE_SERVICE}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the verified token says."""

    user_id: uuid.UUID
    roles: frozenset[str]
    business_ids: frozenset[uuid.UUID]

    @property
    def is_service(self) -> bool:
        return ROLE_SERVICE in self.roles

    @property
    def is_admin(self) -> bool:
        return not ADMIN_ROLES.isdisjoint(self.roles)

    @property
    def is_customer(self) -> bool:
        return ROLE_CUSTOMER in self.roles

    def is_admin_of(self, business_id: uuid.UUID) -> bool:
        return self.is_admin and business_id in self.business_ids


@dataclass(frozen=True, slots=True)
class CustomerScope:
    """The customer rows a caller may reach; repositories turn it into a WHERE clause."""

    admin_of: frozenset[uuid.UUID]  # the businesses it administers
    own_user_id: uuid.UUID | None = None  # a customer reaches its own profiles

    @classmethod
    def self_or_admin(cls, principal: Principal) -> "CustomerScope":
        return cls(
            admin_of=principal.business_ids if principal.is_admin else frozenset(),
            own_user_id=principal.user_id if principal.is_customer else None,
        )

    @classmethod
    def admin(cls, principal: Principal) -> "CustomerScope":
        return cls(admin_of=principal.business_ids if principal.is_admin else frozenset())

    def is_admin_of(self, business_id: uuid.UUID) -> bool:
        return business_id in self.admin_of


VERIFIED_CACHE_SIZE = 10_000


class TokenVerifier:
    """Verifies bearer tokens with the keys configured in Settings, parsed once.

    A verified token is remembered (bounded LRU) until its `exp` (+ leeway): a dashboard sends the
    same token on every request, and re-checking an unchanged signature costs more than the rest of
    a cached read. Nothing is cached for a token that fails.
    """

    def __init__(self, settings: Settings) -> None:
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._leeway = settings.jwt_leeway_seconds
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._jwks: jwt.PyJWKClient | None = None
        self._key: Any = None
        if settings.jwt_jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url,
                cache_keys=True,
                lifespan=settings.jwt_jwks_cache_seconds,
                timeout=5,
                cooldown_duration=settings.jwt_jwks_refresh_cooldown_seconds,
            )
            self._algorithms = list(settings.jwt_algorithms)
        elif settings.jwt_public_key:
            pem = settings.jwt_public_key.replace("\\n", "\n").encode()
            # Parse the PEM once; the algorithm family must match the key type.
            self._key = jwt.algorithms.get_default_algorithms()[settings.jwt_algorithms[0]].prepare_key(pem)
            self._algorithms = list(settings.jwt_algorithms)
        elif settings.jwt_secret is not None:
            self._key = settings.jwt_secret.get_secret_value()
            self._algorithms = ["HS256"]
        else:
            raise ValueError("configure BEE_JWT_SECRET, BEE_JWT_PUBLIC_KEY or BEE_JWT_JWKS_URL")

    async def _signing_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        # PyJWKClient caches the key set and refetches it once when it meets an unknown `kid`
        # (key rotation). Fetching is blocking I/O, so it runs off the event loop.
        jwk = await anyio.to_thread.run_sync(self._jwks.get_signing_key_from_jwt, token)
        return jwk.key

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[1]:
                self._verified.move_to_end(token)
                return cached[0]
            del self._verified[token]
        principal, expires_at = await self._decode(token)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            key = await self._signing_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                leeway=self._leeway,
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The token has expired.") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise Unauthorized("The token is not valid.") from exc
        return principal_from_claims(claims), float(claims["exp"]) + self._leeway


def _uuids(values: Iterable[Any]) -> frozenset[uuid.UUID]:
    return frozenset(uuid.UUID(str(v)) for v in values)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    roles = claims.get("roles", [])
    business_ids = claims.get("business_ids", [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not isinstance(business_ids, list):
        raise Unauthorized("The token's roles or business_ids claim is malformed.")
    try:
        return Principal(
            user_id=uuid.UUID(str(claims["sub"])),
            roles=frozenset(str(r) for r in roles) & KNOWN_ROLES,
            business_ids=_uuids(business_ids),
        )
    except ValueError as exc:
        raise Unauthorized("The token's sub or business_ids are not UUIDs.") from exc


def mint_token(
    settings: Settings,
    *,
    sub: uuid.UUID,
    roles: Iterable[str],
    business_ids: Iterable[uuid.UUID] = (),
    ttl_seconds: int = 3600,
    now: int | None = None,
) -> str:
    """A development token signed with BEE_JWT_SECRET (`bee-customers token`, tests)."""
    if settings.jwt_secret is None:
        raise ValueError("minting needs BEE_JWT_SECRET")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": str(sub),
        "roles": list(roles),
        "business_ids": [str(b) for b in business_ids],
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerJWT",
    description="A JWT issued by bee_auth_service: `Authorization: Bearer <token>`.",
)


async def get_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> Principal:
    """The verified caller; 401 with `WWW-Authenticate: Bearer` when the token is missing or bad."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("A bearer token is required.")
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(credentials.credentials)


async def require_service(principal: Principal = Depends(get_principal)) -> Principal:
    """Only internal services (role `service`)."""
    if not principal.is_service:
        raise Forbidden("This endpoint is for internal services.")
    return principal


async def require_admin_role(principal: Principal = Depends(get_principal)) -> Principal:
    """Any admin (admin_business / admin_manager); the business is checked against the object."""
    if not principal.is_admin:
        raise Forbidden("This endpoint is for business administrators.")
    return principal


async def require_customer_or_admin_role(principal: Principal = Depends(get_principal)) -> Principal:
    """A caller who could be the customer themselves or an admin; others are refused up front."""
    if not (principal.is_customer or principal.is_admin):
        raise Forbidden("This endpoint is for the customer themselves or business administrators.")
    return principal


async def require_self_or_service(user_id: uuid.UUID, principal: Principal = Depends(get_principal)) -> Principal:
    """The user named by the path themselves, or an internal service (user-level GDPR requests)."""
    if principal.is_service:
        return principal
    if principal.is_customer and principal.user_id == user_id:
        return principal
    raise Forbidden("Only the user themselves or an internal service may do this.")


def require_admin_of(principal: Principal, business_id: uuid.UUID) -> None:
    """The admin administers `business_id` (403: the business is named by the caller, not found by us)."""
    if business_id not in principal.business_ids:
        raise Forbidden("You do not administer this business.")


# The callers a route admits, by role. Rules about one object (a customer, a record) build on these
# in each domain's dependencies.py and scope their query with a WHERE, so a row out of reach is a 404.
ServiceCaller = Annotated[Principal, Depends(require_service)]
AdminCaller = Annotated[Principal, Depends(require_admin_role)]
CustomerOrAdminCaller = Annotated[Principal, Depends(require_customer_or_admin_role)]
SelfOrService = Annotated[Principal, Depends(require_self_or_service)]
