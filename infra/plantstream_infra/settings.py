"""Typed stack settings read from Pulumi config (namespace ``plantstream``).

Every knob a preset can turn lives here, validated once, so components never read config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pulumi

NatMode = Literal["none", "single", "per-az"]
KeyMode = Literal["per-service", "single"]
StreamMode = Literal["PROVISIONED", "ON_DEMAND"]
DatabaseKind = Literal["aurora-serverless", "postgres-instance"]
CacheEngine = Literal["redis", "valkey"]

_SUFFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
# The only retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = frozenset(
    {
        1,
        3,
        5,
        7,
        14,
        30,
        60,
        90,
        120,
        150,
        180,
        365,
        400,
        545,
        731,
        1096,
        1827,
        2192,
        2557,
        2922,
        3288,
        3653,
    }
)


class SettingsError(ValueError):
    """A config value is missing or out of range; the message names the config key."""


@dataclass(frozen=True)
class NetworkSettings:
    nat: NatMode = "none"


@dataclass(frozen=True)
class StreamSettings:
    mode: StreamMode = "PROVISIONED"
    shard_count: int = 2
    retention_hours: int = 168


@dataclass(frozen=True)
class DatabaseSettings:
    kind: DatabaseKind = "aurora-serverless"
    # Aurora PostgreSQL major version; the newest minor offered is resolved at deploy time
    # (database.py). Every 16.x release supports Serverless v2 (16.1 and higher).
    aurora_engine_version: str = "16"
    # RDS PostgreSQL: a major-version prefix lets RDS pick the current minor release.
    postgres_engine_version: str = "16"
    min_acu: float = 0.5
    max_acu: float = 2.0
    aurora_instances: int = 2
    instance_class: str = "db.t4g.micro"
    multi_az: bool = True
    allocated_storage_gb: int = 20
    backup_retention_days: int = 30
    deletion_protection: bool = False
    database_name: str = "plantstream"
    master_username: str = "dbadmin"
    secret_rotation_days: int = 30


@dataclass(frozen=True)
class CacheSettings:
    engine: CacheEngine = "redis"
    engine_version: str = "7.1"
    node_type: str = "cache.t4g.micro"
    cluster_mode: bool = False
    nodes: int = 2
    shards: int = 1
    replicas_per_shard: int = 1
    snapshot_retention_days: int = 7
    auth_rotation_days: int = 30

    @property
    def parameter_group(self) -> str:
        major = self.engine_version.split(".")[0]
        family = f"default.{self.engine}{major}"
        return f"{family}.cluster.on" if self.cluster_mode else family

    @property
    def member_cluster_ids(self) -> tuple[str, ...]:
        """Suffixes ElastiCache gives member clusters (``-001`` or ``-0001-001``)."""
        if self.cluster_mode:
            return tuple(
                f"{s:04d}-{n:03d}"
                for s in range(1, self.shards + 1)
                for n in range(1, self.replicas_per_shard + 2)
            )
        return tuple(f"{n:03d}" for n in range(1, self.nodes + 1))


@dataclass(frozen=True)
class ServiceSettings:
    image: str | None = None
    cpu: int = 256
    memory: int = 512
    ingest_count: int = 2
    processor_count: int = 2
    api_count: int = 2
    container_port: int = 8080
    # Autoscale the processor on the stream's iterator age between these counts (seed 002);
    # ``processorMaxCount`` unset means a fixed ``processorCount``.
    processor_min_count: int = 1
    processor_max_count: int | None = None
    processor_target_iterator_age_ms: int = 30_000


@dataclass(frozen=True)
class FrontDoorSettings:
    """How devices outside the VPC get in: HTTPS on the ALB (``certificateArn``), the API
    Gateway ``POST /ingest`` (``apiGateway``), or nothing, said explicitly (``internalOnly``)."""

    certificate_arn: str | None = None
    api_gateway: bool = False
    api_stage_name: str = "v1"
    internal_only: bool = False
    alb_ingress_cidrs: tuple[str, ...] = ("0.0.0.0/0",)

    @property
    def reachable_from_outside(self) -> bool:
        return bool(self.certificate_arn) or self.api_gateway


# A facility (Sparkplug group id) or device (edge node id) becomes one MQTT topic level and
# part of a thing name: no MQTT wildcards (+ #), no separators (/), no IoT policy wildcards.
_TOPIC_LEVEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
IotLogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR"]


@dataclass(frozen=True)
class IotSettings:
    """AWS IoT Core in front of the MQTT bridge (docs/aws-iot.md): a thing group per facility,
    a thing per listed device (more are provisioned at run time), the bridge as an ECS service.
    No facilities means no IoT resources."""

    facilities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    log_level: IotLogLevel = "WARN"
    bridge_count: int = 1
    share_group: str = "plantstream"
    host_id: str = "plantstream"

    @property
    def enabled(self) -> bool:
        return bool(self.facilities)


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs, already validated."""

    project: str
    preset: str
    environment_suffix: str
    region: str
    key_mode: KeyMode = "per-service"
    log_retention_days: int = 365
    alarm_email: str | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    deviations: Mapping[str, str] = field(default_factory=dict)
    # Values a seed states that the preset does not reproduce, each with its reason (the
    # policy-control waivers are ``deviations``; these are everything else a seed says).
    seed_deviations: Mapping[str, str] = field(default_factory=dict)
    # Extra stack outputs under the names a seed's own tests read: {seed name: our output}.
    output_aliases: Mapping[str, str] = field(default_factory=dict)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    services: ServiceSettings = field(default_factory=ServiceSettings)
    front_door: FrontDoorSettings = field(default_factory=FrontDoorSettings)
    iot: IotSettings = field(default_factory=IotSettings)

    def validate(self) -> StackSettings:
        _check(
            _SUFFIX_RE.match(self.environment_suffix) is not None,
            "environmentSuffix",
            "must be 1-16 lowercase letters, digits or '-' (it ends every resource name)",
        )
        _check(
            self.key_mode in ("per-service", "single"),
            "keyMode",
            "must be 'per-service' or 'single'",
        )
        _check(
            self.network.nat in ("none", "single", "per-az"),
            "network.nat",
            "must be 'none', 'single' or 'per-az'",
        )
        _check(
            self.stream.mode in ("PROVISIONED", "ON_DEMAND"),
            "stream.mode",
            "must be PROVISIONED or ON_DEMAND",
        )
        _check(
            24 <= self.stream.retention_hours <= 8760,
            "stream.retentionHours",
            "must be between 24 and 8760",
        )
        _check(self.stream.shard_count >= 1, "stream.shardCount", "must be >= 1")
        db = self.database
        _check(
            db.kind in ("aurora-serverless", "postgres-instance"),
            "database.kind",
            "must be 'aurora-serverless' or 'postgres-instance'",
        )
        _check(
            0.0 <= db.min_acu <= db.max_acu <= 256,
            "database.minAcu/maxAcu",
            "need 0 <= minAcu <= maxAcu <= 256",
        )
        _check(
            1 <= db.backup_retention_days <= 35,
            "database.backupRetentionDays",
            "must be between 1 and 35 (RDS limit)",
        )
        _check(
            db.master_username.lower() not in ("admin", "postgres", "rdsadmin", "root"),
            "database.masterUsername",
            "must not be a reserved or default name",
        )
        _check(db.aurora_instances >= 1, "database.auroraInstances", "must be >= 1")
        cache = self.cache
        _check(cache.engine in ("redis", "valkey"), "cache.engine", "must be redis or valkey")
        _check(
            cache.nodes >= 2 or cache.cluster_mode,
            "cache.nodes",
            "needs >= 2 nodes for Multi-AZ automatic failover",
        )
        _check(
            cache.replicas_per_shard >= 1 or not cache.cluster_mode,
            "cache.replicasPerShard",
            "needs >= 1 replica for automatic failover",
        )
        _check(
            self.log_retention_days in LOG_RETENTION_DAYS,
            "logRetentionDays",
            f"must be one of CloudWatch's periods {sorted(LOG_RETENTION_DAYS)}",
        )
        _check(
            1 <= db.secret_rotation_days <= 365 and 1 <= cache.auth_rotation_days <= 365,
            "database.secretRotationDays/cache.authRotationDays",
            "must be 1..365",
        )
        _check(
            0 <= cache.snapshot_retention_days <= 35, "cache.snapshotRetentionDays", "must be 0..35"
        )
        door = self.front_door
        _check(
            door.reachable_from_outside != door.internal_only,
            "frontDoor",
            "needs a way in from outside the VPC (certificateArn for HTTPS on the load balancer,"
            " or apiGateway: true) or internalOnly: true to say there is none, not both",
        )
        _check(
            re.fullmatch(r"[A-Za-z0-9_-]{1,128}", door.api_stage_name) is not None,
            "frontDoor.apiStageName",
            "must be 1-128 letters, digits, '-' or '_'",
        )
        svc = self.services
        if svc.processor_max_count is not None:
            _check(
                svc.processor_min_count <= svc.processor_count <= svc.processor_max_count,
                "services.processorMinCount/processorCount/processorMaxCount",
                "need min <= count <= max",
            )
            _check(
                self.stream.mode == "ON_DEMAND"
                or svc.processor_max_count <= self.stream.shard_count,
                "services.processorMaxCount",
                "must not exceed stream.shardCount: a processor leases whole shards, more idle",
            )
        _check(
            all(v.strip() for v in self.seed_deviations.values()),
            "seedDeviations",
            "each needs a reason",
        )
        self._validate_iot()
        return self

    def _validate_iot(self) -> None:
        iot = self.iot
        for facility, devices in iot.facilities.items():
            _check(
                _TOPIC_LEVEL_RE.match(facility) is not None and facility != "state",
                f"iot.facilities.{facility}",
                "must be 1-40 lowercase letters, digits or '-' (a Sparkplug group id; not STATE)",
            )
            for device in devices:
                _check(
                    _TOPIC_LEVEL_RE.match(str(device)) is not None,
                    f"iot.facilities.{facility}",
                    f"device {device!r} must be 1-40 lowercase letters, digits or '-'",
                )
        _check(
            iot.log_level in ("DEBUG", "INFO", "WARN", "ERROR"),
            "iot.logLevel",
            "must be DEBUG, INFO, WARN or ERROR (IoT Core logs to CloudWatch, never DISABLED)",
        )
        _check(1 <= iot.bridge_count <= 10, "iot.bridgeCount", "must be 1..10")
        for key, value in (("iot.shareGroup", iot.share_group), ("iot.hostId", iot.host_id)):
            _check(
                _TOPIC_LEVEL_RE.match(value) is not None,
                key,
                "must be 1-40 lowercase letters, digits or '-' (one MQTT topic level)",
            )


