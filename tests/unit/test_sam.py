"""The SAM post-processor sets what Chalice cannot (aws/chalice#2029), on Chalice's own template shape; the
whole deployable template is checked in test_aws_template.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.aws_template import enable_partial_batch_responses

ROOT = Path(__file__).resolve().parents[2]


def test_partial_batch_responses_are_enabled_on_every_sqs_and_kinesis_event() -> None:
    template = {
        "Resources": {
            "OnBookingEvent": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Events": {
                        "OnBookingEventSqsEventSource": {
                            "Type": "SQS",
                            "Properties": {
                                "Queue": "arn:aws:sqs:us-east-1:1:booking-events",
                                "BatchSize": 10,
                            },
                        },
                        "Nightly": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}},
                    }
                },
            },
            "OnSeatRequest": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Events": {"K": {"Type": "Kinesis", "Properties": {"Stream": "arn"}}}},
            },
            "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue"},
        }
    }
    assert enable_partial_batch_responses(template) == [
        "OnBookingEvent.OnBookingEventSqsEventSource",
        "OnSeatRequest.K",
    ]
    events = template["Resources"]["OnBookingEvent"]["Properties"]["Events"]
    assert events["OnBookingEventSqsEventSource"]["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]
    assert "FunctionResponseTypes" not in events["Nightly"]["Properties"]
    enable_partial_batch_responses(template)  # idempotent
    assert events["OnBookingEventSqsEventSource"]["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]


def test_the_command_refuses_a_template_whose_functions_it_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "sam.json"
    original = {
        "Resources": {
            "F": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Tags": {"aws-chalice": "version=1.34.0:stage=prod:app=seat-booking"},
                    "Events": {"Q": {"Type": "SQS", "Properties": {"Queue": "arn"}}},
                },
            }
        }
    }
    path.write_text(json.dumps(original))
    result = subprocess.run(
        [sys.executable, "-m", "infra.sam", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "unknown ['F']" in result.stderr
    assert json.loads(path.read_text()) == original, "a refused template is left as it was"
