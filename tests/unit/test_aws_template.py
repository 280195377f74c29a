"""The deployable template: `chalice package` + infra/sam.py, translated by the SAM translator (the code
CloudFormation runs for `Transform: AWS::Serverless-2016-10-31`), linted by cfn-lint, and checked for what the
code relies on. Assertions read the translated template, i.e. what CloudFormation would actually create."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.translator.transform import transform

from chalicelib.conditional import (
    SEAT_MAP_CACHE_CONTROL,
    SEAT_MAP_SHARED_MAX_AGE,
    SEAT_MAP_SHARED_SECONDS,
    SEAT_MAP_STALE_WHILE_REVALIDATE,
)
from chalicelib.config import Settings
from chalicelib.openapi import SIGNED_IN_ROUTES
from infra.aws_template import (
    DYNAMIC_SECRET,
    FUNCTIONS,
    VISIBILITY_TO_TIMEOUT_RATIO,
    TemplateError,
    build_template,
)
from infra.local.stage import stage_environment

ROOT = Path(__file__).resolve().parents[2]
CHALICE = Path(sys.executable).parent / "chalice"
CODE_URI = "s3://seat-booking-artifacts/deployment.zip"  # what `aws cloudformation package` puts there
CONSUMERS = ("OnBookingEvent", "OnBookingRequestInLine", "OnSeatDecision")
# AWS's managed cache policy CachingDisabled and origin request policy AllViewerExceptHostHeader.
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}


def _package(stage: str, out: Path) -> dict:
    """`chalice package` as `make package` runs it, on a copy of the project without its requirements.

    With them, chalice would build the dependency layer of the zip (pip download of Linux wheels from PyPI,
    again after every code change, since its cache is keyed on the project's files): the only network use of
    tests/unit, and nothing this module checks reads it — the template does not depend on the dependencies,
    and its CodeUri is replaced (_deployable). requirements.txt is test_packaging.py's; `make package`
    builds the real zip."""
    project = out / "project"
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "app.py", project / "app.py")
    (project / ".chalice").mkdir()
    shutil.copy2(ROOT / ".chalice" / "config.json", project / ".chalice" / "config.json")
    (project / "requirements.txt").write_text("")
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [str(CHALICE), "package", "--stage", stage, str(out / "template")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / "template" / "sam.json").read_text())


def _settings(stage: str) -> Settings:
    return Settings.from_env(stage_environment(stage))


def _deployable(sam: dict) -> dict:
    sam = copy.deepcopy(sam)
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = CODE_URI
    return sam


def _lint(template: dict) -> list[str]:
    return [str(match) for match in lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))]


def _of_type(template: dict, kind: str) -> dict:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def chalice_prod(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _package("prod", tmp_path_factory.mktemp("prod"))


@pytest.fixture(scope="module")
def aws_sam(chalice_prod: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The post-processor as `make package` runs it: the command, on the file."""
    path = tmp_path_factory.mktemp("aws") / "sam.json"
    path.write_text(json.dumps(chalice_prod))
    result = subprocess.run(
        [sys.executable, "-m", "infra.sam", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return _deployable(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def aws_cfn(aws_sam: dict) -> dict:
    return transform(copy.deepcopy(aws_sam), {}, _NoManagedPolicies())


@pytest.fixture(scope="module")
def localstack_cfn(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    sam = build_template(
        _package("localstack", tmp_path_factory.mktemp("localstack")),
        _settings("localstack"),
        "localstack",
        {"DATABASE_URL": "mysql://root@mysql:3306/booking", "AWS_ENDPOINT_URL": "http://localstack:4566"},
    )
    sam = _deployable(sam)
    return sam, transform(copy.deepcopy(sam), {}, _NoManagedPolicies())


def test_cfn_lint_passes_on_the_sam_template_and_its_translation(aws_sam: dict, aws_cfn: dict) -> None:
    assert _lint(aws_sam) == []
    assert _lint(aws_cfn) == []


def test_every_function_is_chalices_with_one_role_each_and_in_the_vpc(aws_cfn: dict) -> None:
    functions = _of_type(aws_cfn, "AWS::Lambda::Function")
    assert set(functions) == set(FUNCTIONS)
    roles = {json.dumps(f["Properties"]["Role"]) for f in functions.values()}
    assert len(roles) == len(functions), "each function has a role of its own"
    assert "DefaultRole" not in aws_cfn["Resources"]
    for function in functions.values():
        assert function["Properties"]["VpcConfig"] == {
            "SubnetIds": {"Ref": "SubnetIds"},
            "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
        }
        assert "LogGroup" in function["Properties"]["LoggingConfig"]
    assert aws_cfn["Parameters"]["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"


def test_queues_have_their_dlqs_redrive_and_a_visibility_of_six_lambda_timeouts(aws_cfn: dict) -> None:
    settings = _settings("prod")
    queues = _of_type(aws_cfn, "AWS::SQS::Queue")
    by_name = {q["Properties"]["QueueName"]: (logical, q["Properties"]) for logical, q in queues.items()}
    functions = _of_type(aws_cfn, "AWS::Lambda::Function")
    pairs = (
        (settings.booking_queue_name, settings.booking_dlq_name, False, "OnBookingEvent"),
        (settings.fifo_queue_name, settings.fifo_dlq_name, True, "OnBookingRequestInLine"),
    )
    for queue_name, dlq_name, fifo, consumer in pairs:
        _, queue = by_name[queue_name]
        dlq_logical, dlq = by_name[dlq_name]
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq_logical, "Arn"]},
            "maxReceiveCount": settings.max_receive_count,
        }
        assert queue.get("FifoQueue", False) is fifo and dlq.get("FifoQueue", False) is fifo
        timeout = functions[consumer]["Properties"]["Timeout"]
        assert queue["VisibilityTimeout"] >= VISIBILITY_TO_TIMEOUT_RATIO * timeout
        assert (
            queue["VisibilityTimeout"] == settings.queue_visibility_timeout_seconds
        )  # what the code assumes
    streams = _of_type(aws_cfn, "AWS::Kinesis::Stream")
    assert sorted(s["Properties"]["Name"] for s in streams.values()) == sorted(
        [settings.request_stream_name, settings.changelog_stream_name]
    )
    assert all(s["Properties"]["ShardCount"] == {"Ref": "StreamShardCount"} for s in streams.values())


def test_event_sources_report_partial_failures_and_keep_the_ledger_in_order(aws_cfn: dict) -> None:
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in _of_type(aws_cfn, "AWS::Lambda::EventSourceMapping").values()
    }
    assert set(mappings) == {"OnBookingEvent", "OnBookingRequestInLine", "OnSeatRequest", "OnSeatDecision"}
    for mapping in mappings.values():
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mappings["OnBookingEvent"]["EventSourceArn"] == {"Fn::GetAtt": ["BookingQueue", "Arn"]}
    assert mappings["OnBookingRequestInLine"]["EventSourceArn"] == {"Fn::GetAtt": ["FifoRequestQueue", "Arn"]}
    ledger = mappings["OnSeatRequest"]
    assert ledger["EventSourceArn"] == {"Fn::GetAtt": ["RequestStream", "Arn"]}
    assert ledger["StartingPosition"] == "TRIM_HORIZON"
    assert ledger["ParallelizationFactor"] == 1
    assert ledger["BisectBatchOnFunctionError"] is False
    assert ledger["MaximumRetryAttempts"] == -1
    persister = mappings["OnSeatDecision"]
    assert persister["EventSourceArn"] == {"Fn::GetAtt": ["ChangelogStream", "Arn"]}
    assert persister["StartingPosition"] == "TRIM_HORIZON"
    assert persister["BisectBatchOnFunctionError"] is True
    # Never parked by default: retried until MySQL returns, whatever the records' age.
    assert persister["MaximumRetryAttempts"] == {"Ref": "PersisterMaxRetryAttempts"}
    assert aws_cfn["Parameters"]["PersisterMaxRetryAttempts"]["Default"] == -1
    assert persister["MaximumRecordAgeInSeconds"] == -1
    # …unless an operator bounds the retries: then the batch's position goes to the failure queue.
    assert persister["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["PersisterFailureQueue", "Arn"]}}
    }
    for sqs_consumer in ("OnBookingEvent", "OnBookingRequestInLine"):
        assert "MaximumConcurrency" in mappings[sqs_consumer]["ScalingConfig"]


def test_a_stuck_consumer_or_a_dead_letter_raises_an_alarm(aws_cfn: dict) -> None:
    alarms = {
        (
            a["Properties"]["Namespace"],
            a["Properties"]["MetricName"],
            json.dumps(a["Properties"]["Dimensions"]),
        ): a["Properties"]
        for a in _of_type(aws_cfn, "AWS::CloudWatch::Alarm").values()
    }
    notify = {"Fn::If": ["WithAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for function in ("OnSeatRequest", "OnSeatDecision"):  # the ledger processor and the persister
        assert aws_cfn["Resources"][function]["Type"] == "AWS::Lambda::Function"
        dimensions = json.dumps([{"Name": "FunctionName", "Value": {"Ref": function}}])
        alarm = alarms.pop(("AWS/Lambda", "IteratorAge", dimensions))
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Maximum", 60, 5)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 300_000)
        assert alarm["AlarmActions"] == notify
    for queue in ("BookingDeadLetterQueue", "FifoRequestDeadLetterQueue", "PersisterFailureQueue"):
        assert aws_cfn["Resources"][queue]["Type"] == "AWS::SQS::Queue"
        dimensions = json.dumps([{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}])
        alarm = alarms.pop(("AWS/SQS", "ApproximateNumberOfMessagesVisible", dimensions))
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        assert alarm["Statistic"] == "Maximum"
        assert alarm["AlarmActions"] == notify
    assert alarms == {}
    topic = aws_cfn["Parameters"]["AlarmTopicArn"]
    assert (topic["Type"], topic["Default"]) == ("String", "")  # optional: no topic, no notification
    assert aws_cfn["Conditions"]["WithAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }


def test_the_api_passes_the_seat_maps_prepared_gzip_on_as_bytes(aws_cfn: dict) -> None:
    """chalicelib/prepared.py answers base64 with isBase64Encoded; API Gateway decodes that only for the
    binary media types the request's Accept matches: every type, since any client may take the gzip."""
    (api,) = _of_type(aws_cfn, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["Body"]["x-amazon-apigateway-binary-media-types"] == ["*/*"]


def test_cognito_guards_exactly_the_signed_in_routes(aws_cfn: dict) -> None:
    """API Gateway answers 401 itself to a booking route without a valid ID token of the pool; the catalogue,
    the seat map and the admin route (X-Admin-Token) stay as they are."""
    (api,) = _of_type(aws_cfn, "AWS::ApiGateway::RestApi").values()
    body = api["Properties"]["Body"]
    authorizer = body["securityDefinitions"]["SeatBookingUsers"]
    assert authorizer["x-amazon-apigateway-authtype"] == "cognito_user_pools"
    assert authorizer["x-amazon-apigateway-authorizer"]["providerARNs"] == [
        {"Fn::GetAtt": ["UserPool", "Arn"]}
    ]
    guarded = {
        (method.upper(), path)
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and operation.get("security") == [{"SeatBookingUsers": []}]
    }
    assert guarded == SIGNED_IN_ROUTES
    assert ("POST", "/performances/{performance_id}/bookings") in guarded
    assert ("GET", "/performances/{performance_id}/seats") not in guarded
    assert list(_of_type(aws_cfn, "AWS::Cognito::UserPool")) == ["UserPool"]
    (client,) = _of_type(aws_cfn, "AWS::Cognito::UserPoolClient").values()
    assert client["Properties"]["GenerateSecret"] is False


def test_the_redis_never_evicts_and_is_in_cluster_mode_or_not_as_the_parameter_says(aws_cfn: dict) -> None:
    (name, group), *others = _of_type(aws_cfn, "AWS::ElastiCache::ParameterGroup").items()
    assert others == []
    assert group["Properties"]["Properties"] == {
        "maxmemory-policy": "noeviction",
        "cluster-enabled": {"Fn::If": ["WithRedisClusterMode", "yes", "no"]},
    }
    assert group["Properties"]["CacheParameterGroupFamily"] == {"Ref": "RedisParameterGroupFamily"}
    assert aws_cfn["Parameters"]["RedisParameterGroupFamily"]["Default"] == "redis7"
    assert aws_cfn["Outputs"]["RedisParameterGroupName"]["Value"] == {"Ref": name}

    parameters = aws_cfn["Parameters"]
    assert parameters["RedisClusterMode"]["AllowedValues"] == ["true", "false"]
    assert parameters["RedisClusterMode"]["Default"] == "false"  # one primary and its replica, as before
    assert aws_cfn["Conditions"]["WithRedisClusterMode"] == {
        "Fn::Equals": [{"Ref": "RedisClusterMode"}, "true"]
    }
    ((redis_name, redis),) = _of_type(aws_cfn, "AWS::ElastiCache::ReplicationGroup").items()
    properties = redis["Properties"]
    assert properties["CacheParameterGroupName"] == {"Ref": name}
    assert properties["NumNodeGroups"] == {
        "Fn::If": ["WithRedisClusterMode", {"Ref": "RedisNumNodeGroups"}, 1]
    }
    assert properties["ReplicasPerNodeGroup"] == {"Ref": "RedisReplicasPerNodeGroup"}
    assert parameters["RedisReplicasPerNodeGroup"]["MinValue"] >= 1, "a replica to fail over to"
    assert properties["AutomaticFailoverEnabled"] is True and properties["MultiAZEnabled"] is True
    assert properties["TransitEncryptionEnabled"] is True and properties["AtRestEncryptionEnabled"] is True
    (subnets,) = _of_type(aws_cfn, "AWS::ElastiCache::SubnetGroup").values()
    assert subnets["Properties"]["SubnetIds"] == {"Ref": "SubnetIds"}

    # Every function: the group's endpoint (the configuration endpoint in cluster mode) and REDIS_CLUSTER.
    for function in _of_type(aws_cfn, "AWS::Lambda::Function").values():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["REDIS_CLUSTER"] == {"Fn::If": ["WithRedisClusterMode", "1", "0"]}
        template, values = env["REDIS_URL"]["Fn::Sub"]
        assert template.startswith("rediss://")
        assert values["Host"] == {
            "Fn::If": [
                "WithRedisClusterMode",
                {"Fn::GetAtt": [redis_name, "ConfigurationEndPoint.Address"]},
                {"Fn::GetAtt": [redis_name, "PrimaryEndPoint.Address"]},
            ]
        }


def test_event_sources_take_batch_size_window_and_concurrency_from_parameters(aws_cfn: dict) -> None:
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in _of_type(aws_cfn, "AWS::Lambda::EventSourceMapping").values()
    }
    parameters = aws_cfn["Parameters"]
    expected = {  # function: (prefix, default batch size = the decorator's in app.py, window?)
        "OnBookingEvent": ("BookingConsumer", 10, True),
        "OnBookingRequestInLine": ("FifoConsumer", 10, False),  # FIFO queues take no batching window
        "OnSeatRequest": ("LedgerProcessor", 100, True),
        "OnSeatDecision": ("Persister", 100, True),
    }
    for function, (prefix, batch_size, window) in expected.items():
        mapping = mappings[function]
        assert mapping["BatchSize"] == {"Ref": f"{prefix}BatchSize"}
        assert parameters[f"{prefix}BatchSize"]["Default"] == batch_size
        if window:
            assert mapping["MaximumBatchingWindowInSeconds"] == {"Ref": f"{prefix}BatchingWindowSeconds"}
            assert parameters[f"{prefix}BatchingWindowSeconds"]["Default"] == 0  # confirms wait for none
        else:
            assert mapping.get("MaximumBatchingWindowInSeconds", 0) == 0  # Chalice's 0, or none
    assert parameters["FifoConsumerBatchSize"]["MaxValue"] == 10
    assert mappings["OnBookingEvent"]["ScalingConfig"] == {
        "MaximumConcurrency": {"Ref": "BookingConsumerConcurrency"}
    }
    assert mappings["OnBookingRequestInLine"]["ScalingConfig"] == {
        "MaximumConcurrency": {"Ref": "FifoConsumerConcurrency"}
    }
    assert mappings["OnSeatRequest"]["ParallelizationFactor"] == 1, "the ledger's order per shard"
    assert mappings["OnSeatDecision"]["ParallelizationFactor"] == {"Ref": "PersisterParallelizationFactor"}
    assert parameters["PersisterParallelizationFactor"]["Default"] == 1
    assert parameters["PersisterParallelizationFactor"]["MaxValue"] == 10


def _cdn(cfn: dict) -> tuple[dict, list[dict]]:
    """The distribution's config and all its cache behaviours, the default one first."""
    ((_, distribution),) = _of_type(cfn, "AWS::CloudFront::Distribution").items()
    assert distribution["Condition"] == "WithCdn"
    config = distribution["Properties"]["DistributionConfig"]
    return config, [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]


def _cache_policy(cfn: dict, behaviour: dict) -> dict | None:
    """The config of a behaviour's own cache policy; None for the managed CachingDisabled."""
    policy = behaviour["CachePolicyId"]
    if policy == CACHING_DISABLED:
        return None
    resource = cfn["Resources"][policy["Ref"]]
    assert resource["Type"] == "AWS::CloudFront::CachePolicy"
    return resource["Properties"]["CachePolicyConfig"]


def _matches(pattern: str, path: str) -> bool:
    """CloudFront's path-pattern match: case-sensitive, `*` any run of characters (`/` too), `?` one."""
    return fnmatch.fnmatchcase(path, pattern)


def test_the_cdn_caches_the_seat_map_for_about_a_second(aws_cfn: dict) -> None:
    config, (default, *behaviours) = _cdn(aws_cfn)
    assert aws_cfn["Parameters"]["CdnEnabled"]["Default"] == "true"
    assert aws_cfn["Conditions"]["WithCdn"] == {"Fn::Equals": [{"Ref": "CdnEnabled"}, "true"]}
    # The origin is the API's stage, over HTTPS only.
    ((origin_id, origin),) = [(o["Id"], o) for o in config["Origins"]]
    (stage,) = _of_type(aws_cfn, "AWS::ApiGateway::Stage").values()
    assert origin["DomainName"] == {"Fn::Sub": "${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}
    assert origin["OriginPath"] == f"/{stage['Properties']['StageName']}"
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert all(b["TargetOriginId"] == origin_id for b in (default, *behaviours))
    # The seat map: GET and HEAD only, cached as its Cache-Control says and never longer than the bound.
    (seat_map,) = behaviours
    assert seat_map["PathPattern"] == "/performances/*/seats"
    assert _matches(seat_map["PathPattern"], "/performances/7/seats")
    assert set(seat_map["AllowedMethods"]) <= {"GET", "HEAD", "OPTIONS"}
    assert set(seat_map["CachedMethods"]) == {"GET", "HEAD"}
    assert seat_map["Compress"] is False  # the origin gzips once per version
    policy = _cache_policy(aws_cfn, seat_map)
    assert policy is not None
    key = policy["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["QueryStringsConfig"]["QueryStringBehavior"] == "whitelist"
    assert set(key["QueryStringsConfig"]["QueryStrings"]) == {"view", "since"}
    assert key["HeadersConfig"] == {"HeaderBehavior": "none"}
    assert key["CookiesConfig"] == {"CookieBehavior": "none"}
    assert key["EnableAcceptEncodingGzip"] is True  # Accept-Encoding (normalised) in the key: Vary's part
    assert key["EnableAcceptEncodingBrotli"] is False  # the origin sends gzip only
    # An answer without Cache-Control is not kept; one with it, at most its s-maxage (1 s) fresh, plus
    # stale-while-revalidate: 2 s, the staleness bound docs/api.md states for a shared cache.
    assert (policy["MinTTL"], policy["DefaultTTL"]) == (0, 0)
    assert policy["MaxTTL"] <= 2
    assert policy["MaxTTL"] == SEAT_MAP_SHARED_MAX_AGE
    assert f"s-maxage={SEAT_MAP_SHARED_MAX_AGE}" in SEAT_MAP_CACHE_CONTROL
    assert f"stale-while-revalidate={SEAT_MAP_STALE_WHILE_REVALIDATE}" in SEAT_MAP_CACHE_CONTROL
    assert policy["MaxTTL"] + SEAT_MAP_STALE_WHILE_REVALIDATE <= SEAT_MAP_SHARED_SECONDS == 2
    # No error is kept (CloudFront's default would be 10 s whatever the policy says).
    errors = {e["ErrorCode"]: e["ErrorCachingMinTTL"] for e in config["CustomErrorResponses"]}
    assert {400, 403, 404, 500, 502, 503, 504} <= set(errors)
    assert set(errors.values()) == {0}
    assert aws_cfn["Outputs"]["SeatMapCdnDomainName"]["Value"] == {
        "Fn::GetAtt": [next(iter(_of_type(aws_cfn, "AWS::CloudFront::Distribution"))), "DomainName"]
    }
    assert aws_cfn["Outputs"]["SeatMapCdnDomainName"]["Condition"] == "WithCdn"
    assert aws_cfn["Outputs"]["CdnEndpointURL"]["Condition"] == "WithCdn"


def test_the_cdn_passes_everything_else_through_and_never_caches_a_write(aws_cfn: dict) -> None:
    _, (default, *behaviours) = _cdn(aws_cfn)
    # The default: the API as it is (every method, every header but Host), nothing cached.
    assert default["CachePolicyId"] == CACHING_DISABLED
    assert default["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST
    assert {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"} == set(default["AllowedMethods"])
    assert "PathPattern" not in default
    # Every path the API writes on, from its own definition (path parameters filled in), plus the contract's.
    (api,) = _of_type(aws_cfn, "AWS::ApiGateway::RestApi").values()
    write_paths = {
        re.sub(r"\{[^}]+\}", "1", path)
        for path, methods in api["Properties"]["Body"]["paths"].items()
        if WRITE_METHODS & {method.upper() for method in methods}
    }
    assert {"/performances/1/bookings", "/bookings/1", "/admin/events"} <= write_paths
    write_paths |= {"/performances/7/bookings", "/bookings/abc", "/admin/anything"}
    for behaviour in behaviours:
        if _cache_policy(aws_cfn, behaviour) is None:
            continue
        assert not WRITE_METHODS & set(behaviour["AllowedMethods"]), behaviour
        caught = [path for path in write_paths if _matches(behaviour["PathPattern"], path)]
        assert caught == [], (behaviour["PathPattern"], caught)


def test_consumers_have_reserved_concurrency_and_reconcile_runs_on_its_schedule(aws_cfn: dict) -> None:
    functions = _of_type(aws_cfn, "AWS::Lambda::Function")
    for consumer in CONSUMERS:
        reserved = functions[consumer]["Properties"]["ReservedConcurrentExecutions"]
        assert aws_cfn["Parameters"][reserved["Ref"]]["Default"] >= 2
    assert functions["ReconcileSeatMaps"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert aws_cfn["Parameters"]["BookingConsumerConcurrency"]["Default"] == 10  # .chalice/config.json's
    schedules = {
        rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]: rule["Properties"]["ScheduleExpression"]
        for rule in _of_type(aws_cfn, "AWS::Events::Rule").values()
    }
    assert schedules == {"ReconcileSeatMaps": "rate(5 minutes)", "ExpireHolds": "rate(1 minute)"}
    ledger = functions["OnSeatRequest"]["Properties"]
    assert ledger["EphemeralStorage"] == {"Size": {"Ref": "LedgerEphemeralStorageMiB"}}


def test_iam_is_least_privilege(aws_cfn: dict) -> None:
    for name, role in _of_type(aws_cfn, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                assert all("*" not in action for action in actions), (name, statement)
                if statement["Resource"] == "*":
                    # The one exception AWS requires: Lambda's VPC network interfaces.
                    assert statement["Sid"] == "VpcNetworkInterfaces", (name, statement)
                    assert all(action.startswith("ec2:") for action in actions), (name, statement)
                else:
                    assert "*" not in json.dumps(statement["Resource"]).replace(":*", ""), (name, statement)
    api_actions = {
        action
        for policy in aws_cfn["Resources"]["APIHandlerRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in statement["Action"]
    }
    assert not {"sqs:ReceiveMessage", "sqs:DeleteMessage", "kinesis:GetRecords"} & api_actions


def test_no_secret_is_in_the_template(aws_cfn: dict) -> None:
    for name, function in _of_type(aws_cfn, "AWS::Lambda::Function").items():
        env = function["Properties"]["Environment"]["Variables"]
        assert DYNAMIC_SECRET.match(env["ADMIN_TOKEN"]), name
        assert DYNAMIC_SECRET.match(env["TOKEN_SIGNING_KEY"]), name
        assert env["IDENTITY_PROVIDER"] == "cognito" and env["DEV_TOKENS"] == "0", name
        userinfo = env["DATABASE_URL"].split("://", 1)[1].split("@", 1)[0]
        assert DYNAMIC_SECRET.match(userinfo.split(":", 1)[1]), name
        assert env["AWS_ENDPOINT_URL"] == ""


def test_localstack_template_uses_the_provisioned_queues_and_no_vpc(
    localstack_cfn: tuple[dict, dict],
) -> None:
    sam, cfn = localstack_cfn
    assert _lint(sam) == []
    assert _lint(cfn) == []
    settings = _settings("localstack")
    # infra/provision.py creates the queues and streams there; the template only adds the persister's DLQ.
    assert list(_of_type(cfn, "AWS::SQS::Queue")) == ["PersisterFailureQueue"]
    assert not _of_type(cfn, "AWS::Kinesis::Stream")
    # The compose LocalStack runs neither CloudWatch nor ElastiCache.
    assert not _of_type(cfn, "AWS::CloudWatch::Alarm")
    assert not _of_type(cfn, "AWS::ElastiCache::ParameterGroup")
    # Nor CloudFront: the LocalStack API is reached directly.
    assert not [r for r in cfn["Resources"].values() if r["Type"].startswith("AWS::CloudFront::")]
    assert "CdnEnabled" not in cfn.get("Parameters", {})
    sources = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]["EventSourceArn"]["Fn::Sub"]
        for m in _of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
    }
    assert sources["OnBookingEvent"].endswith(f":{settings.booking_queue_name}")
    assert sources["OnBookingRequestInLine"].endswith(f":{settings.fifo_queue_name}")
    assert sources["OnSeatRequest"].endswith(f":stream/{settings.request_stream_name}")
    for function in _of_type(cfn, "AWS::Lambda::Function").values():
        assert "VpcConfig" not in function["Properties"]
        env = function["Properties"]["Environment"]["Variables"]
        assert env["DATABASE_URL"] == "mysql://root@mysql:3306/booking"
        assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"


def test_the_build_refuses_what_aws_would_get_wrong(chalice_prod: dict) -> None:
    prod = _settings("prod")
    with pytest.raises(TemplateError, match="packaged for stage 'prod'"):
        build_template(chalice_prod, _settings("localstack"), "aws")
    with pytest.raises(TemplateError, match="under 6x"):
        build_template(chalice_prod, prod.replace(queue_visibility_timeout_seconds=60))
    with pytest.raises(TemplateError, match="retry window"):
        build_template(chalice_prod, prod.replace(pending_hold_deadline_seconds=900))
    plaintext = copy.deepcopy(chalice_prod)
    plaintext["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]["ADMIN_TOKEN"] = "hunter2"
    with pytest.raises(TemplateError, match="ADMIN_TOKEN"):
        build_template(plaintext, prod)
    for variable, value, complaint in [
        ("TOKEN_SIGNING_KEY", "hunter2", "TOKEN_SIGNING_KEY"),
        ("IDENTITY_PROVIDER", "local", "must be cognito"),
        ("DEV_TOKENS", "1", "DEV_TOKENS must be off"),
    ]:
        unsafe = copy.deepcopy(chalice_prod)
        unsafe["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"][variable] = value
        with pytest.raises(TemplateError, match=complaint):
            build_template(unsafe, prod)
    password = copy.deepcopy(chalice_prod)
    env = password["Resources"]["OnSeatDecision"]["Properties"]["Environment"]["Variables"]
    env["DATABASE_URL"] = "mysql://booking:hunter2@db:3306/booking"
    with pytest.raises(TemplateError, match="DATABASE_URL"):
        build_template(password, prod)
    env["DATABASE_URL"] = "mysql://booking@db:3306/booking"  # no password (IAM authentication): fine
    env["REDIS_URL"] = "rediss://:auth-token@cache:6379/0"
    with pytest.raises(TemplateError, match="REDIS_URL"):
        build_template(password, prod)
    extra = copy.deepcopy(chalice_prod)
    extra["Resources"]["NewHandler"] = copy.deepcopy(extra["Resources"]["ReconcileSeatMaps"])
    with pytest.raises(TemplateError, match="unknown \\['NewHandler'\\]"):
        build_template(extra, prod)
