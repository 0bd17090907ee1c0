"""Settings: one object read from `BEE_*` environment variables and passed down explicitly."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only signing secret: `make run` works out of the box, production refuses it.
DEV_JWT_SECRET = "bee-dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 (development only)
# Development-only key for signing pagination cursors (core/pagination.py); production refuses it.
DEV_CURSOR_SECRET = "bee-dev-only-cursor-secret-change-me-0123456789"  # noqa: S105 (development only)
MIN_CURSOR_SECRET_LENGTH = 32
# Development-only key of the erasure records' email fingerprints (gdpr/service.py); production refuses it.
DEV_GDPR_FINGERPRINT_KEY = "bee-dev-only-gdpr-fingerprint-key-change-me-0123"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BEE_", env_file=".env", extra="ignore")

    service_name: str = "bee_customers_service"
    environment: Literal["development", "test", "production"] = "development"
    # Loopback unless told otherwise (the image sets BEE_HOST=0.0.0.0); `serve` refuses any other
    # address while the development JWT secret is in use (cli.refuse_public_dev_secret).
    host: str = "127.0.0.1"
    port: int = 8007

    # Database. Unset -> an embedded PostgreSQL under `data_dir` (development only).
    database_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_statement_timeout_ms: int = Field(default=15_000, ge=0)
    data_dir: Path = Path(".data")

    # Operations.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: SecretStr | None = None
    # Proxies whose X-Forwarded-For is believed for the client IP (uvicorn's forwarded_allow_ips).
    trusted_proxies: str = "127.0.0.1"

    # GDPR.
    gdpr_export_notes: bool = True  # a customer's own export includes the notes about them
    gdpr_resurrect_after_days: int | None = Field(default=None, ge=0)  # None: never re-create

    # Validation.
    default_phone_region: str = Field(default="RO", min_length=2, max_length=2)
    max_request_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # How long a POST/PATCH answer is kept for replay under its Idempotency-Key (core/idempotency.py).
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)

    # Authentication (see core/security.py).
    jwt_secret: SecretStr | None = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: list[str] = ["RS256", "ES256"]
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwt_jwks_cache_seconds: int = Field(default=300, ge=1)
    # At most one refetch per cooldown for unknown `kid`s, so forged kids cannot flood the auth service.
    jwt_jwks_refresh_cooldown_seconds: float = Field(default=30.0, ge=0)

    # Pagination: the HMAC key that signs `next_cursor` values, so a client cannot craft one (required in production).
    cursor_secret: SecretStr = Field(default=SecretStr(DEV_CURSOR_SECRET), min_length=1)
    # GDPR: the HMAC key of the erasure records' email fingerprints, so an email list cannot be
    # tested against them without it (required in production).
    gdpr_fingerprint_key: SecretStr = Field(default=SecretStr(DEV_GDPR_FINGERPRINT_KEY), min_length=1)

    # Events (RabbitMQ). Unset -> events stay in the outbox, nothing is published.
    rabbitmq_url: str | None = None
    events_exchange: str = "bee.customers.events"
    # The audit records (`v1.audit.customer.*`, spec 5.3) go to their own exchange, for bee_log_service.
    audit_exchange: str = "bee.audit.events"
    relay_enabled: bool = True
    relay_batch_size: int = Field(default=200, ge=1, le=5000)
    relay_poll_seconds: float = Field(default=5.0, gt=0)
    relay_max_backoff_seconds: float = Field(default=30.0, gt=0)
    outbox_retention_hours: float = Field(default=72.0, gt=0)
    # How long the relay waits for the confirms of one batch before the broker counts as down.
    relay_publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # How often the active relay deletes published rows older than `outbox_retention_hours`.
    relay_purge_interval_seconds: float = Field(default=300.0, gt=0)

    # Rate limits (core/ratelimit.py). Redis shares the counters between replicas; unset -> in memory.
    redis_url: str | None = None
    ratelimit_enabled: bool = True
    ratelimit_key_prefix: str = Field(default="bee-customers", min_length=1, max_length=64)

    # Avatars (avatars/). `local` keeps files under `data_dir/avatars` and serves them at /avatars/...
    avatar_storage: Literal["local", "s3"] = "local"
    avatar_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    avatar_max_dimension: int = Field(default=4096, ge=16, le=16384)
    avatar_upload_rate_limit: str = "10/hour"  # per customer, `limits` notation ("10/hour", "2/minute")
    # PATCH /customers/{id}: counted per caller AND per customer (anti profile-flood, spec 5.4).
    patch_rate_limit: str = "30/minute"
    # Global guard per client IP on every route but the probes and /metrics; None switches it off.
    ip_rate_limit: str | None = "3000/minute"
    avatar_public_base_url: str | None = None  # CDN in front of the bucket (or of /avatars)
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None  # MinIO / SeaweedFS / other S3-compatible servers
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # unset -> the usual AWS credential chain (env, profile, role)
    s3_secret_access_key: SecretStr | None = None
    # Activity: the orders and scheduling services' events consumed into history and statistics
    # (activity/consumer.py, docs/events.md).
    orders_exchange: str = "bee.orders.events"
    scheduling_exchange: str = "bee.scheduling.events"
    activity_queue: str = "bee.customers.activity"
    activity_dead_letter_exchange: str = "bee.customers.activity.dlx"
    activity_dead_letter_queue: str = "bee.customers.activity.dlq"
    activity_consumer_enabled: bool = True
    activity_prefetch: int = Field(default=1000, ge=1, le=65535)
    # One worker and batches of 500 measured fastest on 2 cores shared with PostgreSQL (bench/README.md).
    activity_concurrency: int = Field(default=1, ge=1, le=64)
    activity_batch_size: int = Field(default=500, ge=1, le=5000)
    activity_batch_linger_ms: int = Field(default=50, ge=0, le=5000)
    activity_retry_delay_ms: int = Field(default=10_000, ge=10)
    activity_max_attempts: int = Field(default=8, ge=1, le=100)
    # Identity: bee_auth_service's user events mirrored into the profiles (identity/consumer.py,
    # docs/events.md "Consumed: user events from bee_auth_service").
    auth_exchange: str = "bee.auth.events"
    auth_queue: str = "bee.customers.auth"
    auth_dead_letter_exchange: str = "bee.customers.auth.dlx"
    auth_dead_letter_queue: str = "bee.customers.auth.dlq"
    auth_consumer_enabled: bool = True
    auth_prefetch: int = Field(default=100, ge=1, le=65535)
    auth_concurrency: int = Field(default=2, ge=1, le=64)
    auth_batch_size: int = Field(default=20, ge=1, le=1000)
    auth_batch_linger_ms: int = Field(default=20, ge=0, le=5000)
    auth_retry_delay_ms: int = Field(default=10_000, ge=10)
    auth_max_attempts: int = Field(default=8, ge=1, le=100)
    # processed_events (the consumer's idempotency keys, ids only) are kept this long, then pruned
    # every `processed_events_prune_interval_seconds`: far beyond any redelivery or producer retry.
    processed_events_retention_days: float = Field(default=30.0, gt=0)
    processed_events_prune_interval_seconds: float = Field(default=3600.0, gt=0)
    stats_window_months: int = Field(default=6, ge=1, le=60)
    # The stored RFM segment (activity/segments.py) is refreshed business by business this often,
    # by one replica (an advisory lock; 0: never). Daily: recency scores move on day boundaries
    # (30/60/90/180 days), and a customer's own activity already refreshes theirs at once.
    segment_refresh_seconds: float = Field(default=86400.0, ge=0)
    # Notes (spec 5.4): comma-separated words or phrases a note may not contain (whole words,
    # case- and accent-insensitive). Empty: no content filter.
    notes_blocklist: str = ""

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> "Settings":
        if self.environment == "production":
            if self.database_url is None:
                raise ValueError("BEE_DATABASE_URL is required in production")
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else None
            if secret == DEV_JWT_SECRET:
                raise ValueError("BEE_JWT_SECRET must be set (or unset with a public key) in production")
        return self

    @model_validator(mode="after")
    def _keys_in_production(self) -> "Settings":
        # The keys with a development default: production refuses the default and short values.
        keys = (
            ("BEE_CURSOR_SECRET", self.cursor_secret, DEV_CURSOR_SECRET),
            ("BEE_GDPR_FINGERPRINT_KEY", self.gdpr_fingerprint_key, DEV_GDPR_FINGERPRINT_KEY),
        )
        if self.environment == "production":
            for name, value, development_default in keys:
                key = value.get_secret_value()
                if key == development_default or len(key) < MIN_CURSOR_SECRET_LENGTH:
                    raise ValueError(
                        f"{name} must be set to a random string of at least {MIN_CURSOR_SECRET_LENGTH} "
                        "characters in production"
                    )
        return self

    @model_validator(mode="after")
    def _processed_events_outlive_the_retries(self) -> "Settings":
        # A message retried for up to max_attempts x retry_delay must still find its key (both consumers).
        retries_seconds = max(
            self.activity_max_attempts * self.activity_retry_delay_ms / 1000,
            self.auth_max_attempts * self.auth_retry_delay_ms / 1000,
        )
        if self.processed_events_retention_days * 86400 <= retries_seconds:
            raise ValueError(
                "BEE_PROCESSED_EVENTS_RETENTION_DAYS must outlast the consumer's retries"
                f" ({retries_seconds:.0f} s: BEE_ACTIVITY_/BEE_AUTH_ MAX_ATTEMPTS x RETRY_DELAY_MS)"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_in_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value  # `warning` -> WARNING

    @field_validator("avatar_upload_rate_limit", "patch_rate_limit", "ip_rate_limit")
    @classmethod
    def _valid_rate_limit(cls, value: str | None) -> str | None:
        import limits

        if value is not None:
            limits.parse(value)  # ValueError on a malformed limit: refuse it at start-up, not per request
        return value

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> "Settings":
        if self.avatar_storage == "s3" and not self.s3_bucket:
            raise ValueError("BEE_S3_BUCKET is required when BEE_AVATAR_STORAGE=s3")
        return self

    @property
    def notes_blocked_words(self) -> tuple[str, ...]:
        return tuple(word.strip() for word in self.notes_blocklist.split(",") if word.strip())

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
