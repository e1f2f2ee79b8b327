"""API Gateway REST ``POST /ingest/{facility}`` straight into Kinesis (IAM auth, per facility):
the way in from outside the VPC that needs no certificate, as seed 004 has. Built as children
of the FrontDoor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext

ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "user": "$context.identity.user",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "path": "$context.path",  # /<stage>/ingest/<facility>: which facility was written
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationStatus": "$context.integration.status",
    }
)
# ``POST /ingest/{facility}``: the facility is in the PATH, so IAM can confine a caller to one
# (execute-api:Invoke on .../POST/ingest/plant-a). The record's data is the client's body, byte
# for byte, in an envelope that carries the path facility (plantstream.ingest.codecs
# gateway_envelope); the processor refuses a body naming another facility (forbidden_facility).
# VTL (Velocity, as API Gateway documents it): $input.params().path is the map of the path
# parameters only (plain $input.params('facility') would also search the query string and the
# headers), and the parameter is required; $util.escapeJavaScript escapes " and \ (a facility
# id has neither: one that does fails the processor's id check); $q is a lone double quote, so
# the envelope is built in an interpolated string without any escape syntax of Velocity's own.
# One body becomes one record with one partition key. The app keys a record by (facility,
# device) (stream/hashing.partition_key -> "<facility>/<device>"); a batch has many devices, so
# this path keys by the (path) facility alone: every device of the facility, and so each
# device, stays on one shard in order. The processor re-validates and re-packs per device.
FACILITY_PARAM = "facility"
PUT_RECORD_TEMPLATE = """#set($q = '"')
#set($facility = $util.escapeJavaScript($input.params().path.get('facility')))
#set($head = "{${q}plantstream_gateway${q}: 1, ${q}facility${q}: ${q}${facility}${q}")
#set($envelope = "${head}, ${q}body${q}: $input.body}")
{
  "StreamName": "%s",
  "Data": "$util.base64Encode($envelope)",
  "PartitionKey": "$facility"
}"""
# Kinesis takes a record of at most 1 MiB (data plus partition key); 256 bytes are left for the
# envelope (52 bytes and the facility) and the key (the facility), enough for a facility id of
# 64 characters (a longer one is refused by the processor's id check); a larger body is
# refused by Kinesis and answered 400. Every response says
# the limit, so a client can split its batch (the ALB path takes up to max_body_bytes, 4 MiB).
MAX_BODY_BYTES = 1024 * 1024 - 256
LIMIT_HEADER = "X-Plantstream-Max-Body-Bytes"


@dataclass(frozen=True)
class IngestApiArgs:
    ctx: StackContext
    stream_name: pulumi.Output[str]
    stream_arn: pulumi.Output[str]
    stream_key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]


@dataclass(frozen=True)
class IngestApi:
    api_id: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    base_url: pulumi.Output[str]  # the stage's invoke URL
    url: pulumi.Output[str]  # POST to <url>/<facility>


def _assume() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Principal": {"Service": "apigateway.amazonaws.com"},
                }
            ],
        }
    )


def _logging_account(
    parent: pulumi.Resource, name: str, ctx: StackContext
) -> aws.apigateway.Account:
    """The region-wide role API Gateway writes execution and access logs with.

    It is one setting per account and region, shared with every other API there: a destroy of
    this stack leaves it (and its role) in place instead of breaking their logging, and a
    redeploy creates a role with a new name (name_prefix) rather than colliding with it.
    """
    retained = pulumi.ResourceOptions(parent=parent, retain_on_delete=True)
    role = aws.iam.Role(
        f"{name}-apigw-logs-role",
        name_prefix=ctx.name("apigw-cw")[:30] + "-",
        assume_role_policy=_assume(),
        tags=ctx.tags(aws.iam.Role, ctx.name("apigw-cloudwatch-role")),
        opts=retained,
    )
    logs = pulumi.Output.concat(
        "arn:", ctx.partition, f":logs:{ctx.region}:", ctx.account_id, ":log-group:"
    )
    # What AmazonAPIGatewayPushToCloudWatchLogs grants, on log groups instead of "*":
    # API Gateway's own execution-log groups and our access-log groups.
    policy = aws.iam.RolePolicy(
        f"{name}-apigw-logs-policy",
        role=role.id,
        policy=pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "FindLogGroups",
                        "Effect": "Allow",
                        "Action": ["logs:DescribeLogGroups"],
                        "Resource": pulumi.Output.concat(logs, "*"),
                    },
                    {
                        "Sid": "WriteApiLogs",
                        "Effect": "Allow",
                        "Action": [
                            "logs:CreateLogGroup",
                            "logs:CreateLogStream",
                            "logs:DescribeLogStreams",
                            "logs:PutLogEvents",
                            "logs:GetLogEvents",
                            "logs:FilterLogEvents",
                        ],
                        "Resource": [
                            pulumi.Output.concat(logs, "API-Gateway-Execution-Logs_*"),
                            pulumi.Output.concat(logs, "/plantstream/apigateway-access-*"),
                        ],
                    },
                ],
            }
        ),
        opts=retained,
    )
    # Without the policy in place API Gateway refuses the role ("role ARN does not have
    # required permissions"): wait for it, not only for the role.
    return aws.apigateway.Account(
        f"{name}-apigw-account",
        cloudwatch_role_arn=role.arn,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[policy], retain_on_delete=True),
    )


def ingest_api(parent: pulumi.Resource, name: str, args: IngestApiArgs) -> IngestApi:
    """Declare the API, its Kinesis integration, stage, logging and settings."""
    ctx = args.ctx
    cfg = ctx.settings.front_door
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        f"{name}-apigw-kinesis-role",
        name=ctx.name("apigw-kinesis-role"),
        assume_role_policy=_assume(),
        tags=ctx.tags(aws.iam.Role, ctx.name("apigw-kinesis-role")),
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-apigw-kinesis-put",
        name=ctx.name("apigw-kinesis-put"),
        role=role.id,
        policy=pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "WriteTheStream",
                        "Effect": "Allow",
                        "Action": ["kinesis:PutRecord", "kinesis:PutRecords"],
                        "Resource": args.stream_arn,
                    },
                    {
                        "Sid": "EncryptRecords",
                        "Effect": "Allow",
                        "Action": ["kms:GenerateDataKey"],
                        "Resource": args.stream_key_arn,
                    },
                ],
            }
        ),
        opts=child,
    )
    account = _logging_account(parent, name, ctx)
    access_logs = aws.cloudwatch.LogGroup(
        f"{name}-apigw-access-logs",
        name=f"/plantstream/apigateway-access-{ctx.suffix}",
        retention_in_days=ctx.settings.log_retention_days,
        kms_key_id=args.logs_key_arn,
        tags=ctx.tags(aws.cloudwatch.LogGroup),
        opts=child,
    )

    api_name = ctx.name("ingest-api")
    api = aws.apigateway.RestApi(
        f"{name}-ingest-api",
        name=api_name,
        description="IAM-authenticated ingest straight into Kinesis",
        endpoint_configuration={"types": "REGIONAL"},
        tags=ctx.tags(aws.apigateway.RestApi, api_name),
        opts=child,
    )
    # /ingest has no method of its own (the facility-less POST /ingest was removed: it let
    # every caller write for every facility); /ingest/{facility} takes the POST.
    ingest = aws.apigateway.Resource(
        f"{name}-ingest-resource",
        rest_api=api.id,
        parent_id=api.root_resource_id,
        path_part="ingest",
        opts=child,
    )
    resource = aws.apigateway.Resource(
        f"{name}-ingest-facility-resource",
        rest_api=api.id,
        parent_id=ingest.id,
        path_part=f"{{{FACILITY_PARAM}}}",
        opts=child,
    )
    method = aws.apigateway.Method(
        f"{name}-ingest-post",
        rest_api=api.id,
        resource_id=resource.id,
        http_method="POST",
        authorization="AWS_IAM",
        request_parameters={f"method.request.path.{FACILITY_PARAM}": True},
        opts=child,
    )
    template = args.stream_name.apply(lambda s: PUT_RECORD_TEMPLATE % s)
    uri = pulumi.Output.concat(
        "arn:", ctx.partition, f":apigateway:{ctx.region}:kinesis:action/PutRecord"
    )
    integration = aws.apigateway.Integration(
        f"{name}-ingest-kinesis",
        rest_api=api.id,
        resource_id=resource.id,
        http_method=method.http_method,
        type="AWS",
        integration_http_method="POST",
        uri=uri,
        credentials=role.arn,
        passthrough_behavior="NEVER",
        request_parameters={
            "integration.request.header.Content-Type": "'application/x-amz-json-1.1'"
        },
        request_templates={"application/json": template},
        opts=child,
    )
    header = f"method.response.header.{LIMIT_HEADER}"
    responses = []
    for status, pattern in (("200", None), ("400", r"4\d{2}"), ("500", r"5\d{2}")):
        method_response = aws.apigateway.MethodResponse(
            f"{name}-ingest-{status}",
            rest_api=api.id,
            resource_id=resource.id,
            http_method=method.http_method,
            status_code=status,
            response_parameters={header: True},
            opts=child,
        )
        responses.append(
            aws.apigateway.IntegrationResponse(
                f"{name}-ingest-{status}-integration",
                rest_api=api.id,
                resource_id=resource.id,
                http_method=method.http_method,
                status_code=method_response.status_code,
                selection_pattern=pattern,
                response_parameters={header: f"'{MAX_BODY_BYTES}'"},
                response_templates={
                    "application/json": (
                        '{"accepted": 1, "shardId": "$input.path(\'$.ShardId\')"}'
                        if status == "200"
                        else '{"error": {"code": "stream_rejected", '
                        '"message": "$util.escapeJavaScript($input.path(\'$.message\'))", '
                        f'"maxBodyBytes": {MAX_BODY_BYTES}}}}}'
                    )
                },
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[integration]),
            )
        )
    redeploy = template.apply(
        lambda t: hashlib.sha256((t + ACCESS_LOG_FORMAT + str(MAX_BODY_BYTES)).encode()).hexdigest()
    )
    deployment = aws.apigateway.Deployment(
        f"{name}-ingest-deployment",
        rest_api=api.id,
        triggers={"redeploy": redeploy},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[method, integration, *responses]),
    )
    stage = aws.apigateway.Stage(
        f"{name}-ingest-stage",
        rest_api=api.id,
        deployment=deployment.id,
        stage_name=cfg.api_stage_name,
        xray_tracing_enabled=True,
        access_log_settings={"destination_arn": access_logs.arn, "format": ACCESS_LOG_FORMAT},
        tags=ctx.tags(aws.apigateway.Stage, ctx.name(f"ingest-api-{cfg.api_stage_name}")),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[account]),
    )
    aws.apigateway.MethodSettings(
        f"{name}-ingest-settings",
        rest_api=api.id,
        stage_name=stage.stage_name,
        method_path="*/*",
        # Data trace would copy sensor payloads into logs (seed 004 enabled it): off.
        settings={
            "logging_level": "INFO",
            "metrics_enabled": True,
            "data_trace_enabled": False,
            "throttling_burst_limit": 500,
            "throttling_rate_limit": 1000,
        },
        opts=child,
    )
    return IngestApi(
        api_id=api.id,
        stage_name=stage.stage_name,
        base_url=stage.invoke_url,
        url=pulumi.Output.concat(stage.invoke_url, "/ingest"),  # POST to <url>/<facility>
    )
