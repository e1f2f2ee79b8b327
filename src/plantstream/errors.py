"""The one exception tree of plantstream, and the one list of error codes with their statuses.

PlantstreamError
├── ConfigError                 invalid settings, reported at start-up
├── ServiceError                an embedded server failed to start or stop
├── StorageError                PostgreSQL or Redis misbehaved
│   └── LeaseLostError          this process no longer owns a shard; it must not commit
├── SinkProcessError            a post-commit sink's child process failed a batch, died or hung
├── StreamError                 the stream backend failed
│   ├── StreamUnavailableError  nothing was written (HTTP 503)
│   └── StreamThrottledError    (also a PushBackError) the stream pushes back
├── PushBackError               not now, retry after ``retry_after`` s (HTTP 429 + Retry-After)
│   ├── RateLimitedError        this key sent more than its rate (``rate_limited``), or a
│   │                           facility/key more than its quota (``quota_readings_rate``, ...)
│   ├── OverloadedError         this process holds as many requests as it will (``overloaded``)
│   └── StreamThrottledError    the stream pushes back (``stream_throttled``, ``stream_full``)
└── InvalidInputError           bad input; has a machine-readable ``code`` (an ``ErrorCode``)
    ├── InvalidModelError       a plant model document, with every issue's line and column
    └── AuthError               missing, bad, expired or out-of-scope key

Every code a client can see is an ``ErrorCode`` member carrying its HTTP status, so the
string, its status and its meaning are written once (clients match on the strings: they
never change).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A machine-readable error code and the HTTP status it answers with."""

    status: int

    def __new__(cls, value: str, status: int = 400) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        return member

    # a body or a reading refused (per reading in a 202, or for the whole body)
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_LARGE = "batch_too_large", 413
    BODY_TOO_LARGE = "body_too_large", 413
    BODY_TIMEOUT = "body_timeout", 408
    CLIENT_DISCONNECTED = "client_disconnected"  # nobody reads it; counted, never a 500
    UNSUPPORTED_ENCODING = "unsupported_encoding", 415
    DUPLICATE_KEY = "duplicate_key"
    INVALID_READING = "invalid_reading"
    INVALID_ID = "invalid_id"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_UNIT = "unknown_unit"
    UNKNOWN_QUALITY = "unknown_quality"
    VALUE_NOT_FINITE = "value_not_finite"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    # typed values (issue 12): a state a signal does not declare, a text past its bound
    UNKNOWN_STATE = "unknown_state"
    VALUE_TOO_LONG = "value_too_long"
    TIMESTAMP_WITHOUT_OFFSET = "timestamp_without_offset"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    UNDECODABLE_RECORD = "undecodable_record"
    UNKNOWN_FORMAT = "unknown_format", 415
    BAD_PARTITION_KEY = "bad_partition_key"
    RECORD_TOO_LARGE = "record_too_large"
    # the InfluxDB line protocol (ingest/line_protocol.py)
    INVALID_LINE_PROTOCOL = "invalid_line_protocol"
    UNMAPPED_TAG = "unmapped_tag"
    UNSUPPORTED_VALUE_TYPE = "unsupported_value_type"
    # MQTT bridge (docs/mqtt.md): a message refused whole is dead-lettered with its topic
    UNDECODABLE_PAYLOAD = "undecodable_payload"
    INVALID_TOPIC = "invalid_topic"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_ALIAS = "unknown_alias"
    NODE_NOT_BORN = "node_not_born"
    UNSUPPORTED_DATATYPE = "unsupported_datatype"
    NULL_VALUE = "null_value"
    # history import (docs/history.md): a file's rows and the bulk history endpoint
    INVALID_TIMESTAMP = "invalid_timestamp"
    AMBIGUOUS_LOCAL_TIME = "ambiguous_local_time"  # a local time the DST fall-back repeats
    NONEXISTENT_LOCAL_TIME = "nonexistent_local_time"  # a local time the DST spring skips
    BEYOND_RETENTION = "beyond_retention"  # older than the raw retention horizon
    INVALID_MAPPING = "invalid_mapping"  # import flags or mapping file
    UNREADABLE_FILE = "unreadable_file"
    HISTORY_BUSY = "history_busy", 429  # the facility's history writes are at their bound
    # requests and resources
    INVALID_REQUEST = "invalid_request"
    INVALID_TIME = "invalid_time"
    INVALID_CONFIG = "invalid_config"
    INVALID_MODEL = "invalid_model"  # a plant model file or document (``model.plantfile``)
    INVALID_DATASET = "invalid_dataset"  # ``plantstream evaluate``: a labeled CSV it cannot use
    INVALID_KEY_SCOPE = "invalid_key_scope"
    # machine models (multivariate detection): training on a machine's normal period
    INVALID_PERIOD = "invalid_period"  # from not before to, or longer than the bound
    UNKNOWN_MACHINE = "unknown_machine", 404  # no sensors of that machine in the facility
    INSUFFICIENT_DATA = "insufficient_data"  # too few aligned readings to train on
    TOO_MUCH_DATA = "too_much_data"  # more readings in the period than training reads
    QUOTA_MACHINE_MODELS = "quota_machine_models", 403
    MISSING_EXTRA = "missing_extra", 503  # training needs scikit-learn (the ml extra)
    INVALID_SECRET_NAME = "invalid_secret_name"  # noqa: S105  # pragma: allowlist secret (a code)
    # a receiver of our webhook refusing a delivery (``detect.webhook.verify``)
    INVALID_SIGNATURE = "invalid_signature", 401
    REPLAYED_EVENT = "replayed_event", 409
    NOT_FOUND = "not_found", 404
    METHOD_NOT_ALLOWED = "method_not_allowed", 405
    CONFLICT = "conflict", 409
    HTTP_ERROR = "http_error"  # any other HTTP refusal; its status is the refusal's own
    # keys
    MISSING_KEY = "missing_key", 401
    MALFORMED_KEY = "malformed_key", 401
    INVALID_KEY = "invalid_key", 401
    REVOKED_KEY = "revoked_key", 401
    EXPIRED_KEY = "expired_key", 401
    FORBIDDEN_ROLE = "forbidden_role", 403
    FORBIDDEN_FACILITY = "forbidden_facility", 403
    # push-back: retry later
    RATE_LIMITED = "rate_limited", 429
    OVERLOADED = "overloaded", 429
    STREAM_THROTTLED = "stream_throttled", 429
    STREAM_FULL = "stream_full", 429
    # quotas (SECURITY.md, "Quotas"): a facility or key went past what it is allowed
    QUOTA_SENSORS = "quota_sensors", 403
    QUOTA_NEW_SENSORS_RATE = "quota_new_sensors_rate", 429
    QUOTA_READINGS_RATE = "quota_readings_rate", 429
    QUOTA_READ_RATE = "quota_read_rate", 429
    QUOTA_RESULT_SIZE = "quota_result_size", 403
    QUOTA_BACKLOG = "quota_backlog", 429  # the facility's readings wait unprocessed
    # a dependency is away: nothing was done
    STREAM_UNAVAILABLE = "stream_unavailable", 503
    DATABASE_UNAVAILABLE = "database_unavailable", 503
    REDIS_UNAVAILABLE = "redis_unavailable", 503
    INTERNAL_ERROR = "internal_error", 500
    # connection limits (the web server answers these itself, then closes the connection)
    HEAD_TIMEOUT = "head_timeout", 408
    HEADERS_TOO_LARGE = "headers_too_large", 431
    TOO_MANY_CONNECTIONS = "too_many_connections", 503


