"""Composes the components into the plantstream stack and names its outputs.

``__main__.py`` (``pulumi up``) and the offline check both call ``define_stack``.
"""

from __future__ import annotations

from typing import Any

import pulumi

from .cache import Cache, CacheArgs
from .context import make_context
from .database import Database, DatabaseArgs
from .frontdoor import FrontDoor, FrontDoorArgs
from .image import Image, ImageArgs
from .iot import Iot, IotArgs
from .keys import Keys, KeysArgs
from .network import Network, NetworkArgs
from .observability import Observability, ObservabilityArgs
from .secrets import Secrets, SecretsArgs
from .services import Services, ServicesArgs
from .settings import SettingsError, StackSettings
from .stream import Stream, StreamArgs


def define_stack(settings: StackSettings) -> dict[str, Any]:
    """Declare every resource; return the stack outputs (names match what the seeds export)."""
    ctx = make_context(settings)
    s = ctx.suffix
    purposes: tuple[str, ...] = ("stream", "database", "cache", "secrets", "logs")
    if not settings.services.image:
        purposes += ("images",)
    keys = Keys(f"keys-{s}", KeysArgs(ctx, purposes))
    network = Network(f"network-{s}", NetworkArgs(ctx, keys.arn("logs")))
    stream = Stream(f"stream-{s}", StreamArgs(ctx, keys.arn("stream")))
    redis_group_id = ctx.name("redis")
    secrets = Secrets(
        f"secrets-{s}", SecretsArgs(ctx, keys.arn("secrets"), keys.arn("logs"), redis_group_id)
    )
    cache = Cache(
        f"cache-{s}",
        CacheArgs(
            ctx,
            network.vpc_id,
            network.private_subnet_ids,
            keys.arn("cache"),
            keys.arn("logs"),
            secrets.redis_auth_token,
        ),
    )
    database = Database(
        f"database-{s}",
        DatabaseArgs(
            ctx,
            network.vpc_id,
            network.private_subnet_ids,
            network.availability_zones,
            keys.arn("database"),
            keys.arn("secrets"),
            keys.arn("logs"),
        ),
    )
    image = Image(
        f"image-{s}", ImageArgs(ctx, keys.arn("images") if "images" in purposes else None)
    )
    front = FrontDoor(
        f"frontdoor-{s}",
        FrontDoorArgs(
            ctx,
            network.vpc_id,
            network.public_subnet_ids,
            network.private_subnet_ids,
            settings.services.container_port,
            stream.name,
            stream.arn,
            keys.arn("stream"),
            keys.arn("logs"),
        ),
    )
    services_args = ServicesArgs(
        ctx=ctx,
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        s3_prefix_list_id=network.s3_prefix_list_id,
        image=image.ref,
        image_repository_arn=image.repository_arn,
        images_key_arn=keys.arn("images") if "images" in purposes else None,
        stream_name=stream.name,
        stream_arn=stream.arn,
        stream_key_arn=keys.arn("stream"),
        secrets_key_arn=keys.arn("secrets"),
        logs_key_arn=keys.arn("logs"),
        db_endpoint=database.endpoint,
        db_port=database.port,
        db_name=database.database_name,
        db_username=database.username,
        db_secret_arn=database.secret_arn,
        db_security_group_id=database.security_group_id,
        redis_endpoint=cache.endpoint,
        redis_port=cache.port,
        redis_auth_secret_arn=secrets.redis_auth_secret_arn,
        server_secret_arn=secrets.server_secret_arn,
        redis_security_group_id=cache.security_group_id,
        alb_security_group_id=front.alb_security_group_id,
        target_groups=front.target_groups,
        listener=front.listener,
        listener_rules=[front.ingest_rule],
        database_ready=database.ready,
    )
    services = Services(f"services-{s}", services_args)
    iot = (
        Iot(
            f"iot-{s}",
            IotArgs(
                ctx=ctx,
                services=services_args,
                cluster_arn=services.cluster_arn,
                logs_key_arn=keys.arn("logs"),
                secrets_key_arn=keys.arn("secrets"),
            ),
        )
        if settings.iot.enabled
        else None
    )
    observability = Observability(
        f"observability-{s}",
        ObservabilityArgs(
            ctx=ctx,
            logs_key_arn=keys.arn("logs"),
            stream_name=stream.name,
            processor_log_group=services.log_groups["processor"].name,
            database_kind=database.kind,
            database_identifier=database.identifier,
            redis_group_id=cache.replication_group_id,
            cluster_name=services.cluster_name,
            processor_service_name=services.services["processor"].name,
            api_gateway_name=ctx.name("ingest-api") if settings.front_door.api_gateway else None,
        ),
    )

    outputs: dict[str, Any] = {
        "preset": settings.preset,
        "environment_suffix": s,
        "region": settings.region,
        "vpc_id": network.vpc_id,
        "public_subnet_ids": network.public_subnet_ids,
        "private_subnet_ids": network.private_subnet_ids,
        "kinesis_stream_name": stream.name,
        "kinesis_stream_arn": stream.arn,
        "database_kind": database.kind,
        "database_identifier": database.identifier,
        "database_endpoint": database.endpoint,
        "database_reader_endpoint": database.reader_endpoint,
        "database_port": database.port,
        "database_arn": database.arn,
        "database_name": database.database_name,
        "database_username": database.username,
        "db_secret_arn": database.secret_arn,
        "redis_endpoint": cache.endpoint,
        "redis_port": cache.port,
        "redis_replication_group_id": cache.replication_group_id,
        "redis_auth_secret_arn": secrets.redis_auth_secret_arn,
        "server_secret_arn": secrets.server_secret_arn,
        "kms_key_id": keys.primary_key_id,
        "kms_key_ids": keys.key_ids,
        "ecs_cluster_name": services.cluster_name,
        "ecs_cluster_arn": services.cluster_arn,
        "ecs_service_names": {r: svc.name for r, svc in services.services.items()},
        "ecs_task_definition_arns": {r: t.arn for r, t in services.task_definitions.items()},
        "ecs_tasks_security_group_id": services.tasks_security_group_id,
        "image": image.ref,
        "alb_dns_name": front.alb_dns_name,
        "api_url": front.url,
        "alb_internal": not settings.front_door.certificate_arn,
        "alarm_topic_arn": observability.topic_arn,
        "alarm_names": observability.alarm_names,
        "log_group_names": {r: g.name for r, g in services.log_groups.items()},
    }
    # The seeds' own output names, so their integration tests find what they expect.
    if database.kind == "aurora-serverless":
        outputs["aurora_cluster_endpoint"] = database.endpoint
        outputs["aurora_cluster_arn"] = database.arn
    else:
        outputs["rds_endpoint"] = database.endpoint_with_port  # host:port, as RDS reports it
        outputs["rds_arn"] = database.arn
    if front.ingest_api_url is not None:
        outputs["ingest_api_url"] = front.ingest_api_url
        outputs["api_gateway_url"] = front.ingest_api_base_url
        outputs["api_gateway_id"] = front.api_gateway_id
        outputs["api_gateway_stage"] = front.api_gateway_stage
    if iot is not None:
        outputs["iot_endpoint"] = iot.endpoint
        outputs["iot_device_policy_names"] = [p.name for p in iot.device_policies.values()]
        outputs["iot_thing_group_names"] = {f: g.name for f, g in iot.groups.items()}
        outputs["iot_thing_names"] = {k: t.name for k, t in iot.things.items()}
        outputs["mqtt_bridge_service_name"] = iot.bridge.service.name
        outputs["mqtt_bridge_identity_secret_arn"] = iot.bridge_identity_secret_arn
        outputs["mqtt_bridge_log_group_name"] = iot.bridge.log_group.name
    outputs["seed_deviations"] = dict(settings.seed_deviations)
    for alias, output in settings.output_aliases.items():
        if output not in outputs:
            raise SettingsError(
                f"plantstream:outputAliases.{alias} names unknown output {output!r}"
            )
        outputs[alias] = outputs[output]
    return outputs


def export_all(outputs: dict[str, Any]) -> None:
    for key, value in outputs.items():
        pulumi.export(key, value)
