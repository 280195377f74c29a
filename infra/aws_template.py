"""Turn the SAM template `chalice package` writes into one that deploys everything the code relies on.

Chalice emits the functions, the API, the SQS and Kinesis event sources of the decorators and the schedule
of `reconcile_seat_maps`, one IAM role with `Resource: "*"` for all of them, and nothing else. This module
patches what it emitted (it never adds a second event source) and adds the rest:

- the SQS booking queue and FIFO request queue, each with its DLQ and a redrive policy (`MAX_RECEIVE_COUNT`),
  visibility timeouts of at least 6x the consuming function's timeout (AWS's guidance for SQS event sources),
  the same attributes `infra/provision.py` gives them on the emulator and LocalStack;
- stream_state's request stream and decision changelog (Kinesis, shard count and retention as parameters);
- event sources with `FunctionResponseTypes: [ReportBatchItemFailures]` (Chalice cannot set it,
  aws/chalice#2029): the ledger processor strictly in order (ParallelizationFactor 1, no bisecting, retried
  until it succeeds), the persister bisecting and retried until MySQL returns (a batch is never parked; only
  if an operator bounds `PersisterMaxRetryAttempts` does a batch's shard and sequence range go to an SQS
  failure queue); the SQS consumers' concurrency capped at the event source (ScalingConfig) and by
  reserved concurrency, so MySQL sees a bounded number of writers;
- one role per function with exactly the actions on exactly the queues and streams its code path uses, and its
  own log group; the only `Resource: "*"` is the network-interface statement VPC functions need (AWS's
  EC2 actions for it cannot be scoped to a resource);
- every function in the VPC (subnets and security groups as parameters) to reach ElastiCache and RDS, with
  optional interface endpoints for SQS and Kinesis (else the subnets need a NAT gateway);
- the ledger processor's ephemeral storage (/tmp holds its RocksDB) as a parameter;
- CloudWatch alarms that show a stuck consumer: the ledger processor's and the persister's IteratorAge, and a
  message in either SQS DLQ or the persister's failure queue (notifying `AlarmTopicArn` when set);
- the event sources' batch size, batching window and concurrency (SQS ScalingConfig.MaximumConcurrency,
  Kinesis ParallelizationFactor) as parameters whose defaults come from the bench (EVENT_SOURCE_DEFAULTS);
- the Redis: an ElastiCache replication group, in cluster mode or not (`RedisClusterMode`: `NumNodeGroups`
  shards of `ReplicasPerNodeGroup` replicas each, or one primary with its replicas), TLS, Multi-AZ, with a
  parameter group of `maxmemory-policy: noeviction` (a seat hold or an idempotency record must never be
  evicted; chalicelib/adapters/redis_policy.py refuses any other policy) and `cluster-enabled` to match; the
  functions get its endpoint in REDIS_URL (the configuration endpoint in cluster mode, a seed node for
  redis-py's cluster client) and REDIS_CLUSTER "1" or "0";
- a CloudFront distribution in front of the API's stage (parameter `CdnEnabled`, output `CdnEndpointURL`):
  the seat map (`/performances/*/seats`, GET/HEAD only) is cached as its `Cache-Control` says (s-maxage 1 s,
  capped by the cache policy's MaxTTL, plus stale-while-revalidate 1 s: a shared copy is at most 2 s old,
  the contract's staleness bound in docs/api.md), keyed on `view`, `since` and gzip or not; everything else,
  every write among it, goes through uncached (AWS's CachingDisabled policy); no error answer is cached.

Secrets are never in the template: the `prod` stage of .chalice/config.json holds CloudFormation dynamic
references (`{{resolve:secretsmanager:...}}`), resolved at deploy time; `build_template` refuses a prod
template whose ADMIN_TOKEN or database password is anything else.

The `localstack` target (the compose path) keeps the queues and streams out of the template, because
`infra/provision.py` creates them there exactly as on the emulator, and leaves out the VPC, the alarms and
the Redis (the compose LocalStack runs neither CloudWatch nor ElastiCache).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.conditional import SEAT_MAP_SHARED_MAX_AGE
from chalicelib.config import Settings
from chalicelib.openapi import SIGNED_IN_ROUTES
from infra.provision import DLQ_RETENTION_SECONDS

PARTIAL_BATCH = "ReportBatchItemFailures"
# The settings every function gets from the template: the names of the queues and streams it creates.
RESOURCE_NAME_SETTINGS = (
    "booking_queue_name",
    "booking_dlq_name",
    "fifo_queue_name",
    "fifo_dlq_name",
    "request_stream_name",
    "changelog_stream_name",
)
# The variables check_secrets inspects in the prod stage.
ADMIN_TOKEN, AWS_ENDPOINT_URL = Settings.env_name("admin_token"), Settings.env_name("aws_endpoint_url")
TOKEN_SIGNING_KEY, DEV_TOKENS = Settings.env_name("token_signing_key"), Settings.env_name("dev_tokens")
IDENTITY_PROVIDER = Settings.env_name("identity_provider")
# The users' identities in AWS: a Cognito user pool, and API Gateway's authorizer of it on every route whose
# caller must be signed in (the swagger Chalice's CognitoUserPoolAuthorizer would emit).
USER_POOL, USER_POOL_CLIENT, USER_POOL_AUTHORIZER = "UserPool", "UserPoolClient", "SeatBookingUsers"
TARGETS = ("aws", "localstack")
# AWS: "set the source queue's visibility timeout to at least six times the timeout that you configure on
# your function" (Lambda developer guide, SQS event sources), so throttled retries do not redeliver early.
VISIBILITY_TO_TIMEOUT_RATIO = 6
DYNAMIC_SECRET = re.compile(r"^\{\{resolve:secretsmanager:[^{}]+\}\}$")
VPC_NETWORK_INTERFACE_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]
SQS_EVENT_SOURCE_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
KINESIS_EVENT_SOURCE_ACTIONS = [
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
]
# SqsQueue: get_queue_url once, then send_message / change_message_visibility; /health: get_queue_attributes.
SQS_PRODUCER_ACTIONS = ["sqs:GetQueueUrl", "sqs:SendMessage", "sqs:GetQueueAttributes"]
SQS_BACKOFF_ACTIONS = ["sqs:GetQueueUrl", "sqs:ChangeMessageVisibility"]
# KinesisStream.put / put_many (PutRecords, batched: adapters/kinesis_batcher.py) and ping (/health).
KINESIS_PRODUCER_ACTIONS = ["kinesis:PutRecords", "kinesis:DescribeStreamSummary"]
# KinesisStream.read_since: the ledger catches up with the changelog before each batch.
KINESIS_READER_ACTIONS = ["kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"]

BOOKING_QUEUE, BOOKING_DLQ = "BookingQueue", "BookingDeadLetterQueue"
FIFO_QUEUE, FIFO_DLQ = "FifoRequestQueue", "FifoRequestDeadLetterQueue"
REQUEST_STREAM, CHANGELOG_STREAM = "RequestStream", "ChangelogStream"
PERSISTER_FAILURES = "PersisterFailureQueue"
REDIS_PARAMETER_GROUP = "RedisParameterGroup"
REDIS, REDIS_SUBNET_GROUP = "Redis", "RedisSubnetGroup"
REDIS_CLUSTER_CONDITION = "WithRedisClusterMode"
# The cluster helper's setting (chalicelib/config.py, REDIS_CLUSTER=1: redis-py's cluster client everywhere).
REDIS_CLUSTER_VARIABLE = "REDIS_CLUSTER"
REDIS_ENGINE_VERSION = "7.1"
# A Kinesis consumer this far behind for this long is stuck (retrying one batch), not merely busy: a healthy
# one keeps its IteratorAge at seconds. Five one-minute maxima in a row ride out a single slow batch.
ITERATOR_AGE_PERIOD_SECONDS = 60
ITERATOR_AGE_THRESHOLD_MS = 300_000
ITERATOR_AGE_EVALUATION_PERIODS = 5
# SQS sends its queue metrics once a minute at best: a five-minute maximum still sees a single message.
QUEUE_ALARM_PERIOD_SECONDS = 300

CDN, SEAT_MAP_CACHE_POLICY = "SeatMapCdn", "SeatMapCachePolicy"
CDN_ORIGIN_ID = "api"
# The only cached paths: the seat map (full view, compact view, deltas). A CloudFront `*` also matches `/`.
SEAT_MAP_PATH_PATTERN = "/performances/*/seats"
# What a seat-map answer depends on besides its path (app.py's seat_map): the view, the delta's base version
# and whether the client takes gzip. If-None-Match is CloudFront's own business (it revalidates with ETags).
SEAT_MAP_QUERY_STRINGS = ["view", "since"]
# AWS's managed policies: no caching at all (TTLs 0, nothing in the key), and every viewer header, cookie and
# query string forwarded except Host (API Gateway answers only to its own host name).
CACHING_DISABLED_POLICY_ID = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_POLICY_ID = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ALL_METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
READ_METHODS = ["GET", "HEAD"]
# The error codes CloudFront may cache (10 s unless told otherwise, whatever the cache policy says): none is.
CDN_ERROR_CODES = (400, 403, 404, 405, 414, 500, 501, 502, 503, 504)


class TemplateError(ValueError):
    """The packaged app and the deployment disagree (an unknown function, a setting AWS would reject)."""


@dataclass(frozen=True)
class Grant:
    actions: tuple[str, ...]
    resource: str  # a logical id of a queue or stream


@dataclass(frozen=True)
class FunctionSpec:
    """What one Chalice function is: its trigger (event type, resource) and the AWS calls its code makes."""

    trigger: tuple[str, str] | None
    grants: tuple[Grant, ...]


def _grant(actions: list[str], *resources: str) -> tuple[Grant, ...]:
    return tuple(Grant(tuple(actions), resource) for resource in resources)


# Every function Chalice packages, keyed by its logical id. A new handler in app.py fails the build until it
# is described here: its permissions are a decision, not a default.
FUNCTIONS: dict[str, FunctionSpec] = {
    # Routes: redis_async and fifo_partition publish, stream_state puts requests and cancel releases;
    # /health pings both queues and the request stream.
    "APIHandler": FunctionSpec(
        None,
        _grant(SQS_PRODUCER_ACTIONS, BOOKING_QUEUE, FIFO_QUEUE)
        + _grant(KINESIS_PRODUCER_ACTIONS, REQUEST_STREAM),
    ),
    # The consumers set a failed message's visibility (backoff); Lambda's poller receives and deletes.
    "OnBookingEvent": FunctionSpec(
        ("SQS", BOOKING_QUEUE), _grant(SQS_EVENT_SOURCE_ACTIONS + SQS_BACKOFF_ACTIONS, BOOKING_QUEUE)
    ),
    "OnBookingRequestInLine": FunctionSpec(
        ("SQS", FIFO_QUEUE), _grant(SQS_EVENT_SOURCE_ACTIONS + SQS_BACKOFF_ACTIONS, FIFO_QUEUE)
    ),
    # The ledger processor reads the changelog (catch-up) and appends its decisions to it.
    "OnSeatRequest": FunctionSpec(
        ("Kinesis", REQUEST_STREAM),
        _grant(KINESIS_EVENT_SOURCE_ACTIONS, REQUEST_STREAM)
        + _grant(KINESIS_READER_ACTIONS + KINESIS_PRODUCER_ACTIONS, CHANGELOG_STREAM),
    ),
    # The persister tells the ledger who really holds a seat (a release on the request stream); its
    # event source sends what it gives up on to the failure queue (only if its retries are bounded).
    "OnSeatDecision": FunctionSpec(
        ("Kinesis", CHANGELOG_STREAM),
        _grant(KINESIS_EVENT_SOURCE_ACTIONS, CHANGELOG_STREAM)
        + _grant(KINESIS_PRODUCER_ACTIONS, REQUEST_STREAM)
        + _grant(["sqs:SendMessage"], PERSISTER_FAILURES),
    ),
    # Reconcile resends pending ledger releases on the request stream.
    "ReconcileSeatMaps": FunctionSpec(("Schedule", ""), _grant(KINESIS_PRODUCER_ACTIONS, REQUEST_STREAM)),
    # The hold sweeper gives expired holds' seats back: stream_state's through a release on the request
    # stream.
    "ExpireHolds": FunctionSpec(("Schedule", ""), _grant(KINESIS_PRODUCER_ACTIONS, REQUEST_STREAM)),
}
LEDGER, PERSISTER = "OnSeatRequest", "OnSeatDecision"
# Reserved concurrency per MySQL-writing consumer (parameter name, default). The booking consumer's default
# is what .chalice/config.json reserves for it, when it does.
CONCURRENCY = {
    "OnBookingEvent": ("BookingConsumerConcurrency", 10),
    "OnBookingRequestInLine": ("FifoConsumerConcurrency", 5),
    PERSISTER: ("PersisterConcurrency", 4),
}
RECONCILE_CONCURRENCY = 1  # two overlapping reconcile runs would only repeat each other's reads


@dataclass(frozen=True)
class EventSourceDefaults:
    """An event source's parameters (prefix + BatchSize, BatchingWindowSeconds, ParallelizationFactor) and
    their defaults; batch_size None: the decorator's batch_size in app.py, as Chalice packaged it."""

    prefix: str
    batch_size: int | None
    max_batch_size: int
    window_seconds: int | None  # None: no batching window (FIFO queues take none)
    parallelization: int | None = None  # Kinesis only


