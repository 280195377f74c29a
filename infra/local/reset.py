"""`make reset`: start the local stage from nothing, so "Try it" books seats 1 and 2 of performance 1 again.

Drops the stage's MySQL database, deletes its Redis keys (the stage's key prefix only), and forgets the
worker's stream positions and the stream_state ledger; the next `make run` migrates, provisions and seeds the
demo event afresh. It refuses while the stage's server or AWS emulator still answers: the running worker
would write the old bookings back, and the emulator's queues and streams still hold their messages."""

from __future__ import annotations

import argparse
import os

from infra.local.stage import apply_stage_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", default=os.environ.get("CHALICE_STAGE", "local"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--stream-checkpoints", help="the worker's checkpoint file (default: the stage's)")
    args = parser.parse_args()
    apply_stage_environment(args.stage)
    import redis
    from redis.cluster import RedisCluster

    from chalicelib.config import Settings
    from infra.local.run import answers, forget_stream_positions
    from infra.local.worker import default_checkpoint_file
    from infra.migrate import drop_database

    settings = Settings.from_env()
    for name, url in (
        ("the server", f"http://127.0.0.1:{args.port}/health"),
        ("the AWS emulator", settings.aws_endpoint_url),
    ):
        if url and answers(url):
            raise SystemExit(f"[reset] {name} still answers at {url}: stop `make run` (Ctrl-C) first")
    drop_database(settings.database_url)
    # A cluster (REDIS_CLUSTER=1): the cluster client scans every primary, not only the seed node.
    cluster = settings.redis_cluster
    client = (RedisCluster if cluster else redis.Redis).from_url(settings.redis_url)
    deleted = 0
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
        deleted += client.delete(key)
    checkpoints = args.stream_checkpoints or default_checkpoint_file(args.stage)
    forget_stream_positions(checkpoints, settings.ledger_dir)
    print(
        f"[reset] stage {args.stage}: database dropped, {deleted} Redis key(s) deleted, stream positions and "
        "ledger forgotten; `make run` starts afresh (demo performance 1, seats 1-120)"
    )


if __name__ == "__main__":
    main()
