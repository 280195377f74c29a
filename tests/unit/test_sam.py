"""The SAM post-processor sets what Chalice cannot (aws/chalice#2029), on Chalice's own template shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.sam import enable_partial_batch_responses

ROOT = Path(__file__).resolve().parents[2]


def test_partial_batch_responses_are_enabled_on_every_sqs_event() -> None:
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
            "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue"},
        }
    }
    assert enable_partial_batch_responses(template) == ["OnBookingEvent.OnBookingEventSqsEventSource"]
    events = template["Resources"]["OnBookingEvent"]["Properties"]["Events"]
    assert events["OnBookingEventSqsEventSource"]["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]
    assert "FunctionResponseTypes" not in events["Nightly"]["Properties"]
    enable_partial_batch_responses(template)  # idempotent
    assert events["OnBookingEventSqsEventSource"]["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]


def test_the_command_patches_a_template_file(tmp_path: Path) -> None:
    path = tmp_path / "sam.json"
    path.write_text(
        json.dumps(
            {
                "Resources": {
                    "F": {
                        "Type": "AWS::Serverless::Function",
                        "Properties": {"Events": {"Q": {"Type": "SQS", "Properties": {"Queue": "arn"}}}},
                    }
                }
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "infra.sam", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "F.Q" in result.stdout
    assert json.loads(path.read_text())["Resources"]["F"]["Properties"]["Events"]["Q"]["Properties"][
        "FunctionResponseTypes"
    ] == ["ReportBatchItemFailures"]