# Where the defaults come from (docs/benchmark.md, loadtests/results/20261202T195502Z; the worker in
# processes, docs/benchmark.md "Consumers in processes"):
# - SQS batch size 10, no window: a ReceiveMessage returns at most 10 messages, so a bigger batch is several
#   receives gathered over a window, and every confirm then waits for that window (a queue in a rush fills
#   10 at once anyway). The bench's receive + delete ceiling is 1,385 msgs/s at 10 a call with 2 pollers;
#   a consumer persisted 493 (redis_async) and 563 (fifo_partition) msgs/s from one process of 2 concurrent
#   batches, ~0.9 ms of consumer CPU per message: about 250 msgs/s per batch in flight, i.e. per Lambda
#   environment, so the default MaximumConcurrency (BookingConsumerConcurrency 10, FifoConsumerConcurrency
#   5, also reserved concurrency and MySQL connections) persists ~2,500 and ~1,250 msgs/s.
# - Kinesis batch size 100, no window: GetRecords returns ~5,050 records/s at 100 a call on the emulator,
#   and a window would delay every stream_state decision by its length. The ledger stays at
#   ParallelizationFactor 1 (order per shard is its correctness); the persister's entries are idempotent and
#   keyed per section (order per key is kept by any factor), default 1: at 150 decisions/s per shard
#   (stream_state drain) the request stream's PutRecord, not the persister, is the bottleneck.
EVENT_SOURCE_DEFAULTS = {
    "OnBookingEvent": EventSourceDefaults("BookingConsumer", None, 10_000, 0),
    "OnBookingRequestInLine": EventSourceDefaults("FifoConsumer", None, 10, None),
    "OnSeatRequest": EventSourceDefaults("LedgerProcessor", None, 10_000, 0),
    "OnSeatDecision": EventSourceDefaults("Persister", None, 10_000, 0, parallelization=1),
}


