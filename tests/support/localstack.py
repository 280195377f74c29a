"""LocalStack in host mode for the tests (infra/local/localstack.py): one per test session, on a port of its
own (never a developer's `make localstack` on 4566), in a directory of the session's own, started on first use
and stopped at the end. Where LocalStack host mode cannot run (no Python 3.13+ on the machine, or no npm for
its Kinesis engine) every test that needs it is skipped, saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import free_port

SKIP_REASON = "LocalStack host mode cannot run on this machine"


@pytest.fixture(scope="session")
def localstack_endpoint(tmp_path_factory) -> Iterator[str]:
    from infra.local import localstack

    try:
        # A no-op when the venv is current (`make test` installs it before pytest, with progress).
        localstack.ensure_installed()
    except localstack.LocalStackUnavailable as exc:
        pytest.skip(f"{SKIP_REASON}: {exc}")
    instance = localstack.LocalStack(free_port(), tmp_path_factory.mktemp("localstack"))
    instance.start()
    yield instance.endpoint
    instance.stop()


def localstack_environment(endpoint: str) -> dict[str, str]:
    """What the app's processes get to run against LocalStack: the `localstack` stage with no endpoint
    configured, so chalicelib/adapters/aws.py finds LocalStack through localstack-client (LOCALSTACK_HOST)."""
    return {"STAGE": "localstack", "AWS_ENDPOINT_URL": "", "LOCALSTACK_HOST": endpoint.split("://", 1)[1]}
