"""Init container of the API pods: wait until the database schema has reached this image's head.

The release's migration Job (`bee-customers migrate`) changes the schema; new replicas must not
serve before it has. This never migrates: it reads `alembic_version` and compares it with the
revisions this image ships. A revision this image does not know is newer than its head (a later
release already migrated), so an older pod restarting mid-rollout starts too.
"""

import asyncio
import sys
import time

import asyncpg
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from bee_customers_service.cli import alembic_config
from bee_customers_service.core.config import get_settings

POLL_SECONDS = 2.0


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def database_revisions(url: str) -> set[str]:
    """The revisions recorded in `alembic_version` (empty before the first migration)."""
    connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
    try:
        rows = await connection.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await connection.close()
    return {row["version_num"] for row in rows}


def schema_is_current(revisions: set[str], script: ScriptDirectory) -> bool:
    """Whether a database at `revisions` is at this image's head or past it."""
    known = {revision.revision for revision in script.walk_revisions()}
    heads = set(script.get_heads())
    return bool(revisions) and all(revision in heads or revision not in known for revision in revisions)


def main() -> int:
    url = get_settings().database_url
    if not url:
        print("wait-for-schema: BEE_DATABASE_URL is not set", file=sys.stderr)
        return 2
    script = ScriptDirectory.from_config(alembic_config(url))
    while True:
        try:
            revisions = asyncio.run(database_revisions(url))
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            print(f"wait-for-schema: database not reachable ({type(exc).__name__})", flush=True)
        else:
            if schema_is_current(revisions, script):
                print(f"wait-for-schema: schema at {', '.join(sorted(revisions))}", flush=True)
                return 0
            print(f"wait-for-schema: waiting for the migration Job (database at {sorted(revisions)})", flush=True)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