def enable_partial_batch_responses(template: dict) -> list[str]:
    """Add ReportBatchItemFailures to every SQS and Kinesis event of every function, in place; returns the
    events changed (function.event)."""
    changed = []
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") not in ("SQS", "Kinesis"):
                continue
            types = event.setdefault("Properties", {}).setdefault("FunctionResponseTypes", [])
            if PARTIAL_BATCH not in types:
                types.append(PARTIAL_BATCH)
            changed.append(f"{name}.{event_name}")
    return changed


def _sub(text: str) -> dict:
    return {"Fn::Sub": text}


def _ref(name: str) -> dict:
    return {"Ref": name}


def _number(default: int, description: str, minimum: int, maximum: int | None = None) -> dict:
    parameter = {"Type": "Number", "Default": default, "MinValue": minimum, "Description": description}
    if maximum is not None:
        parameter["MaxValue"] = maximum
    return parameter


def _alarm(
    description: str,
    *,
    namespace: str,
    metric: str,
    dimension: tuple[str, dict],
    period: int,
    evaluation_periods: int,
    threshold: int,
) -> dict:
    """An alarm when the metric's maximum is above `threshold` for `evaluation_periods` periods in a row;
    it notifies AlarmTopicArn when one is given."""
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
            "Statistic": "Maximum",
            "Period": period,
            "EvaluationPeriods": evaluation_periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            # No data is an idle stream or a quiet, empty queue: nothing is stuck.
            "TreatMissingData": "notBreaching",
            "AlarmActions": {"Fn::If": ["WithAlarmTopic", [_ref("AlarmTopicArn")], _ref("AWS::NoValue")]},
        },
    }


