"""Rate limits: counters in Redis (shared by every replica) or in memory, 429 as problem+json.

Built on `limits`, the engine behind slowapi. slowapi's decorators drive the synchronous `limits`
storages (a blocking Redis round trip on the event loop) and answer 429 in their own format, so
we use the same engine through its asyncio API and raise `RateLimited`, a `DomainError`: the 429
goes through our problem+json handler with `Retry-After`. slowapi's `get_remote_address` gives
the per-IP key.

One `RateLimiter` per app (`app.state.rate_limiter`). Reuse it for any limit:

    # per object, as a dependency declared AFTER the one that authorizes the caller
    Depends(rate_limit("customer-patch", lambda s: s.patch_rate_limit, key=path_param("customer_id")))
    # a global per-IP guard (core/middleware.py does this for BEE_IP_RATE_LIMIT)
    await request.app.state.rate_limiter.hit("ip", "300/minute", client_ip(request))

Limits use the moving-window strategy (no burst of 2x the limit at a window boundary).
A rate-limit store that does not answer lets the request through and logs a warning: an outage of
Redis must not take the API down with it.
"""

import math
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache

import structlog
from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from slowapi.util import get_remote_address

from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import DomainError
from bee_customers_service.core.metrics import RATE_LIMITED

log = structlog.get_logger(__name__)

# A rate-limit check must never hold a request for long: fail open quickly when Redis is slow.
REDIS_TIMEOUT_SECONDS = 0.5


class RateLimited(DomainError):
    status, type_slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.headers = {"Retry-After": str(retry_after)}


@lru_cache(maxsize=256)
def parse_limit(limit: str) -> RateLimitItem:
    """`"10/hour"`, `"2 per minute"`, ... (the `limits` notation); ValueError when malformed."""
    return parse(limit)


class RateLimiter:
    """Counts hits per (scope, key) and refuses those over the limit with `RateLimited`."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.ratelimit_enabled
        self._pool = None
        if settings.redis_url:
            import redis.asyncio

            # Our own pool, so shutdown can close it (`close()`), with short timeouts.
            self._pool = redis.asyncio.ConnectionPool.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            storage = storage_from_string(
                "async+" + settings.redis_url,
                implementation="redispy",
                connection_pool=self._pool,  # type: ignore[arg-type]  # limits types options as scalars
                key_prefix=settings.ratelimit_key_prefix,
                wrap_exceptions=True,
            )
            self.backend = "redis"
        else:
            storage = storage_from_string("async+memory://", wrap_exceptions=True)
            self.backend = "memory"
        self._strategy = MovingWindowRateLimiter(storage)

    async def hit(self, scope: str, limit: str | RateLimitItem, *key: str) -> None:
        """Count one hit for `key` within `scope`; `RateLimited` (429) when over `limit`."""
        if not self.enabled:
            return
        item = parse_limit(limit) if isinstance(limit, str) else limit
        try:
            if await self._strategy.hit(item, scope, *key):
                return
            stats = await self._strategy.get_window_stats(item, scope, *key)
        except (StorageError, OSError, TimeoutError) as exc:
            log.warning("rate_limit_store_unavailable", scope=scope, backend=self.backend, error=type(exc).__name__)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        RATE_LIMITED.labels(limit=scope).inc()
        raise RateLimited(f"Limit of {item} reached; retry in {retry_after} seconds.", retry_after=retry_after)

    async def clear(self, scope: str, limit: str | RateLimitItem, *key: str) -> None:
        """Forget the hits of `key` (an admin reset; tests)."""
        item = parse_limit(limit) if isinstance(limit, str) else limit
        await self._strategy.clear(item, scope, *key)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def path_param(name: str) -> Callable[[Request], str]:
    """Key a limit by a path parameter (e.g. the customer id)."""

    def key(request: Request) -> str:
        return str(request.path_params[name])

    return key


def client_ip(request: Request) -> str:
    """Key a limit by the client address (behind a proxy, run uvicorn with --proxy-headers)."""
    return get_remote_address(request)


def rate_limit(
    scope: str, limit: Callable[[Settings], str], *, key: Callable[[Request], str]
) -> Callable[[Request], Awaitable[None]]:
    """A dependency that counts the request against `limit(settings)` for `key(request)`."""

    async def dependency(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        await limiter.hit(scope, limit(request.app.state.settings), key(request))

    return dependency
