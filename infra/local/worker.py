"""The local stand-in for Lambda's event source mappings: poll every queue the app subscribes to with
`@app.on_sqs_message` and every stream of `@app.on_kinesis_record`, and deliver batches to the real handlers
(see sqs_poller and kinesis_poller for the semantics). Where each stream was read to is kept in a checkpoint
file, as the event source mapping keeps it, so a restarted worker resumes after its last good batch. Every
`@app.schedule` handler runs at its rate too (see scheduler), as EventBridge would invoke it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading

from infra.local.stage import PROJECT_DIR, apply_stage_environment


def default_checkpoint_file(stage: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"seat-booking-{stage}", "kinesis-checkpoints.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", default="local")
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent batches per queue")
    parser.add_argument("--stream-checkpoints", help="checkpoint file of the Kinesis event sources")
    parser.add_argument("--function-name-prefix", help="as deployed: <prefix>-<handler> (checkpoint keys)")
    parser.add_argument(
        "--kinesis-poll-interval",
        type=float,
        default=0.2,
        help="seconds between two reads of a caught-up shard (Lambda's event source mapping: 1)",
    )
    args = parser.parse_args()
    prefix = args.function_name_prefix or f"seat-booking-{args.stage}"
    apply_stage_environment(args.stage)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(PROJECT_DIR))

    import app as app_module
    from chalicelib.adapters import aws
    from chalicelib.config import settings
    from infra.local import kinesis_poller, scheduler, sqs_poller

    checkpoint_file = args.stream_checkpoints or default_checkpoint_file(args.stage)
    checkpoints = kinesis_poller.FileCheckpoints(checkpoint_file)
    pollers = [
        *sqs_poller.pollers_for_app(
            app_module,
            aws.client("sqs", settings),
            function_name_prefix=prefix,
            concurrency=args.concurrency,
        ),
        *kinesis_poller.pollers_for_app(
            app_module,
            aws.client("kinesis", settings),
            function_name_prefix=prefix,
            checkpoints=checkpoints,
            poll_interval_seconds=args.kinesis_poll_interval,
        ),
        *scheduler.schedules_for_app(app_module, function_name_prefix=prefix, region=settings.aws_region),
    ]
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    for poller in pollers:
        poller.start()
    logging.getLogger("worker").info("running %d event source(s) and schedule(s); Ctrl-C stops", len(pollers))
    stopping.wait()
    for poller in pollers:
        poller.stop(timeout=10)


if __name__ == "__main__":
    main()
