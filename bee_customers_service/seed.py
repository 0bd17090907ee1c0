"""Fast synthetic data for benchmarks and demos: customers (with tags) generated inside PostgreSQL.

One `INSERT ... SELECT FROM generate_series` per chunk (no row-by-row round trips, no HTTP): about
a million customers a minute on a small machine, search columns and indexes maintained as in
production. Names are realistic Romanian and English ones (with diacritics), skewed so some are
common and most are rare; emails follow the names; phones are E.164 (mostly Romanian mobiles);
each customer carries 0-5 tags from a small vocabulary; statistics and dates are spread out.

Used by `bee-customers seed` and the scripts in bench/.
"""

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

FIRST_NAMES_FEMALE = [
    "Ana", "Maria", "Elena", "Ioana", "Andreea", "Mihaela", "Alexandra", "Cristina", "Gabriela", "Daniela",
    "Raluca", "Irina", "Bianca", "Roxana", "Alina", "Larisa", "Ștefania", "Mădălina", "Cătălina", "Oana",
    "Simona", "Diana", "Corina", "Loredana", "Anca", "Teodora", "Sânziana", "Iuliana", "Claudia", "Adriana",
    "Emma", "Olivia", "Sophie", "Charlotte", "Amelia", "Grace", "Chloe", "Hannah", "Emily", "Jessica",
]  # fmt: skip
FIRST_NAMES_MALE = [
    "Andrei", "Alexandru", "Ion", "Mihai", "Ștefan", "Gheorghe", "Vasile", "Constantin", "Nicolae", "Dumitru",
    "Cristian", "Florin", "Răzvan", "Bogdan", "Tudor", "Radu", "Ionuț", "Cătălin", "Sorin", "Marius",
    "Adrian", "Dragoș", "Costel", "Lucian", "Ovidiu", "Petru", "Silviu", "Traian", "Horațiu", "Octavian",
    "James", "Oliver", "Harry", "George", "Jack", "Thomas", "William", "Daniel", "Samuel", "Joseph",
]  # fmt: skip
LAST_NAMES = [
    "Popescu", "Ionescu", "Popa", "Pop", "Radu", "Dumitru", "Stan", "Stoica", "Gheorghe", "Matei",
    "Ciobanu", "Constantin", "Mocanu", "Barbu", "Ștefănescu", "Munteanu", "Lungu", "Marin", "Tudor", "Dobre",
    "Ene", "Florea", "Nistor", "Toma", "Moldovan", "Sârbu", "Căpraru", "Țurcanu", "Bălan", "Neagu",
    "Oprea", "Dinu", "Vlad", "Preda", "Ursu", "Voicu", "Rusu", "Cristea", "Lazăr", "Mihăilescu",
    "Diaconu", "Anghel", "Iordache", "Năstase", "Bratu", "Pîrvu", "Surdu", "Vâlcu", "Șerban", "Tănase",
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke",
]  # fmt: skip
EMAIL_DOMAINS = ["gmail.com", "yahoo.com", "yahoo.ro", "outlook.com", "icloud.com", "mail.ro", "firma.ro", "proton.me"]
TAG_LABELS = [
    "VIP", "Frequent", "New", "Prefers mornings", "Prefers Monday", "Late payer", "No-show", "Subscription",
    "Birthday club", "Referral", "Corporate", "Student", "Senior", "Allergies", "Card only", "Cash only",
]  # fmt: skip
TAG_STEP = 5  # coprime with len(TAG_LABELS): base + k*step visits distinct labels for k < 16

DEFAULT_CHUNK = 100_000

# $1 business_id, $2 first index, $3 last index, $4 admin user id (tags' created_by). Random
# choices are skewed (power of random()) so a few names are common and most are rare.
_INSERT = """
WITH names AS (
    SELECT $5::text[] AS female, $6::text[] AS male, $7::text[] AS last, $8::text[] AS domains, $9::text[] AS tags
), raw AS (
    SELECT g,
           random() < 0.5 AS is_female,
           floor(power(random(), 1.3) * 40)::int + 1 AS fi,
           floor(power(random(), 1.3) * cardinality(names.last))::int + 1 AS li,
           floor(random() * cardinality(names.domains))::int + 1 AS di,
           random() AS pr, random() AS orr, random() AS vr, random() AS cr, random() AS lr,
           names.*
    FROM generate_series($2::bigint, $3::bigint) AS g, names
), people AS (
    SELECT raw.*,
           CASE WHEN is_female THEN female[fi] ELSE male[fi] END AS first,
           last[li] AS surname,
           floor(power(orr, 2.2) * 60)::int AS orders
    FROM raw
), new_customers AS (
    INSERT INTO customers (id, user_id, business_id, full_name, email, phone, gender, total_orders,
                           lifetime_value, lifetime_value_currency, last_order_date, created_at, updated_at)
    SELECT md5($1::uuid::text || ':' || g)::uuid, gen_random_uuid(), $1::uuid,
           first || ' ' || surname,
           lower(public.bee_unaccent(first)) || '.' || lower(public.bee_unaccent(surname))
               || g::text || '@' || domains[di],
           CASE WHEN pr < 0.85 THEN '+407' || lpad(floor(random() * 100000000)::bigint::text, 8, '0')
                WHEN pr < 0.95 THEN '+447' || lpad(floor(random() * 1000000000)::bigint::text, 9, '0')
                ELSE NULL END,
           (CASE WHEN pr < 0.02 THEN 'other' WHEN pr > 0.97 THEN NULL
                 WHEN is_female THEN 'female' ELSE 'male' END)::gender_enum,
           orders,
           round((orders * (15 + vr * 185))::numeric, 2),
           CASE WHEN orders = 0 THEN NULL ELSE 'RON' END,
           CASE WHEN orders = 0 THEN NULL ELSE current_date - floor(lr * 900)::int END,
           now() - cr * interval '1095 days',
           now() - cr * interval '1095 days'
    FROM people
    RETURNING id, business_id, created_at, total_orders, lifetime_value
), spend AS (
    -- Every seeded spender paid in RON: their one customer_spend row matches the profile's value.
    INSERT INTO customer_spend (customer_id, business_id, currency, orders, lifetime_value)
    SELECT id, business_id, 'RON', total_orders, lifetime_value FROM new_customers WHERE total_orders > 0
)
INSERT INTO customer_tags (id, customer_id, business_id, label, created_by, created_at)
SELECT gen_random_uuid(), c.id, c.business_id,
       (SELECT tags FROM names)[1 + (abs(hashtext(c.id::text)) + k * {step}) % {labels}],
       $4::uuid, c.created_at
FROM new_customers AS c
CROSS JOIN LATERAL generate_series(1, abs(hashtext(c.id::text || '#')) % 6) AS k
"""


