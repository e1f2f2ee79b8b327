"""Settings of a plantstream process: one typed, frozen object read from ``PLANTSTREAM_*``.

With nothing set, everything runs on embedded PostgreSQL and Redis under ``data_dir``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from plantstream.errors import ConfigError

ENV_PREFIX = "PLANTSTREAM_"


class Settings(BaseSettings):
    """Everything a plantstream process can be configured with; an explicit argument wins."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    data_dir: Path = Field(default=Path(".plantstream"), description="embedded servers' home")
    database_url: SecretStr | None = None
    database_password: SecretStr | None = Field(
        default=None, description="put into database_url (ECS injects it from Secrets Manager)"
    )
    redis_url: SecretStr | None = None
    redis_password: SecretStr | None = Field(default=None, description="the Redis AUTH token")
    stream: Literal["redis", "kinesis"] = "redis"
    stream_name: str = Field(default="readings", pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    stream_shards: int = Field(default=4, ge=1, le=1024)
    stream_retention_hours: int = Field(default=24, ge=1, le=8760)
    kinesis_stream_name: str | None = None
    kinesis_endpoint_url: str | None = None
    db_secret_arn: str | None = None
    api_key_kms_key_id: str | None = Field(
        default=None, description="KMS key for API keys stored by `keys create --secret`"
    )
    redis_auth_secret_arn: str | None = None
    aws_region: str | None = Field(default=None, validation_alias="AWS_REGION")

    # validation window for reading timestamps, relative to the receiving clock
    max_past_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    max_future_seconds: int = Field(default=600, ge=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_batch_readings: int = Field(default=5000, gt=0)
    rate_limit_per_key: float = Field(default=500.0, gt=0, description="requests per second")
    max_inflight_ingest: int = Field(
        default=32,
        gt=0,
        description="ingest requests one process works on at once; more are answered 429",
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="a client slower than this to send its body gets 408"
    )
    keep_alive_seconds: int = Field(
        default=75,
        gt=0,
        description="idle keep-alive; longer than a load balancer's (ALB: 60 s) so the server "
        "never closes a connection the balancer is about to reuse",
    )
    max_connections: int = Field(
        default=1000,
        gt=0,
        description="ordinary open connections per process; at the cap a new one closes the "
        "oldest idle or incomplete one, or gets a health-probe-only reserve slot",
    )

    raw_retention_days: int = Field(default=30, ge=1)
    processor_batch_records: int = Field(default=500, ge=1, le=10000)
    lease_seconds: float = Field(default=10.0, gt=1)
    server_secret: SecretStr | None = Field(
        default=None, description="HMAC secret for API key hashes; generated locally if unset"
    )
    server_secret_previous: SecretStr | None = Field(
        default=None,
        description="the server secret before a rotation: its keys still work and are re-hashed",
    )
    alert_webhook_url: str | None = Field(
        default=None, pattern=r"^https?://", description="POST alert events here (optional)"
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of webhook-signature (id.timestamp.body) on webhook deliveries",
    )
    detection: bool = Field(default=True, description="run anomaly detection in the processor")
    detection_process: bool = Field(
        default=True,
        description="evaluate detection in a child process of the processor's own (ps-detect), "
        "fed each committed batch: the two no longer share one GIL; false: on the "
        "processor's thread, as before",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    forwarded_allow_ips: str = Field(
        default="127.0.0.1", description="proxies whose X-Forwarded-* headers are trusted"
    )
    auth_cache_seconds: float = Field(
        default=5.0, ge=0, description="how long a verified key is trusted without a lookup"
    )
    redis_cluster: bool | None = Field(
        default=None,
        description="Redis Cluster mode (ElastiCache cluster mode, several on-prem nodes): "
        "true or false; unset asks the server (INFO cluster) at start",
    )

    # readable refusals and the negative key cache (SECURITY.md, "Request bodies and answers")
    max_drain_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="a body past max_body_bytes is read and discarded up to this many bytes "
        "in all, so a client that writes before it reads sees its 413 (beyond: 413 and close)",
    )
    max_gzip_members: int = Field(
        default=16,
        ge=1,
        description="gzip members one body may hold (all are read; more is 400 invalid_body)",
    )
    hsts_max_age_seconds: int = Field(
        default=365 * 24 * 3600,
        ge=0,
        description="Strict-Transport-Security max-age on answers to HTTPS requests (directly "
        "or X-Forwarded-Proto: https from a proxy in forwarded_allow_ips); 0 sends none",
    )
    auth_negative_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how long a refused key (unknown, wrong, revoked, expired) is refused "
        "without a lookup, so a flood of made-up keys does not reach PostgreSQL",
    )
    auth_cache_max_entries: int = Field(
        default=10_000, gt=0, description="keys remembered at most, verified and refused each"
    )

    # -- quotas, named after ThingsBoard's tenant profile (SECURITY.md, "Quotas") --------
    quota_max_sensors_per_facility: int = Field(
        default=20_000,
        ge=1,
        description="sensors (device x metric) a facility may register (ThingsBoard "
        "maxDevices); readings for new sensors beyond it are refused with quota_sensors",
    )
    quota_new_sensors_per_second: float = Field(
        default=50.0,
        gt=0,
        description="new sensors a facility may register per second, bursts of ten times "
        "that; readings of the new sensors beyond are rejected quota_new_sensors_rate "
        "(a new sensor costs the processor and detection far more than a reading)",
    )
    quota_readings_per_second: float = Field(
        default=10_000.0,
        gt=0,
        description="readings/s one facility may send to one ingest process, bursts of twice "
        "that (ThingsBoard transportTenantTelemetryDataPointsRateLimit); 429 "
        "quota_readings_rate beyond. Keep the sum over facilities that may burst together "
        "below what the processors store (bench/soak.py measures it)",
    )
    quota_read_requests_per_second: float = Field(
        default=20.0,
        gt=0,
        description="query requests/s per key, bursts of twice that (ThingsBoard "
        "tenantServerRestLimitsConfiguration); 429 quota_read_rate beyond",
    )
    quota_max_latest_values: int = Field(
        default=20_000,
        ge=1,
        description="latest values in one /v1/latest answer; a larger facility is paged "
        "(cursor) or refused with quota_result_size",
    )
    quota_max_series_points: int = Field(
        default=20_000,
        ge=1,
        description="points in one /v1/series answer; more are cut off with truncated=true "
        "and next_from",
    )
    quota_sensor_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how often ingest re-reads a facility's registered sensors from PostgreSQL",
    )
    metrics_max_facilities: int = Field(
        default=100,
        ge=1,
        description="distinct facility labels a process's /metrics holds; more are counted "
        'under facility="_other"',
    )

    # connection limits of the web server (SECURITY.md, "Connection limits")
    head_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="a connection that has not sent a complete request head this long after "
        "it opened (or after its head began, on keep-alive) gets 408 and is closed",
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="request line plus header fields; more gets 431 and a close",
    )
    max_headers: int = Field(
        default=100, ge=8, description="header fields in one request; more gets 431"
    )
    max_connections_per_address: int = Field(
        default=256,
        ge=0,
        description="open connections of one client address (0: no cap); more are refused at "
        "once with 503 too_many_connections",
    )
    health_reserve_connections: int = Field(
        default=16,
        ge=1,
        description="slots beyond max_connections that serve only /healthz and /readyz",
    )
    connection_guard: bool = Field(
        default=True,
        description="enforce the connection limits above; off serves with uvicorn's plain "
        "protocol and its all-or-nothing 503 cap (for A/B benchmarks only)",
    )
    connection_cap_exempt_ips: str = Field(
        default="",
        description="addresses or networks (comma-separated) the per-address cap does not "
        "apply to: the load balancer's, whose connections carry many clients",
    )

    @field_validator("connection_cap_exempt_ips")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip())  # ValueError names the bad entry
        return value

    # bounded Redis: no command grows with a facility, the stream holds only what
    # is not processed yet, the embedded server has a memory cap
    redis_chunk_sensors: int = Field(
        default=10_000,
        ge=1,
        le=100_000,
        description="sensors per Redis call of the latest-value writes, reads and rebuild",
    )
    latest_max_ahead_seconds: float = Field(
        default=5.0,
        ge=0,
        description="a reading stamped further than this past its receive time is stored, but "
        "ranks as received + this for /v1/latest (a clock running ahead cannot pin it)",
    )
    stream_trim_every_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how often the processor trims a shard's committed entries from the Redis "
        "stream (0: after every step)",
    )
    stream_max_entries_per_shard: int = Field(
        default=1_000_000,
        ge=0,
        description="unprocessed entries a Redis stream shard may hold; more puts are refused "
        "with 429 stream_full, never made room for by dropping entries (0: no cap)",
    )
    embedded_redis_maxmemory_mb: int = Field(
        default=512,
        ge=16,
        description="memory cap of the embedded Redis (noeviction): when reached, ingest "
        "answers 429 stream_full",
    )

    # --- plant model and signal catalog (issue 12: store/catalog.py, api/assets.py) ---
    catalog_ttl_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="how long a facility's signal definitions are cached: a model applied "
        "elsewhere is in force within this time",
    )
    catalog_max_facilities: int = Field(
        default=1024, ge=1, description="facilities whose signal definitions are cached at once"
    )
    catalog_max_signals: int = Field(
        default=200_000,
        ge=1,
        description="signal definitions (beyond the defaults) the catalog cache holds in all, "
        "across its facilities (about 300 bytes each)",
    )
    silent_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a machine whose newest reading is older than this is shown as silent",
    )
    # --- end plant model ---

    # --- line protocol and process layout (issues 15.4 and 18.2) ---
    line_signal_naming: Literal["field", "measurement_field"] = Field(
        default="field",
        description="the signal a line-protocol field becomes: the field key, or "
        "<measurement>_<field>",
    )
    web_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="web worker processes sharing one port; 0: one per CPU for serve all, "
        "one for serve ingest and serve api",
    )
    process_layout: Literal["processes", "threads"] = Field(
        default="processes",
        description="serve all: web workers and the processor in processes of their own "
        "(processes), or everything in one process (threads)",
    )
    processor_processes: int = Field(
        default=1,
        ge=1,
        le=16,
        description="serve all and serve processor in the process layout: processor "
        "processes, each leasing its share of the shards (exactly-once is the leases' job)",
    )
    # --- end line protocol and process layout ---

    # --- mqtt bridge ---
    # `plantstream serve mqtt` (docs/mqtt.md): the broker, its credentials, the session, the
    # Sparkplug B host application and how its names map onto facility and machine
    mqtt_url: str = Field(
        default="",
        pattern=r"^$|^mqtts?://[^/\s]+$",
        description="mqtt://host:1883 or mqtts://host:8883; empty: the embedded broker",
    )
    mqtt_client_id: str = Field(default="plantstream-bridge", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker")
    mqtt_cert_pem: SecretStr | None = Field(default=None, description="client certificate PEM")
    mqtt_key_pem: SecretStr | None = Field(default=None, description="client private key PEM")
    mqtt_share_group: str = Field(
        default="", pattern=r"^[A-Za-z0-9_.-]{0,64}$", description="$share group; empty: none"
    )
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_session_expiry_seconds: int = Field(default=3600, ge=0, le=2**32 - 1)
    mqtt_keepalive_seconds: int = Field(default=30, ge=5, le=3600)
    mqtt_receive_maximum: int = Field(
        default=2000, ge=1, le=65535, description="unacknowledged messages the broker may send"
    )
    mqtt_batch_messages: int = Field(
        default=400, ge=1, le=10_000, description="messages put to the stream in one go at most"
    )
    mqtt_batch_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="how long a batch waits for more messages"
    )
    mqtt_facilities: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_.:,-]*$",
        description="comma-separated facilities this bridge takes; empty: any",
    )
    mqtt_plain_topics: bool = Field(default=True, description="take plantstream/v1/# JSON")
    mqtt_sparkplug: bool = Field(
        default=True, description="be a Sparkplug B host (data under $share: sparkplug_shared)"
    )
    mqtt_dead_letter_max: int = Field(default=10_000, ge=1, le=1_000_000)
    mqtt_metrics_port: int = Field(default=0, ge=0, le=65535, description="0: no metrics server")
    sparkplug_host_id: str = Field(default="plantstream", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    sparkplug_facility: str = Field(default="{group}", description="facility from group/node")
    sparkplug_machine: str = Field(
        default="{edge_node}.{device}", description="machine of a device's metrics"
    )
    sparkplug_node_machine: str = Field(
        default="{edge_node}", description="machine of an edge node's own metrics"
    )
    sparkplug_rebirth_interval_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="at most one rebirth request per node this often"
    )
    sparkplug_shared: bool = Field(
        default=False,
        description="share NDATA/DDATA among bridges ($share/{mqtt_share_group or plantstream}/"
        "...); births and deaths still reach every bridge, seq gaps are not checked",
    )

    # -- backlog-aware admission (ingest/backlog.py; issue 14, per-facility fairness) -----
    quota_backlog_readings: int = Field(
        default=10_000,
        ge=0,
        description="readings of one facility accepted into the stream and not yet stored "
        "by the processor; past it ingest answers 429 quota_backlog, so another facility "
        "waits behind a flooder about this many readings / the processor's rate (0: off); "
        "one second of the default readings/s quota",
    )
    quota_backlog_horizon_seconds: float = Field(
        default=600.0,
        ge=10.0,
        description="how long a count of the backlog counters lives: their errors (re-sent "
        "batches, crashes) are forgotten after this, so they never drift for ever",
    )

    # --- history import (docs/history.md; issue 12 item 5) ---
    history_chunk_rows: int = Field(
        default=200_000,
        ge=1_000,
        le=2_000_000,
        description="readings one history write transaction holds at most (import and "
        "POST /v1/readings/history alike): bounds memory and how long it holds locks",
    )
    history_readings_per_second: float = Field(
        default=20_000.0,
        gt=0,
        description="readings/s one facility may send to POST /v1/readings/history per "
        "process, bursts of twice that; 429 quota_readings_rate beyond",
    )
    history_max_inflight: int = Field(
        default=2,
        ge=1,
        description="history requests one process works on at once, all facilities; more "
        "are answered 429 history_busy (the live path keeps the rest of PostgreSQL)",
    )
    # --- end history import ---

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ``ConfigError`` with a one-line message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + "_".join(str(part) for part in first["loc"]).upper()
        raise ConfigError(f"invalid setting {name}: {first['msg']}") from None
