"""`make chalice-local`: Chalice's own dev server (`chalice local`) on a stage of .chalice/config.json, with
what the local runtime adds to a stage (infra/local/stage.py): above all the emulator's dummy AWS credentials,
without which boto3 refuses to sign and every booking answers 503. The emulator, queues and worker come from
`make run` running alongside."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from infra.local.stage import PROJECT_DIR, apply_stage_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", default="local")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="the Chalice project to serve")
    args = parser.parse_args()
    apply_stage_environment(args.stage, args.project_dir)
    chalice = str(Path(sys.executable).parent / "chalice")  # the venv's, next to this interpreter
    os.chdir(args.project_dir)
    os.execv(chalice, [chalice, "local", "--stage", args.stage, "--port", str(args.port)])


if __name__ == "__main__":
    main()
