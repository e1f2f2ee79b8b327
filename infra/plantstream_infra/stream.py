"""The Kinesis data stream: KMS-encrypted with the stream key, provisioned or on-demand."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext

SHARD_METRICS = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingRecords",
    "IteratorAgeMilliseconds",
    "ReadProvisionedThroughputExceeded",
    "WriteProvisionedThroughputExceeded",
]


@dataclass(frozen=True)
class StreamArgs:
    ctx: StackContext
    key_arn: pulumi.Input[str]


class Stream(pulumi.ComponentResource):
    """One stream; readings are keyed by device so one device always lands on one shard."""

    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: StreamArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:stream:Stream", name, None, opts)
        ctx = args.ctx
        cfg = ctx.settings.stream
        provisioned = cfg.mode == "PROVISIONED"
        stream_name = ctx.name("sensor-data-stream")
        stream = aws.kinesis.Stream(
            f"{name}-stream",
            name=stream_name,
            shard_count=cfg.shard_count if provisioned else None,
            stream_mode_details={"stream_mode": cfg.mode},
            retention_period=cfg.retention_hours,
            encryption_type="KMS",
            kms_key_id=args.key_arn,
            shard_level_metrics=SHARD_METRICS,
            tags=ctx.tags(aws.kinesis.Stream, stream_name),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name = stream.name
        self.arn = stream.arn
        self.register_outputs({"name": self.name, "arn": self.arn})
