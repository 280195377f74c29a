"""The local stand-in for Lambda's event source mappings: poll every queue the app subscribes to with
`@app.on_sqs_message` and deliver batches to the real handlers (see sqs_poller for the semantics)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from infra.local.stage import PROJECT_DIR, apply_stage_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", default="local")
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent batches per queue")
    args = parser.parse_args()
    apply_stage_environment(args.stage)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(PROJECT_DIR))

    import app as app_module
    from chalicelib.adapters import aws
    from chalicelib.config import settings
    from infra.local.sqs_poller import pollers_for_app

    pollers = pollers_for_app(
        app_module,
        aws.client("sqs", settings),
        function_name_prefix="seat-booking-local",
        concurrency=args.concurrency,
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    for poller in pollers:
        poller.start()
    logging.getLogger("worker").info("polling %d queue(s); Ctrl-C stops", len(pollers))
    stopping.wait()
    for poller in pollers:
        poller.stop(timeout=10)


if __name__ == "__main__":
    main()
