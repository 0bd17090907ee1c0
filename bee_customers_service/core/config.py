"""Settings: one object read from `BEE_*` environment variables and passed down explicitly."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only signing secret: `make run` works out of the box, production refuses it.
DEV_JWT_SECRET = "bee-dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 (development only)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BEE_", env_file=".env", extra="ignore")

    service_name: str = "bee_customers_service"
    environment: Literal["development", "test", "production"] = "development"
    host: str = "0.0.0.0"
    port: int = 8007

    # Database. Unset -> an embedded PostgreSQL under `data_dir` (development only).
    database_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_statement_timeout_ms: int = Field(default=15_000, ge=0)
    data_dir: Path = Path(".data")

    # Validation.
    default_phone_region: str = Field(default="RO", min_length=2, max_length=2)
    max_request_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)

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

    # Events (RabbitMQ). Unset -> events stay in the outbox, nothing is published.
    rabbitmq_url: str | None = None
    events_exchange: str = "bee.customers.events"
    relay_enabled: bool = True
    relay_batch_size: int = Field(default=200, ge=1, le=5000)
    relay_poll_seconds: float = Field(default=5.0, gt=0)
    relay_max_backoff_seconds: float = Field(default=30.0, gt=0)
    outbox_retention_hours: float = Field(default=72.0, gt=0)
    # How long the relay waits for the confirms of one batch before the broker counts as down.
    relay_publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # How often the active relay deletes published rows older than `outbox_retention_hours`.
    relay_purge_interval_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> "Settings":
        if self.environment == "production":
            if self.database_url is None:
                raise ValueError("BEE_DATABASE_URL is required in production")
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else None
            if secret == DEV_JWT_SECRET:
                raise ValueError("BEE_JWT_SECRET must be set (or unset with a public key) in production")
        return self

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
