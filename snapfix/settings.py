"""One typed settings object, read from ``SNAPFIX_*`` environment variables when a process starts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-insecure-secret-change-me-0123456789"


class Settings(BaseSettings):
    """Every knob of every role. With no environment at all, everything is embedded under ./data."""

    model_config = SettingsConfigDict(env_prefix="SNAPFIX_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    event_log: str = Field("sqlite:///./data/events.db", description="sqlite:///path or kafka://host:port")
    view_store: str = Field("sqlite:///./data/views.db", description="sqlite:///path or mongodb://host/db")
    cache: str = Field("memory://", description="memory:// or redis://host:port/db")
    cache_prefix: str = Field(
        "", max_length=64, description="prepended to every Redis key, so deployments can share one Redis database"
    )
    write_store: str = Field(
        "mongodb://127.0.0.1:27017/snapfix_write",
        description="with a kafka:// event log: the MongoDB database the command side decides against",
    )
    projector_group: str = Field("snapfix-projectors", description="the Kafka consumer group of projector workers")
    kafka_topic: str = Field("snapfix.events", description="the event log's topic, created by the project")
    kafka_partitions: int = Field(6, ge=1, le=1000, description="partitions when the project creates the topic")
    kafka_replication_factor: int = Field(1, ge=1, description="1 on a single broker; 3 in production")
    kafka_retention_ms: int = Field(-1, ge=-1, description="-1 keeps events forever: the topic is the log")
    kafka_publish_timeout_ms: int = Field(
        5000, ge=100, description="how long a command waits for Kafka before leaving its events to the relay"
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="/metrics of the projector role, which has no HTTP server; 0 turns it off"
    )

    jwt_secret: SecretStr = SecretStr(DEV_SECRET)
    jwt_issuer: str = "snapfix"
    jwt_audience: str = "snapfix-api"
    access_token_ttl_s: int = Field(900, ge=30)
    refresh_token_ttl_s: int = Field(14 * 24 * 3600, ge=60)

    argon2_time_cost: int = Field(2, ge=1, le=20, description="argon2id passes (OWASP: 2 with 19 MiB)")
    argon2_memory_kib: int = Field(19 * 1024, ge=64, description="argon2id memory in KiB (OWASP: 19456)")
    argon2_parallelism: int = Field(1, ge=1, le=16, description="argon2id lanes (OWASP: 1)")
    password_workers: int = Field(1, ge=1, le=64, description="argon2 hashes computed at once")
    password_queue: int = Field(
        16, ge=0, le=10_000, description="sign-ins and registrations that may wait for a worker; more get 503"
    )
    password_pool: Literal["thread", "process"] = Field(
        "thread", description="thread: in the API's process; process: worker processes, pinnable to other cores"
    )
    password_cpus: list[int] = Field(
        default_factory=list, description="with the process pool: the CPUs its workers run on, e.g. [2,3]"
    )

    consistency_wait_ms: int = Field(2000, ge=0, le=30000, description="read-your-writes bound")
    projector_batch_size: int = Field(500, ge=1, le=10000)
    projector_idle_poll_ms: int = Field(200, ge=1)
    cache_capacity: int = Field(50_000, ge=0, description="entries in the in-process LRU")
    cache_ttl_s: int = Field(
        3600,
        ge=1,
        description="how long a cached view document, detail or feed is kept: a memory bound, not a staleness one "
        "(versions, stamps and the cache epoch retire what a change makes old)",
    )
    max_page_size: int = Field(100, ge=1, le=1000)
    command_retries: int = Field(5, ge=0, le=50, description="retries of a command without If-Match on conflict")
    snapshot_every: int = Field(
        100, ge=2, le=1_000_000, description="events between two snapshots of an aggregate, kept beside the log"
    )
    aggregate_cache_size: int = Field(
        100_000, ge=0, description="aggregates whose decided state a command API keeps in memory (LRU)"
    )
    aggregate_read_max_age_ms: int = Field(
        1000,
        ge=0,
        le=60_000,
        description="how long state that a command only reads (the catalogue, a user signing in) is trusted "
        "without a look at the log; state a command appends to is always checked by the append",
    )

    blob_store: str = Field(
        "file://./data/blobs", description="file:///path, or mongodb://host/db (GridFS) when roles run apart"
    )
    photo_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest photo upload (413 above)")
    photo_max_pixels: int = Field(40_000_000, ge=10_000, description="decompression-bomb guard (413 above)")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest request body except photo uploads (413)")
    rate_limit_ip_writes: int = Field(300, ge=0, description="writes per IP per window; 0 turns the limit off")
    rate_limit_user_writes: int = Field(120, ge=0, description="writes per signed-in user per window; 0 is off")
    rate_limit_sign_ins: int = Field(10, ge=0, description="sign-in and refresh attempts per IP per window; 0 is off")
    rate_limit_window_s: int = Field(60, ge=1, description="the rate limits' window")
    smtp_url: str | None = Field(None, description="smtp://host:port for notification emails; unset: none are sent")
    mail_from: str = "SnapFix <no-reply@snapfix.invalid>"
    process_managers: bool = Field(
        True,
        description="run the photo worker and the notifier in the projecting role (serve, or snapfix projectors);"
        " with several projector workers, true on one of them",
    )
    fault_kill_at: Literal["claimed", "committed", "published"] | None = Field(
        None, description="tests only: the command API SIGKILLs itself at this step of an append (kafka:// log)"
    )

    @model_validator(mode="after")
    def _refuse_unsafe_secret(self) -> Settings:
        secret = self.jwt_secret.get_secret_value()
        if self.environment == "production" and (secret == DEV_SECRET or len(secret) < 32):
            raise ValueError("SNAPFIX_JWT_SECRET must be set to a random value of at least 32 characters in production")
        if self.fault_kill_at is not None and self.environment != "test":
            raise ValueError("SNAPFIX_FAULT_KILL_AT is a test-only fault hook: it needs SNAPFIX_ENVIRONMENT=test")
        return self

    @property
    def embedded(self) -> bool:
        """True when the log is SQLite: one process can tail it for its projections."""
        return self.event_log.startswith("sqlite:")
