"""Post-process the SAM template `chalice package` writes, for what Chalice cannot express itself.

Chalice's `on_sqs_message` has no switch for partial batch responses (aws/chalice#2029): without
`FunctionResponseTypes: [ReportBatchItemFailures]` on the event source mapping, Lambda ignores the
`batchItemFailures` our consumer returns and retries (or deletes) whole batches. This adds it to every SQS
event of every function.

    .venv/bin/chalice package --stage prod build/ && python -m infra.sam build/sam.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PARTIAL_BATCH = "ReportBatchItemFailures"


def enable_partial_batch_responses(template: dict) -> list[str]:
    """Patch the template in place; returns the names of the SQS events changed."""
    changed = []
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") != "SQS":
                continue
            types = event.setdefault("Properties", {}).setdefault("FunctionResponseTypes", [])
            if PARTIAL_BATCH not in types:
                types.append(PARTIAL_BATCH)
            changed.append(f"{name}.{event_name}")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("template", type=Path, help="sam.json from `chalice package`")
    args = parser.parse_args()
    template = json.loads(args.template.read_text())
    changed = enable_partial_batch_responses(template)
    args.template.write_text(json.dumps(template, indent=2))
    print(f"ReportBatchItemFailures set on: {', '.join(changed) or 'no SQS events found'}")


if __name__ == "__main__":
    main()