class _Builder:
    def __init__(self, template: dict, settings: Settings, target: str) -> None:
        self.template = template
        self.settings = settings
        self.target = target
        self.resources: dict = template.setdefault("Resources", {})
        self.parameters: dict = template.setdefault("Parameters", {})
        self.outputs: dict = template.setdefault("Outputs", {})
        self.names = {
            BOOKING_QUEUE: settings.booking_queue_name,
            BOOKING_DLQ: settings.booking_dlq_name,
            FIFO_QUEUE: settings.fifo_queue_name,
            FIFO_DLQ: settings.fifo_dlq_name,
            REQUEST_STREAM: settings.request_stream_name,
            CHANGELOG_STREAM: settings.changelog_stream_name,
        }
        self.functions = {
            name: resource
            for name, resource in self.resources.items()
            if resource.get("Type") == "AWS::Serverless::Function"
        }

    # --- references ---------------------------------------------------------------------------------------
    def arn(self, logical_id: str) -> dict:
        """A queue's or stream's ARN: from the resource when the template owns it, else from its name
        (LocalStack: infra/provision.py created it)."""
        if logical_id in self.resources:
            return {"Fn::GetAtt": [logical_id, "Arn"]}
        name = self.names[logical_id]
        if logical_id in (REQUEST_STREAM, CHANGELOG_STREAM):
            return _sub(f"arn:${{AWS::Partition}}:kinesis:${{AWS::Region}}:${{AWS::AccountId}}:stream/{name}")
        return _sub(f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{name}")

    # --- checks ---------------------------------------------------------------------------------------------
    def check_stage(self) -> None:
        """The package's environment is its stage's: building it for another stage's settings would mix
        two stages' queues and endpoints."""
        for name, function in self.functions.items():
            tag = str(function["Properties"].get("Tags", {}).get("aws-chalice", ""))
            stage = dict(part.split("=", 1) for part in tag.split(":") if "=" in part).get("stage")
            if stage != self.settings.stage:
                raise TemplateError(
                    f"{name} was packaged for stage {stage!r}, the settings are stage "
                    f"{self.settings.stage!r}: run `chalice package --stage {self.settings.stage}`"
                )

    def check_functions(self) -> None:
        unknown = sorted(set(self.functions) - set(FUNCTIONS))
        missing = sorted(set(FUNCTIONS) - set(self.functions))
        if unknown or missing:
            raise TemplateError(
                f"functions in the package and in infra/aws_template.FUNCTIONS differ: unknown {unknown}, "
                f"missing {missing}; describe each handler's trigger and AWS calls there"
            )
        for name, spec in FUNCTIONS.items():
            events = list(self.functions[name]["Properties"].get("Events", {}).values())
            types = [event.get("Type") for event in events]
            expected = [spec.trigger[0]] if spec.trigger else []
            if types != expected:
                raise TemplateError(f"{name}: Chalice emitted events {types}, expected {expected}")

    def check_queue_timing(self) -> None:
        visibility = self.settings.queue_visibility_timeout_seconds
        for name, spec in FUNCTIONS.items():
            # LocalStack does not throttle pollers the way AWS does; its stage keeps the local timing.
            if self.target == "aws" and spec.trigger and spec.trigger[0] == "SQS":
                timeout = int(self.functions[name]["Properties"].get("Timeout", 3))
                if visibility < VISIBILITY_TO_TIMEOUT_RATIO * timeout:
                    raise TemplateError(
                        f"{Settings.env_name('queue_visibility_timeout_seconds')}={visibility} is under "
                        f"{VISIBILITY_TO_TIMEOUT_RATIO}x {name}'s timeout ({timeout} s): raise it in the "
                        "stage's environment"
                    )
        window = self.settings.queue_retry_window_seconds() + 60
        if self.settings.pending_hold_deadline_seconds < window:
            raise TemplateError(
                f"{Settings.env_name('pending_hold_deadline_seconds')}="
                f"{self.settings.pending_hold_deadline_seconds} is under the "
                f"booking queue's retry window + 60 s ({window} s): reconcile would release live holds"
            )

    def check_secrets(self) -> None:
        """The prod stage keeps no secret in the template: dynamic references only."""
        for name, function in self.functions.items():
            env = function["Properties"].get("Environment", {}).get("Variables", {})
            for secret in (ADMIN_TOKEN, TOKEN_SIGNING_KEY):
                if not DYNAMIC_SECRET.match(str(env.get(secret, ""))):
                    raise TemplateError(
                        f"{name}: {secret} must be a {{{{resolve:secretsmanager:...}}}} reference"
                    )
            if env.get(IDENTITY_PROVIDER) != "cognito":
                raise TemplateError(f"{name}: {IDENTITY_PROVIDER} must be cognito on AWS")
            if str(env.get(DEV_TOKENS, "")).lower() not in ("", "0", "false"):
                raise TemplateError(
                    f"{name}: {DEV_TOKENS} must be off on AWS (anyone could sign in as anyone)"
                )
            for variable, value in env.items():  # DATABASE_URL, and REDIS_URL with an AUTH token
                password = _url_password(value) if isinstance(value, str) and "://" in value else None
                if password and not DYNAMIC_SECRET.match(password):
                    raise TemplateError(f"{name}: the password in {variable} must be a dynamic reference")
            if env.get(AWS_ENDPOINT_URL):
                raise TemplateError(f"{name}: {AWS_ENDPOINT_URL} must be empty on AWS")

    # --- parameters -----------------------------------------------------------------------------------------
    def add_parameters(self) -> None:
        chalice_reserved = self.functions["OnBookingEvent"]["Properties"].get("ReservedConcurrentExecutions")
        for function, (parameter, default) in CONCURRENCY.items():
            if function == "OnBookingEvent" and chalice_reserved:
                default = int(chalice_reserved)
            self.parameters[parameter] = _number(
                default,
                f"Reserved concurrency of {function} and the most concurrent batches its event source "
                "sends: each is about one MySQL connection (size against max_connections)",
                2,
            )
        self.parameters["PersisterMaxRetryAttempts"] = _number(
            -1,
            "Retries of a failing changelog batch (MySQL down). -1: until MySQL returns (within the "
            "changelog's retention), so no batch is ever parked. A bound sends the batch's shard and "
            "sequence range to the persister's failure queue once reached (its decisions then wait for an "
            "operator)",
            -1,
            10000,
        )
        for function, defaults in EVENT_SOURCE_DEFAULTS.items():
            self.add_event_source_parameters(function, defaults)
        self.parameters["LedgerEphemeralStorageMiB"] = _number(
            1024, "The ledger processor's /tmp (its RocksDB store), in MiB", 512, 10240
        )
        self.parameters["LogRetentionDays"] = {
            "Type": "Number",
            "Default": 30,
            "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653],
            "Description": "How long CloudWatch keeps the functions' logs",
        }
        if self.target != "aws":
            return
        self.parameters.update(
            {
                "SubnetIds": {
                    "Type": "List<AWS::EC2::Subnet::Id>",
                    "Description": "Private subnets (two or more AZs) that reach ElastiCache and RDS",
                },
                "SecurityGroupIds": {
                    "Type": "List<AWS::EC2::SecurityGroup::Id>",
                    "Description": "Security groups of the functions: allowed into Redis (6379) and MySQL "
                    "(3306); with VpcEndpointsInVpc, also into themselves on 443",
                },
                "VpcEndpointsInVpc": {
                    "Type": "String",
                    "Default": "",
                    "Description": "A VPC id: creates interface endpoints for SQS and Kinesis there. Empty: "
                    "none (then the subnets need a NAT gateway to reach SQS and Kinesis)",
                },
                "StreamShardCount": _number(
                    self.settings.stream_shard_count,
                    "Shards of each Kinesis stream (cost: per shard-hour; throughput: 1 MB/s or 1,000 "
                    "records/s written per shard)",
                    1,
                ),
                "RequestStreamRetentionHours": _number(24, "Retention of the request stream", 24, 8760),
                "ChangelogRetentionHours": _number(
                    168,
                    "Retention of the decision changelog: a fresh ledger replays it, so decisions older than "
                    "this are only enforced by MySQL's unique guard (over 24 h costs extra per shard-hour)",
                    24,
                    8760,
                ),
                "QueueRetentionSeconds": _number(
                    4 * 24 * 3600, "How long the booking and FIFO request queues keep a message", 60, 1209600
                ),
            }
        )
        self.parameters["AlarmTopicArn"] = {
            "Type": "String",
            "Default": "",
            "Description": "An SNS topic the alarms (stuck consumer, a message in a DLQ) notify. Empty: they "
            "only show in CloudWatch",
        }
        self.parameters["RedisParameterGroupFamily"] = {
            "Type": "String",
            "Default": "redis7",
            "Description": f"Engine family of the ElastiCache parameter group (that of Redis "
            f"{REDIS_ENGINE_VERSION}, the replication group's engine)",
        }
        self.parameters.update(
            {
                "RedisClusterMode": {
                    "Type": "String",
                    "Default": "false",
                    "AllowedValues": ["true", "false"],
                    "Description": "true: ElastiCache cluster mode, RedisNumNodeGroups shards (performances "
                    "spread over them by hash tag; functions get REDIS_CLUSTER=1). false: one primary and "
                    "its replicas (REDIS_CLUSTER=0). Changing it replaces the Redis (docs/deploy.md)",
                },
                "RedisNumNodeGroups": _number(
                    3, "Cluster mode: shards (node groups), each a primary with its replicas", 1, 500
                ),
                "RedisReplicasPerNodeGroup": _number(
                    1, "Replicas of each primary (at least one: automatic failover, Multi-AZ)", 1, 5
                ),
                "RedisNodeType": {
                    "Type": "String",
                    "Default": "cache.r7g.large",
                    "Description": "ElastiCache node type of every node",
                },
                "RedisSecurityGroupIds": {
                    "Type": "List<AWS::EC2::SecurityGroup::Id>",
                    "Description": "Security groups of the Redis nodes: allow 6379 from SecurityGroupIds",
                },
            }
        )
        self.parameters["CdnEnabled"] = {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": "A CloudFront distribution in front of the API that caches the seat map for about "
            "a second (output CdnEndpointURL). false: clients use EndpointURL",
        }
        self.parameters["CdnPriceClass"] = {
            "Type": "String",
            "Default": "PriceClass_100",
            "AllowedValues": ["PriceClass_100", "PriceClass_200", "PriceClass_All"],
            "Description": "The CloudFront edges that serve the API (100: North America, Europe, Israel)",
        }
        conditions = self.template.setdefault("Conditions", {})
        conditions["WithCdn"] = {"Fn::Equals": [_ref("CdnEnabled"), "true"]}
        conditions["WithVpcEndpoints"] = {"Fn::Not": [{"Fn::Equals": [_ref("VpcEndpointsInVpc"), ""]}]}
        conditions["WithAlarmTopic"] = {"Fn::Not": [{"Fn::Equals": [_ref("AlarmTopicArn"), ""]}]}
        conditions[REDIS_CLUSTER_CONDITION] = {"Fn::Equals": [_ref("RedisClusterMode"), "true"]}

    def add_event_source_parameters(self, function: str, defaults: EventSourceDefaults) -> None:
        (event,) = self.functions[function]["Properties"]["Events"].values()
        packaged = int(event["Properties"].get("BatchSize", 10))
        self.parameters[f"{defaults.prefix}BatchSize"] = _number(
            defaults.batch_size or packaged,
            f"Records per invocation of {function} (above 10 on SQS: only with a batching window)",
            1,
            defaults.max_batch_size,
        )
        if defaults.window_seconds is not None:
            self.parameters[f"{defaults.prefix}BatchingWindowSeconds"] = _number(
                defaults.window_seconds,
                f"Seconds {function}'s event source may gather a batch (every record waits up to this)",
                0,
                300,
            )
        if defaults.parallelization is not None:
            self.parameters[f"{defaults.prefix}ParallelizationFactor"] = _number(
                defaults.parallelization,
                f"Concurrent batches of {function} per shard (order is kept per partition key); shards x "
                "this should not exceed its reserved concurrency",
                1,
                10,
            )

    # --- queues and streams ---------------------------------------------------------------------------------
    def add_queues_and_streams(self) -> None:
        """The same queues infra/provision.py creates (names, DLQs, redrive, retention), as resources."""
        settings = self.settings
        for queue, dlq, fifo in ((BOOKING_QUEUE, BOOKING_DLQ, False), (FIFO_QUEUE, FIFO_DLQ, True)):
            fifo_properties = {"FifoQueue": True} if fifo else {}
            self.resources[dlq] = {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": self.names[dlq],
                    **fifo_properties,
                    "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                    "SqsManagedSseEnabled": True,
                },
            }
            self.resources[queue] = {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": self.names[queue],
                    **fifo_properties,
                    "VisibilityTimeout": settings.queue_visibility_timeout_seconds,
                    "MessageRetentionPeriod": _ref("QueueRetentionSeconds"),
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                        "maxReceiveCount": settings.max_receive_count,
                    },
                    "SqsManagedSseEnabled": True,
                },
            }
            self.outputs[f"{queue}Url"] = {"Value": _ref(queue)}
            self.outputs[f"{dlq}Url"] = {"Value": _ref(dlq)}
        for stream, retention in (
            (REQUEST_STREAM, "RequestStreamRetentionHours"),
            (CHANGELOG_STREAM, "ChangelogRetentionHours"),
        ):
            self.resources[stream] = {
                "Type": "AWS::Kinesis::Stream",
                "Properties": {
                    "Name": self.names[stream],
                    "ShardCount": _ref("StreamShardCount"),
                    "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                    "RetentionPeriodHours": _ref(retention),
                    "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
                },
            }
            self.outputs[f"{stream}Arn"] = {"Value": {"Fn::GetAtt": [stream, "Arn"]}}

    def add_persister_failure_queue(self) -> None:
        """Where the persister's event source sends a batch it gives up on: shard id and sequence range
        (Lambda sends the batch's position, not its records; they stay readable for the retention). By
        default it never gives up (PersisterMaxRetryAttempts -1): only an operator's bound fills it."""
        self.resources[PERSISTER_FAILURES] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": f"{self.settings.changelog_stream_name}-persister-failures",
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        }
        self.outputs[f"{PERSISTER_FAILURES}Url"] = {"Value": _ref(PERSISTER_FAILURES)}

    def add_vpc_endpoints(self) -> None:
        for logical_id, service in (("SqsEndpoint", "sqs"), ("KinesisEndpoint", "kinesis-streams")):
            self.resources[logical_id] = {
                "Type": "AWS::EC2::VPCEndpoint",
                "Condition": "WithVpcEndpoints",
                "Properties": {
                    "VpcEndpointType": "Interface",
                    "ServiceName": _sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
                    "VpcId": _ref("VpcEndpointsInVpc"),
                    "SubnetIds": _ref("SubnetIds"),
                    "SecurityGroupIds": _ref("SecurityGroupIds"),
                    "PrivateDnsEnabled": True,
                },
            }

    # --- identity -------------------------------------------------------------------------------------------
    def add_user_pool(self) -> None:
        """A Cognito user pool (users sign in with their email) and its app client, and API Gateway's
        Cognito authorizer on every signed-in route: a request without a valid ID token of the pool is
        answered 401 before any function runs, and the function reads the verified `sub`."""
        self.resources[USER_POOL] = {
            "Type": "AWS::Cognito::UserPool",
            "Properties": {
                "UsernameAttributes": ["email"],
                "AutoVerifiedAttributes": ["email"],
                "Policies": {"PasswordPolicy": {"MinimumLength": 12}},
            },
        }
        self.resources[USER_POOL_CLIENT] = {
            "Type": "AWS::Cognito::UserPoolClient",
            "Properties": {
                "UserPoolId": _ref(USER_POOL),
                "GenerateSecret": False,  # a browser or app client cannot keep a secret
                "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            },
        }
        api = self.resources["RestAPI"]["Properties"]["DefinitionBody"]
        api.setdefault("securityDefinitions", {})[USER_POOL_AUTHORIZER] = {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "x-amazon-apigateway-authtype": "cognito_user_pools",
            "x-amazon-apigateway-authorizer": {
                "type": "cognito_user_pools",
                "providerARNs": [{"Fn::GetAtt": [USER_POOL, "Arn"]}],
            },
        }
        for method, path in sorted(SIGNED_IN_ROUTES):
            operation = api["paths"].get(path, {}).get(method.lower())
            if operation is None:
                raise TemplateError(f"the package has no {method} {path}, a signed-in route of the contract")
            operation["security"] = [{USER_POOL_AUTHORIZER: []}]
        self.outputs["UserPoolId"] = {"Value": _ref(USER_POOL)}
        self.outputs["UserPoolClientId"] = {"Value": _ref(USER_POOL_CLIENT)}

    # --- functions ------------------------------------------------------------------------------------------
    def pass_prepared_bytes(self) -> None:
        """API Gateway turns a Lambda answer's base64 body back into bytes only where the request's Accept
        header matches one of the API's binary media types, and the seat map's gzip (chalicelib/prepared.py)
        goes to any client that accepts gzip: so every type is binary to the API. Nothing else changes for
        text: an answer not marked base64 (every JSON answer: Chalice's own binary_types stay as they are) is
        passed on as it is, and a request body arrives base64-encoded, which Chalice's Request decodes."""
        api = self.template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
        api["x-amazon-apigateway-binary-media-types"] = ["*/*"]

    def patch_events(self) -> None:
        enable_partial_batch_responses(self.template)
        for name, spec in FUNCTIONS.items():
            if not spec.trigger or spec.trigger[0] == "Schedule":
                continue
            kind, source = spec.trigger
            (event,) = self.functions[name]["Properties"]["Events"].values()
            properties = event["Properties"]
            defaults = EVENT_SOURCE_DEFAULTS[name]
            properties["BatchSize"] = _ref(f"{defaults.prefix}BatchSize")
            if defaults.window_seconds is not None:
                properties["MaximumBatchingWindowInSeconds"] = _ref(f"{defaults.prefix}BatchingWindowSeconds")
            if kind == "SQS":
                properties["Queue"] = self.arn(source)
                properties["ScalingConfig"] = {"MaximumConcurrency": _ref(CONCURRENCY[name][0])}
                continue
            properties["Stream"] = self.arn(source)
            properties["StartingPosition"] = "TRIM_HORIZON"
            if name == LEDGER:
                # One batch per shard at a time, never split, retried until it succeeds: a ledger must not
                # decide a later request of a section before an earlier one (malformed records it skips).
                properties.update(
                    ParallelizationFactor=1,
                    BisectBatchOnFunctionError=False,
                    MaximumRetryAttempts=-1,
                    MaximumRecordAgeInSeconds=-1,
                )
            else:
                # Retried until MySQL returns (by default): a parked batch is a decision the ledger made
                # that MySQL never hears of. No age limit either, or a long outage would park it anyway.
                properties.update(
                    ParallelizationFactor=_ref(f"{defaults.prefix}ParallelizationFactor"),
                    BisectBatchOnFunctionError=True,  # entries are independent and idempotent
                    MaximumRetryAttempts=_ref("PersisterMaxRetryAttempts"),
                    MaximumRecordAgeInSeconds=-1,
                    DestinationConfig={"OnFailure": {"Destination": self.arn(PERSISTER_FAILURES)}},
                )

    def patch_functions(self, env_overrides: Mapping[str, str]) -> None:
        settings = self.settings
        names_env = settings.as_environment(*RESOURCE_NAME_SETTINGS)
        for name, function in self.functions.items():
            properties = function["Properties"]
            variables = properties.setdefault("Environment", {}).setdefault("Variables", {})
            variables.update(names_env)
            variables.update(env_overrides)
            if self.target == "aws":
                variables[Settings.env_name("stream_shard_count")] = _ref("StreamShardCount")
                variables[Settings.env_name("redis_url")] = self.redis_url()
                variables[REDIS_CLUSTER_VARIABLE] = {"Fn::If": [REDIS_CLUSTER_CONDITION, "1", "0"]}
                properties["VpcConfig"] = {
                    "SubnetIds": _ref("SubnetIds"),
                    "SecurityGroupIds": _ref("SecurityGroupIds"),
                }
            properties["Role"] = {"Fn::GetAtt": [f"{name}Role", "Arn"]}
            properties["LoggingConfig"] = {"LogGroup": _ref(f"{name}LogGroup")}
            properties.pop("ReservedConcurrentExecutions", None)
            if name in CONCURRENCY:
                properties["ReservedConcurrentExecutions"] = _ref(CONCURRENCY[name][0])
            elif name == "ReconcileSeatMaps":
                properties["ReservedConcurrentExecutions"] = RECONCILE_CONCURRENCY
            if name == LEDGER:
                properties["EphemeralStorage"] = {"Size": _ref("LedgerEphemeralStorageMiB")}

    def add_roles(self) -> None:
        """One role per function; replaces Chalice's shared DefaultRole (Resource "*" on sqs and kinesis)."""
        self.resources.pop("DefaultRole", None)
        for name, spec in FUNCTIONS.items():
            log_group = f"{name}LogGroup"
            self.resources[log_group] = {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {
                    "LogGroupName": _sub(f"/aws/lambda/${{AWS::StackName}}/{name}"),
                    "RetentionInDays": _ref("LogRetentionDays"),
                },
            }
            statements = [
                {
                    "Sid": "OwnLogGroup",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": {"Fn::GetAtt": [log_group, "Arn"]},
                }
            ]
            by_resource: dict[str, list[str]] = {}
            for grant in spec.grants:
                actions = by_resource.setdefault(grant.resource, [])
                actions += [action for action in grant.actions if action not in actions]
            for resource, actions in by_resource.items():
                statements.append(
                    {"Sid": resource, "Effect": "Allow", "Action": actions, "Resource": self.arn(resource)}
                )
            if self.target == "aws":
                statements.append(
                    {
                        # AWS requires Resource "*" here: these EC2 actions are not resource-scoped for
                        # Lambda's VPC networking (the managed AWSLambdaVPCAccessExecutionRole does the same).
                        "Sid": "VpcNetworkInterfaces",
                        "Effect": "Allow",
                        "Action": VPC_NETWORK_INTERFACE_ACTIONS,
                        "Resource": "*",
                    }
                )
            self.resources[f"{name}Role"] = {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    },
                    "Policies": [
                        {
                            "PolicyName": f"{name}Access",
                            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                        }
                    ],
                },
            }

    # --- operations -----------------------------------------------------------------------------------------
    def add_alarms(self) -> None:
        """A stuck consumer is retried forever (ledger, persister) or parks messages in a DLQ: nothing fails
        loudly, so these alarms are how anyone sees it."""
        for function, role in ((LEDGER, "ledger processor"), (PERSISTER, "persister")):
            self.resources[f"{function}IteratorAgeAlarm"] = _alarm(
                f"The {role} ({function}) is over {ITERATOR_AGE_THRESHOLD_MS // 60_000} minutes behind its "
                "stream: a batch keeps failing (MySQL or Redis down, or a bug). See its log group",
                namespace="AWS/Lambda",
                metric="IteratorAge",
                dimension=("FunctionName", _ref(function)),
                period=ITERATOR_AGE_PERIOD_SECONDS,
                evaluation_periods=ITERATOR_AGE_EVALUATION_PERIODS,
                threshold=ITERATOR_AGE_THRESHOLD_MS,
            )
        redrive = "a booking its consumer gave up on: inspect and redrive it with `python -m infra.dlq`"
        for queue, what in (
            (BOOKING_DLQ, redrive),
            (FIFO_DLQ, redrive),
            (
                PERSISTER_FAILURES,
                "the shard and sequence range of a changelog batch the persister gave up on (retries were "
                "bounded): MySQL lacks its decisions until they are replayed from the changelog",
            ),
        ):
            self.resources[f"{queue}Alarm"] = _alarm(
                f"A message is waiting in {queue}: {what}",
                namespace="AWS/SQS",
                metric="ApproximateNumberOfMessagesVisible",
                dimension=("QueueName", {"Fn::GetAtt": [queue, "QueueName"]}),
                period=QUEUE_ALARM_PERIOD_SECONDS,
                evaluation_periods=1,
                threshold=0,
            )

    def redis_url(self) -> dict:
        """REDIS_URL of the functions: the replication group's configuration endpoint in cluster mode (a seed
        node: redis-py's cluster client discovers the shards from it), else its primary endpoint. TLS."""
        endpoint = {
            "Fn::If": [
                REDIS_CLUSTER_CONDITION,
                {"Fn::GetAtt": [REDIS, "ConfigurationEndPoint.Address"]},
                {"Fn::GetAtt": [REDIS, "PrimaryEndPoint.Address"]},
            ]
        }
        port = {
            "Fn::If": [
                REDIS_CLUSTER_CONDITION,
                {"Fn::GetAtt": [REDIS, "ConfigurationEndPoint.Port"]},
                {"Fn::GetAtt": [REDIS, "PrimaryEndPoint.Port"]},
            ]
        }
        return {"Fn::Sub": ["rediss://${Host}:${Port}/0", {"Host": endpoint, "Port": port}]}

    def add_redis(self) -> None:
        """Redis must refuse writes when full rather than evict: an evicted seat hold frees a seat someone is
        paying for, an evicted idempotency record books a retry twice (require_noeviction checks it at
        start). Cluster mode or not is the parameter group's `cluster-enabled` and the replication group's
        node groups; every key of a performance shares its hash tag, so either serves the same code."""
        self.resources[REDIS_PARAMETER_GROUP] = {
            "Type": "AWS::ElastiCache::ParameterGroup",
            "Properties": {
                "CacheParameterGroupFamily": _ref("RedisParameterGroupFamily"),
                "Description": "seat-booking: noeviction, a seat hold or an idempotency record must never "
                "be evicted",
                "Properties": {
                    "maxmemory-policy": "noeviction",
                    "cluster-enabled": {"Fn::If": [REDIS_CLUSTER_CONDITION, "yes", "no"]},
                },
            },
        }
        self.resources[REDIS_SUBNET_GROUP] = {
            "Type": "AWS::ElastiCache::SubnetGroup",
            "Properties": {
                "Description": "seat-booking: the functions' private subnets",
                "SubnetIds": _ref("SubnetIds"),
            },
        }
        self.resources[REDIS] = {
            "Type": "AWS::ElastiCache::ReplicationGroup",
            # A snapshot when the group is deleted or replaced (RedisClusterMode changed, say).
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": {
                "ReplicationGroupDescription": "seat-booking: seat maps, holds, idempotency records",
                "Engine": "redis",
                "EngineVersion": REDIS_ENGINE_VERSION,
                "CacheNodeType": _ref("RedisNodeType"),
                "CacheParameterGroupName": _ref(REDIS_PARAMETER_GROUP),
                "CacheSubnetGroupName": _ref(REDIS_SUBNET_GROUP),
                "SecurityGroupIds": _ref("RedisSecurityGroupIds"),
                "NumNodeGroups": {"Fn::If": [REDIS_CLUSTER_CONDITION, _ref("RedisNumNodeGroups"), 1]},
                "ReplicasPerNodeGroup": _ref("RedisReplicasPerNodeGroup"),
                "AutomaticFailoverEnabled": True,
                "MultiAZEnabled": True,
                "TransitEncryptionEnabled": True,
                "AtRestEncryptionEnabled": True,
                "SnapshotRetentionLimit": 1,
            },
        }
        self.outputs[f"{REDIS_PARAMETER_GROUP}Name"] = {
            "Description": "The Redis' parameter group (noeviction)",
            "Value": _ref(REDIS_PARAMETER_GROUP),
        }
        self.outputs["RedisURL"] = {
            "Description": "The functions' REDIS_URL (cluster mode: the configuration endpoint)",
            "Value": self.redis_url(),
        }

    # --- the CDN --------------------------------------------------------------------------------------------
    def add_cdn(self) -> None:
        """CloudFront in front of the API's stage. Only the seat map is cached, and only as long as its answer
        says (chalicelib/conditional.py: s-maxage 1 s, stale-while-revalidate 1 s, so a shared copy is at most
        2 s old); the cache policy's MaxTTL caps the fresh part at that second even if the header grew, and
        its DefaultTTL 0 keeps an answer without Cache-Control out of the cache. Every other path (the writes
        among them, the page, the docs) goes to the API uncached with what the viewer sent, except Host."""
        stage = self.resources["RestAPI"]["Properties"]["StageName"]
        self.resources[SEAT_MAP_CACHE_POLICY] = {
            "Type": "AWS::CloudFront::CachePolicy",
            "Condition": "WithCdn",
            "Properties": {
                "CachePolicyConfig": {
                    "Name": _sub("${AWS::StackName}-seat-map"),
                    "Comment": "Seat maps: as long as the answer's s-maxage says, at most "
                    f"{SEAT_MAP_SHARED_MAX_AGE} s; key: view, since, gzip",
                    "MinTTL": 0,
                    "DefaultTTL": 0,
                    "MaxTTL": SEAT_MAP_SHARED_MAX_AGE,
                    "ParametersInCacheKeyAndForwardedToOrigin": {
                        # CloudFront's normalised Accept-Encoding (gzip or nothing) is in the key and is
                        # what the origin sees: one cached copy per representation, as its Vary says. The
                        # origin compresses gzip only, once per map version (chalicelib/prepared.py).
                        "EnableAcceptEncodingGzip": True,
                        "EnableAcceptEncodingBrotli": False,
                        "QueryStringsConfig": {
                            "QueryStringBehavior": "whitelist",
                            "QueryStrings": list(SEAT_MAP_QUERY_STRINGS),
                        },
                        "HeadersConfig": {"HeaderBehavior": "none"},
                        "CookiesConfig": {"CookieBehavior": "none"},
                    },
                }
            },
        }
        behaviour = {
            "TargetOriginId": CDN_ORIGIN_ID,
            "ViewerProtocolPolicy": "https-only",  # as the API itself: no plain HTTP, no redirect of a POST
            "Compress": False,  # the origin gzips the seat map once per version; the rest is small JSON
        }
        self.resources[CDN] = {
            "Type": "AWS::CloudFront::Distribution",
            "Condition": "WithCdn",
            "Properties": {
                "DistributionConfig": {
                    "Enabled": True,
                    "Comment": _sub("${AWS::StackName}: the API, seat maps cached for about a second"),
                    "HttpVersion": "http2and3",
                    "IPV6Enabled": True,
                    "PriceClass": _ref("CdnPriceClass"),
                    "Origins": [
                        {
                            "Id": CDN_ORIGIN_ID,
                            "DomainName": _sub("${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}"),
                            "OriginPath": f"/{stage}",
                            "CustomOriginConfig": {
                                "OriginProtocolPolicy": "https-only",
                                "OriginSSLProtocols": ["TLSv1.2"],
                            },
                        }
                    ],
                    "DefaultCacheBehavior": {
                        **behaviour,
                        "AllowedMethods": list(ALL_METHODS),
                        "CachedMethods": list(READ_METHODS),
                        "CachePolicyId": CACHING_DISABLED_POLICY_ID,
                        "OriginRequestPolicyId": ALL_VIEWER_EXCEPT_HOST_POLICY_ID,
                    },
                    "CacheBehaviors": [
                        {
                            **behaviour,
                            "PathPattern": SEAT_MAP_PATH_PATTERN,
                            "AllowedMethods": list(READ_METHODS),
                            "CachedMethods": list(READ_METHODS),
                            "CachePolicyId": _ref(SEAT_MAP_CACHE_POLICY),
                        }
                    ],
                    # CloudFront keeps an error 10 s by default whatever the cache policy says: a 503 of an
                    # overloaded moment would hide the map for that long, a 404 outlive a new performance.
                    "CustomErrorResponses": [
                        {"ErrorCode": code, "ErrorCachingMinTTL": 0} for code in CDN_ERROR_CODES
                    ],
                }
            },
        }
        self.outputs["CdnEndpointURL"] = {
            "Condition": "WithCdn",
            "Description": "The public URL of the API through CloudFront (seat maps cached at most "
            f"{SEAT_MAP_SHARED_MAX_AGE} s + stale-while-revalidate)",
            "Value": _sub(f"https://${{{CDN}.DomainName}}/"),
        }
        self.outputs["SeatMapCdnDomainName"] = {
            "Condition": "WithCdn",
            "Description": "The CloudFront distribution's domain name (a CNAME target for your own domain)",
            "Value": {"Fn::GetAtt": [CDN, "DomainName"]},
        }


