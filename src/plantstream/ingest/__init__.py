"""Ingest: readings from any adapter (HTTP today) into the stream, in registered formats."""

from plantstream.ingest.admission import InflightGate, RateLimiter
from plantstream.ingest.codecs import CODECS, Codec, CodecRegistry
from plantstream.ingest.partitioning import gateway_partition_key, pack, partition_key
from plantstream.ingest.service import Accepted, IngestService, authorize_writer

__all__ = [
    "CODECS",
    "Accepted",
    "Codec",
    "CodecRegistry",
    "InflightGate",
    "IngestService",
    "RateLimiter",
    "authorize_writer",
    "gateway_partition_key",
    "pack",
    "partition_key",
]