class PlantstreamError(Exception):
    """Root of every error plantstream raises on purpose."""


class ConfigError(PlantstreamError):
    """A setting is missing or invalid."""


class ServiceError(PlantstreamError):
    """An embedded PostgreSQL or Redis server could not be managed."""


class StorageError(PlantstreamError):
    """PostgreSQL or Redis failed in a way the caller should know about."""


class LeaseLostError(StorageError):
    """The shard lease moved to another processor; the batch was not committed."""


class SinkProcessError(PlantstreamError):
    """A sink's child process (detection's) failed a batch, died, hung or could not start;
    the sink is behind until its catch-up replays what was not evaluated."""


class StreamError(PlantstreamError):
    """The stream backend failed."""


class StreamUnavailableError(StreamError):
    """The stream cannot take writes now; nothing of the batch was written."""


class PushBackError(PlantstreamError):
    """Not now: nothing was accepted, the same request may be sent after ``retry_after`` s."""

    default_code = ErrorCode.OVERLOADED

    def __init__(
        self, message: str, *, retry_after: float = 1.0, code: ErrorCode | str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = ErrorCode(code) if code is not None else self.default_code


class RateLimitedError(PushBackError):
    """This key sent more requests than its rate allows."""

    default_code = ErrorCode.RATE_LIMITED


class OverloadedError(PushBackError):
    """This process already works on as many requests as it will hold."""

    default_code = ErrorCode.OVERLOADED


class StreamThrottledError(StreamError, PushBackError):
    """The stream pushes back (throttled shards, or ``stream_full``); retry later.

    A stream error too, so a reader that backs off on any stream failure backs off here.
    """

    default_code = ErrorCode.STREAM_THROTTLED


class InvalidInputError(PlantstreamError):
    """Bad input, with a stable machine-readable ``code`` for clients.

    ``code`` is an ``ErrorCode`` (a bare string must be one of its values).
    """

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    @property
    def status(self) -> int:
        return self.code.status


class InvalidModelError(InvalidInputError):
    """A plant model document is not valid; ``issues`` says where (line, column) and what."""

    def __init__(self, source: str, issues: list[tuple[int, int, str, str]]) -> None:
        first = issues[0] if issues else (0, 0, "", "the model is not valid")
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(
            ErrorCode.INVALID_MODEL, f"{source}:{first[0]}:{first[1]}: {first[3]}{more}"
        )
        self.source = source
        self.issues = issues  # (line, column, path, message), lines and columns from 1


class AuthError(InvalidInputError):
    """The key is missing, unknown, revoked, expired or not allowed here (401 or 403)."""

    def __init__(self, code: ErrorCode | str, message: str, *, status: int | None = None) -> None:
        super().__init__(code, message)
        self._status = status  # kept for callers that still pass it; the code's is the rule

    @property
    def status(self) -> int:
        return self._status if self._status is not None else self.code.status