def _iot_section(raw: Mapping[str, Any] | None) -> IotSettings:
    section: IotSettings = _section(IotSettings, raw, "iot")
    facilities = {str(k): tuple(str(d) for d in (v or ())) for k, v in section.facilities.items()}
    return replace(section, facilities=facilities)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise SettingsError(f"plantstream:{key} {message}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _section(cls: type[Any], raw: Mapping[str, Any] | None, key: str) -> Any:
    """Build a settings section from a camelCase config object, rejecting unknown keys."""
    raw = dict(raw or {})
    known = {_camel(f): f for f in cls.__dataclass_fields__}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingsError(f"plantstream:{key} has unknown keys {unknown}; known: {sorted(known)}")
    kwargs = {known[k]: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()}
    return cls(**kwargs)


def load_settings() -> StackSettings:
    """Read and validate ``plantstream:*`` and ``aws:region`` for the current stack."""
    cfg = pulumi.Config("plantstream")
    region = pulumi.Config("aws").get("region")
    if not region:
        raise SettingsError("aws:region is required (pulumi config set aws:region <region>)")
    stack = pulumi.get_stack()
    settings = StackSettings(
        project=pulumi.get_project(),
        preset=cfg.get("preset") or stack,
        environment_suffix=cfg.get("environmentSuffix") or stack.lower()[:16],
        region=region,
        key_mode=cfg.get("keyMode") or "per-service",  # type: ignore[arg-type]
        log_retention_days=cfg.get_int("logRetentionDays") or 365,
        alarm_email=cfg.get("alarmEmail"),
        extra_tags=cfg.get_object("tags") or {},
        deviations=cfg.get_object("deviations") or {},
        seed_deviations=cfg.get_object("seedDeviations") or {},
        output_aliases=cfg.get_object("outputAliases") or {},
        network=_section(NetworkSettings, cfg.get_object("network"), "network"),
        stream=_section(StreamSettings, cfg.get_object("stream"), "stream"),
        database=_section(DatabaseSettings, cfg.get_object("database"), "database"),
        cache=_section(CacheSettings, cfg.get_object("cache"), "cache"),
        services=replace(
            _section(ServiceSettings, cfg.get_object("services"), "services"),
            **({"image": cfg.get("image")} if cfg.get("image") else {}),
        ),
        front_door=_section(FrontDoorSettings, cfg.get_object("frontDoor"), "frontDoor"),
        iot=_iot_section(cfg.get_object("iot")),
    )
    return settings.validate()
