"""The `bee-customers` command: serve | migrate | relay | consume | recompute | refresh-segments | token | seed |
gdpr-cleanup."""

import argparse
import ipaddress
import os
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bee_customers_service.core.config import DEV_JWT_SECRET, Settings, get_settings

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def run_migrations(database_url: str, revision: str = "head", *, downgrade: bool = False) -> None:
    """Upgrade (or downgrade) the schema at `database_url`."""
    from alembic import command

    config = alembic_config(database_url)
    if downgrade:
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)


def _migrate(args: argparse.Namespace) -> int:
    from bee_customers_service.core.db import resolve_database_url

    url = resolve_database_url(get_settings())
    run_migrations(url, args.revision, downgrade=args.downgrade)
    print(f"migrated {'down' if args.downgrade else 'up'} to {args.revision}")
    return 0


def run_worker(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived worker (relay, consumer) on uvloop, as `serve` runs the API: the event
    loop's own per-callback cost is a large part of the consumer's CPU per message."""
    if sys.platform == "win32":  # pragma: no cover - uvloop does not exist there
        import asyncio

        return asyncio.run(main)
    import uvloop

    return uvloop.run(main)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the server to this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def refuse_public_dev_secret(settings: Settings, host: str) -> str | None:
    """Why `serve` must not listen on `host` with these settings, or None when it may.

    The development JWT secret is in this repository: anyone who can reach the port could mint
    themselves any role. It is only good enough for a server nobody else can reach.
    """
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if secret != DEV_JWT_SECRET or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host}: the built-in development JWT secret is in use, and anyone who "
        "can reach this address could sign their own tokens. Set BEE_JWT_SECRET (or BEE_JWT_PUBLIC_KEY / "
        "BEE_JWT_JWKS_URL), or listen on 127.0.0.1 (the default)."
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bee_customers_service.core.db import resolve_database_url

    settings = get_settings()
    host = args.host or settings.host
    if refusal := refuse_public_dev_secret(settings, host):
        print(f"bee-customers serve: {refusal}", file=sys.stderr)
        return 2
    if settings.uses_embedded_database:
        # Start the embedded PostgreSQL once, here, and hand its URL to the server (and to every
        # worker process) through the environment; it stops when this process exits.
        os.environ["BEE_DATABASE_URL"] = resolve_database_url(settings)
        get_settings.cache_clear()
    # uvicorn re-raises SIGTERM/SIGINT once its graceful shutdown is done; as SystemExit (rather
    # than the default "terminate now") the atexit hooks run, which stop the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    uvicorn.run(
        "bee_customers_service.app:create_app",
        factory=True,
        host=host,
        port=args.port or settings.port,
        workers=args.workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=args.access_log,
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=None,  # our structlog JSON set-up owns logging
    )
    return 0


def _relay(args: argparse.Namespace) -> int:

    from bee_customers_service.core.db import resolve_database_url
    from bee_customers_service.core.observability import configure_logging
    from bee_customers_service.events.relay import run_standalone

    settings = get_settings()
    configure_logging(settings)
    run_worker(run_standalone(settings, resolve_database_url(settings)))
    return 0


def _token(args: argparse.Namespace) -> int:
    from bee_customers_service.core.security import mint_token

    token = mint_token(
        get_settings(),
        sub=args.sub or uuid.uuid4(),
        roles=args.role,
        business_ids=args.business,
        ttl_seconds=args.ttl,
    )
    print(token)
    return 0


def _gdpr_cleanup(args: argparse.Namespace) -> int:
    """Delete the stored objects of erasures whose object deletion failed (e.g. storage was down)."""
    import asyncio

    from bee_customers_service.avatars.storage import storage_from_settings
    from bee_customers_service.core.db import Database, resolve_database_url
    from bee_customers_service.gdpr import service as gdpr_service

    async def run() -> int:
        settings = get_settings()
        database = Database(resolve_database_url(settings), settings)
        try:
            waiting = await gdpr_service.retry_pending_objects(
                database.sessionmaker, storage=storage_from_settings(settings)
            )
        finally:
            await database.dispose()
        print(f"erasure records still waiting for object deletion: {waiting}")
        return 1 if waiting else 0

    return asyncio.run(run())


def _consume(args: argparse.Namespace) -> int:
    """Run the activity and identity (bee_auth_service's user events) consumers until SIGTERM/SIGINT."""
    import asyncio

    from bee_customers_service.activity.consumer import ActivityConsumer
    from bee_customers_service.avatars.storage import storage_from_settings
    from bee_customers_service.core.db import Database, resolve_database_url
    from bee_customers_service.core.observability import configure_logging
    from bee_customers_service.events.consumer import QueueConsumer, run_until_stopped
    from bee_customers_service.identity.consumer import IdentityConsumer

    settings = get_settings()
    if not settings.rabbitmq_url:
        print("BEE_RABBITMQ_URL is not set: there is no broker to consume from", file=sys.stderr)
        return 2
    configure_logging(settings)

    async def run() -> None:
        database = Database(resolve_database_url(settings), settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # Both, whatever BEE_*_CONSUMER_ENABLED say (those switch off the ones inside `serve`).
        consumers: list[QueueConsumer[Any]] = [
            ActivityConsumer(settings, database),
            IdentityConsumer(settings, database, storage_from_settings(settings)),
        ]
        try:
            await asyncio.gather(*(run_until_stopped(consumer, stop) for consumer in consumers))
        finally:
            await database.dispose()

    run_worker(run())
    return 0


def _recompute(args: argparse.Namespace) -> int:
    """Rebuild the aggregates of every customer of a business from its activity rows."""
    import asyncio

    from bee_customers_service.activity.segments import refresh_segments
    from bee_customers_service.activity.service import recompute_business
    from bee_customers_service.core.db import Database, resolve_database_url

    settings = get_settings()

    async def run() -> int:
        database = Database(resolve_database_url(settings), settings)
        try:
            count = await recompute_business(database.sessionmaker, args.business)
            # The stored segments follow the rebuilt aggregates (docs/events.md "RFM scores and segments").
            await refresh_segments(
                database.sessionmaker, business_id=args.business, window_months=settings.stats_window_months
            )
            return count
        finally:
            await database.dispose()

    count = asyncio.run(run())
    print(f"recomputed {count} customers of business {args.business}")
    return 0


def _refresh_segments(args: argparse.Namespace) -> int:
    """Recompute the stored RFM segment of one business's customers, or of every business's."""
    import asyncio

    from bee_customers_service.activity.segments import refresh_segments
    from bee_customers_service.core.db import Database, resolve_database_url

    settings = get_settings()

    async def run() -> Any:
        database = Database(resolve_database_url(settings), settings)
        try:
            return await refresh_segments(
                database.sessionmaker, business_id=args.business, window_months=settings.stats_window_months
            )
        finally:
            await database.dispose()

    done = asyncio.run(run())
    print(
        f"refreshed the segments of {done.customers} customers in {done.businesses} businesses: {done.changed} changed"
    )
    return 0


def _seed(args: argparse.Namespace) -> int:
    import asyncio

    from bee_customers_service import seed
    from bee_customers_service.core.db import resolve_database_url

    url = resolve_database_url(get_settings())
    plan = [(args.business or uuid.uuid4(), args.customers)] if args.customers else []
    plan += [(uuid.uuid4(), args.per_business) for _ in range(args.businesses)]
    results = asyncio.run(
        seed.seed(
            url,
            businesses=plan,
            rebuild_indexes=args.rebuild_indexes,
            progress=lambda line: print(line, file=sys.stderr),
        )
    )
    for result in results:
        print(f"{result.business_id} {result.customers}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bee-customers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API (and the outbox relay)")
    serve.add_argument("--host", help="address to listen on (default BEE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    # Off by default: the app logs one structured line per request (with trace and request ids).
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False)
    serve.add_argument("--graceful-timeout", type=int, default=20)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--downgrade", action="store_true", help="downgrade to REVISION (e.g. base)")
    migrate.set_defaults(handler=_migrate)

    relay = commands.add_parser("relay", help="publish the outbox to RabbitMQ (standalone; serve runs one too)")
    relay.set_defaults(handler=_relay)

    token = commands.add_parser("token", help="mint a development JWT signed with BEE_JWT_SECRET")
    token.add_argument("--sub", type=uuid.UUID, help="the user id (random when omitted)")
    token.add_argument("--role", action="append", default=[], help="repeatable: customer, admin_business, ...")
    token.add_argument("--business", type=uuid.UUID, action="append", default=[], help="repeatable business id")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(handler=_token)
    cleanup = commands.add_parser("gdpr-cleanup", help="retry deleting objects of erased customers (cron)")
    cleanup.set_defaults(handler=_gdpr_cleanup)

    consume = commands.add_parser(
        "consume", help="consume the orders and scheduling events (history, statistics) and the auth user events"
    )
    consume.set_defaults(handler=_consume)

    recompute = commands.add_parser("recompute", help="rebuild the statistics of a business from its activity rows")
    recompute.add_argument("--business", type=uuid.UUID, required=True, help="the business id")
    recompute.set_defaults(handler=_recompute)

    refresh = commands.add_parser(
        "refresh-segments", help="recompute the stored RFM segments (serve does it periodically)"
    )
    refresh.add_argument("--business", type=uuid.UUID, help="only this business (default: every business)")
    refresh.set_defaults(handler=_refresh_segments)

    seed = commands.add_parser("seed", help="generate synthetic customers (with tags) for benchmarks and demos")
    seed.add_argument("--customers", type=int, default=0, help="customers for one business (--business or new)")
    seed.add_argument("--business", type=uuid.UUID, help="the business to grow (random when omitted)")
    seed.add_argument("--businesses", type=int, default=0, help="this many more businesses ...")
    seed.add_argument("--per-business", type=int, default=10_000, help="... of this many customers each")
    seed.add_argument(
        "--rebuild-indexes",
        action="store_true",
        help="drop secondary indexes during the load and rebuild them after (fast; only for a database nobody uses)",
    )
    seed.set_defaults(handler=_seed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
