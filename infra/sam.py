"""Post-process the SAM template `chalice package` writes into a deployable one (infra/aws_template.py).

    chalice package --stage prod build/ && python -m infra.sam build/sam.json        # AWS (`make package`)
    python -m infra.sam build/sam.json --target localstack --set REDIS_URL=redis://redis:6379/0

The stage's environment in .chalice/config.json (prod for AWS, localstack for LocalStack) gives the queue and
stream names, the redrive and the timing; `--set` overrides a function environment variable (the compose path
points the functions at its own containers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chalicelib.config import Settings
from infra.aws_template import TARGETS, TemplateError, build_template, enable_partial_batch_responses
from infra.local.stage import stage_environment

__all__ = ["enable_partial_batch_responses", "main"]


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("template", type=Path, help="sam.json from `chalice package` (rewritten in place)")
    parser.add_argument("--target", choices=TARGETS, default="aws")
    parser.add_argument(
        "--stage", help="the .chalice stage whose settings apply (default: prod / localstack)"
    )
    parser.add_argument("--set", type=_assignment, action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    stage = args.stage or ("prod" if args.target == "aws" else "localstack")
    settings = Settings.from_env(stage_environment(stage))
    try:
        template = build_template(
            json.loads(args.template.read_text()), settings, args.target, dict(args.set)
        )
    except TemplateError as error:
        print(f"infra.sam: {error}", file=sys.stderr)
        return 1
    args.template.write_text(json.dumps(template, indent=2) + "\n")
    functions = sorted(
        name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    )
    print(f"{args.template}: {args.target} template (stage {stage}) for {', '.join(functions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
