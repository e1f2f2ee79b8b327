"""The edge agent's config file (``edge.yaml``): sources, their signals, one destination, the queue.

Validated at start with pydantic; every error names the file, line and column of the value at
fault (``load_config``). The ingest key is never in the file: it comes from an environment
variable or a key file and is kept as a ``SecretStr``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from plantstream.edge.yamlmarks import Marks, locate, read_with_marks
from plantstream.errors import ConfigError
from plantstream.model.readings import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueKind(StrEnum):
    """A signal's value type, as the queue stores it (natively: REAL, INTEGER or TEXT)."""

    DOUBLE = "double"
    INT64 = "int64"
    BOOL = "bool"
    STRING = "string"
    STATE = "state"


class SignalBase(Strict):
    device: Id
    metric: Id
    type: ValueKind = ValueKind.DOUBLE
    unit: str | None = Field(default=None, max_length=16, description="the unit sent; else EU")
    states: tuple[str, ...] = ()


class Deadband(Strict):
    type: Literal["absolute", "percent"] = "absolute"
    value: float = Field(ge=0)


class OpcUaSignal(SignalBase):
    node: str = Field(min_length=3, description="a NodeId, e.g. ns=2;s=Press1.Temperature")
    sampling_ms: float = Field(default=100.0, ge=0)
    queue_size: int = Field(default=100, ge=1, le=100_000)
    deadband: Deadband | None = None


class OpcUaSecurity(Strict):
    mode: Literal["none", "sign", "sign_and_encrypt"] = "sign_and_encrypt"
    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    insecure: bool = Field(default=False, description="required to run with mode: none")

    @model_validator(mode="after")
    def _explicit_insecure(self) -> OpcUaSecurity:
        if self.mode == "none" and not self.insecure:
            raise ValueError("mode none sends everything in clear: set insecure: true to allow it")
        if self.mode != "none" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"mode {self.mode} needs certificate and private_key files")
        if self.username is not None and self.password_env is None:
            raise ValueError("username needs password_env (the variable holding the password)")
        return self


class OpcUaSource(Strict):
    type: Literal["opcua"]
    name: Id
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    security: OpcUaSecurity  # required: a plant network is no reason to send in clear
    timestamp: Literal["source", "server"] = Field(
        default="source", description="which OPC UA timestamp is the reading's time"
    )
    publishing_ms: float = Field(default=100.0, gt=0)
    timeout_seconds: float = Field(default=4.0, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    signals: list[OpcUaSignal] = Field(min_length=1)


class ModbusSignal(SignalBase):
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535)
    data_type: Literal[
        "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool"
    ] = "float32"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    poll_ms: int | None = Field(default=None, ge=10)

    @model_validator(mode="after")
    def _bits_are_bool(self) -> ModbusSignal:
        if "type" in self.model_fields_set:
            raise ValueError("a Modbus signal's type follows its data_type: leave type out")
        bit_table = self.table in ("coil", "discrete")
        if bit_table != (self.data_type == "bool"):
            raise ValueError("coils and discrete inputs are data_type bool, registers are not")
        return self


class ModbusSource(Strict):
    type: Literal["modbus"]
    name: Id
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    poll_ms: int = Field(default=1000, ge=10)
    timeout_seconds: float = Field(default=2.0, gt=0)
    signals: list[ModbusSignal] = Field(min_length=1)


Source = Annotated[OpcUaSource | ModbusSource, Field(discriminator="type")]


class Destination(Strict):
    url: str = Field(pattern=r"^https?://")
    key_env: str = Field(default="PLANTSTREAM_EDGE_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    key_file: Path | None = None
    batch_size: int = Field(default=2000, ge=1, le=5000)
    in_flight: int = Field(
        default=4, ge=1, le=16, description="batches sent at once (each signal stays in order)"
    )
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_backoff_seconds: float = Field(default=30.0, gt=0)


class QueueConfig(Strict):
    path: Path = Path("edge-queue.db")
    max_readings: int = Field(default=50_000_000, ge=1)
    max_bytes: int = Field(default=8 * 1024**3, ge=1024 * 1024)
    max_age_hours: float = Field(default=7 * 24, gt=0)
    overflow: Literal["refuse", "drop_oldest"] = "refuse"
    durability: Literal["full", "normal"] = "full"
    live_window_hours: float = Field(
        default=7 * 24, gt=0, description="plantstream's PLANTSTREAM_MAX_PAST_SECONDS"
    )


class HealthConfig(Strict):
    listen: str = Field(default="127.0.0.1:9108", pattern=r"^[^\s:]+:\d{1,5}$")


class EdgeConfig(Strict):
    facility: Id
    destination: Destination
    queue: QueueConfig = QueueConfig()
    health: HealthConfig = HealthConfig()
    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> EdgeConfig:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("two sources have the same name")
        seen: set[tuple[str, str]] = set()
        for source in self.sources:
            for signal in source.signals:
                key = (signal.device, signal.metric)
                if key in seen:
                    raise ValueError(f"signal {key[0]}/{key[1]} is collected twice")
                seen.add(key)
        return self


def _message(error: dict[str, object]) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key (a typo?)"
    return msg


def load_config(path: Path) -> EdgeConfig:
    """Read and validate ``path``; raise ``ConfigError`` naming file:line:column of each problem."""
    data, marks = read_with_marks(path)
    return parse_config(data, marks, where=str(path))


def parse_config(data: object, marks: Marks, *, where: str) -> EdgeConfig:
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors()[:10]:
            loc = [p for p in error["loc"] if not (isinstance(p, str) and p in ("opcua", "modbus"))]
            mark = locate(marks, loc)
            at = f"{where}:{mark[0]}:{mark[1]}" if mark else where
            dotted = ".".join(str(p) for p in loc) or "(top)"
            lines.append(f"{at}: {dotted}: {_message(dict(error))}")
        raise ConfigError("invalid edge config:\n" + "\n".join(lines)) from None


def resolve_key(destination: Destination) -> SecretStr:
    """The ingest key from ``key_file`` or the ``key_env`` variable; never logged or printed."""
    if destination.key_file is not None:
        try:
            text = destination.key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read key_file {destination.key_file}: {exc.strerror}"
            ) from None
        if not text:
            raise ConfigError(f"key_file {destination.key_file} is empty")
        return SecretStr(text)
    value = os.environ.get(destination.key_env, "").strip()
    if not value:
        raise ConfigError(
            f"no ingest key: set {destination.key_env} or destination.key_file in the config"
        )
    return SecretStr(value)


def warnings_for(config: EdgeConfig) -> list[str]:
    """What will run but not reach plantstream as is (told at check and at start)."""
    from plantstream.model.metrics import METRICS

    notes: list[str] = []
    for source in config.sources:
        for signal in source.signals:
            name = f"{source.name}: {signal.device}/{signal.metric}"
            if signal.metric not in METRICS:
                notes.append(
                    f"{name}: {signal.metric!r} is not one of plantstream's built-in metrics "
                    f"({', '.join(METRICS)}): declare it as a {signal.type} signal of facility "
                    f"{config.facility} (plant model), or its readings are dead-lettered "
                    "(unknown_metric)"
                )
    return notes