def _url_password(url: str) -> str | None:
    """The password of a mysql:// URL whose password may be a {{resolve:...}} reference (which urlsplit
    cannot take apart: it holds colons)."""
    netloc = url.split("://", 1)[-1].split("@", 1)
    if len(netloc) == 1:
        return None
    userinfo = netloc[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else None


def build_template(
    template: dict, settings: Settings, target: str = "aws", env_overrides: Mapping[str, str] | None = None
) -> dict:
    """A new template: Chalice's `template` completed for `target` ("aws" or "localstack"), with the
    queue names, redrive and timing of `settings` (the stage's). Raises TemplateError when the package and
    the deployment disagree."""
    if target not in TARGETS:
        raise TemplateError(f"target must be one of {TARGETS}, not {target!r}")
    builder = _Builder(copy.deepcopy(template), settings, target)
    builder.check_stage()
    builder.check_functions()
    builder.check_queue_timing()
    if target == "aws":
        builder.check_secrets()
    builder.add_parameters()
    if target == "aws":
        builder.add_queues_and_streams()
        builder.add_vpc_endpoints()
    builder.add_persister_failure_queue()
    builder.pass_prepared_bytes()
    builder.patch_events()
    builder.patch_functions(env_overrides or {})
    builder.add_roles()
    if target == "aws":
        builder.add_alarms()
        builder.add_redis()
        builder.add_cdn()
        builder.add_user_pool()
    return builder.template