@dataclass(frozen=True)
class SeedResult:
    business_id: uuid.UUID
    customers: int
    seconds: float


def seeded_customer_id(business_id: uuid.UUID, number: int) -> uuid.UUID:
    """The id the seeder gives customer `number` (1-based) of a business: md5("business:number").

    Deterministic, so load generators and pgbench scripts can address seeded customers without
    reading them back (`md5('<business>:' || n)::uuid` in SQL).
    """
    return uuid.UUID(hashlib.md5(f"{business_id}:{number}".encode()).hexdigest())  # noqa: S324 (an id, not a hash of secrets)


def _dsn(url: str) -> str:
    """asyncpg wants plain postgresql:// (SQLAlchemy URLs carry +asyncpg)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def seed_business(
    connection: asyncpg.Connection,
    business_id: uuid.UUID,
    count: int,
    *,
    start: int = 0,
    chunk: int = DEFAULT_CHUNK,
    admin_id: uuid.UUID | None = None,
    skip_triggers: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Add `count` customers (numbered from `start`, so emails stay unique when a business grows)."""
    began = time.perf_counter()
    statement = _INSERT.format(step=TAG_STEP, labels=len(TAG_LABELS))
    admin = admin_id or uuid.uuid4()
    done = 0
    while done < count:
        size = min(chunk, count - done)
        first = start + done + 1
        async with connection.transaction():
            # Bulk load: no fsync wait per chunk (a crash mid-seed loses only synthetic rows).
            await connection.execute("SET LOCAL synchronous_commit = off")
            if skip_triggers:
                # The tags' foreign-key checks (one trigger per row) cost more than the insert itself;
                # the generated rows reference the customers inserted by the same statement.
                await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute(
                statement,
                business_id,
                first,
                first + size - 1,
                admin,
                FIRST_NAMES_FEMALE,
                FIRST_NAMES_MALE,
                LAST_NAMES,
                EMAIL_DOMAINS,
                TAG_LABELS,
            )
        done += size
        if progress is not None:
            progress(done)
    return SeedResult(business_id, count, time.perf_counter() - began)


_NAME_WORDS = """
INSERT INTO customer_name_words (business_id, word)
SELECT DISTINCT c.business_id, w.word
FROM customers AS c, unnest(public.bee_name_words(c.search_name)) AS w(word)
WHERE c.business_id = $1
ON CONFLICT DO NOTHING
"""

# Secondary indexes of the seeded tables (not the ones backing a primary key or constraint).
_SECONDARY_INDEXES = """
SELECT i.indexname, i.indexdef
FROM pg_indexes AS i
WHERE i.schemaname = current_schema() AND i.tablename IN ('customers', 'customer_tags')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)
ORDER BY i.indexname
"""


async def seed(
    database_url: str,
    *,
    businesses: list[tuple[uuid.UUID, int]],
    rebuild_indexes: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[SeedResult]:
    """Seed each (business_id, count) pair, then ANALYZE so plans see the new sizes.

    `rebuild_indexes` drops the secondary indexes first and builds them again at the end, and skips
    the foreign-key triggers (needs a superuser): several times faster for a big load into a
    database nobody else uses (the benchmark's), wrong for a live one.
    """
    # JIT spends a second compiling each chunk's statement and saves nothing on simple expressions.
    connection = await asyncpg.connect(_dsn(database_url), server_settings={"jit": "off"})
    say = progress or (lambda _line: None)
    try:
        indexes = await connection.fetch(_SECONDARY_INDEXES) if rebuild_indexes else []
        for index in indexes:
            await connection.execute(f'DROP INDEX "{index["indexname"]}"')
        results = []
        for business_id, count in businesses:
            start = await connection.fetchval("SELECT count(*) FROM customers WHERE business_id = $1", business_id)
            result = await seed_business(connection, business_id, count, start=start, skip_triggers=rebuild_indexes)
            results.append(result)
            say(f"{business_id}: +{count} customers in {result.seconds:.1f}s")
        if indexes:
            began = time.perf_counter()
            await connection.execute("SET maintenance_work_mem = '256MB'")
            for index in indexes:
                await connection.execute(index["indexdef"])
            say(f"rebuilt {len(indexes)} indexes in {time.perf_counter() - began:.1f}s")
        if rebuild_indexes:
            # The triggers were skipped: the name words the insert trigger would have added (migration 0010).
            for business_id, _count in businesses:
                await connection.execute(_NAME_WORDS, business_id)
        await connection.execute("VACUUM ANALYZE customers")
        await connection.execute("VACUUM ANALYZE customer_tags")
        await connection.execute("ANALYZE customer_name_words")
        return results
    finally:
        await connection.close()
