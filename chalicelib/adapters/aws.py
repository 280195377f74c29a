"""boto3 clients built from Settings: the same code talks to moto, LocalStack or AWS, by endpoint alone."""

from __future__ import annotations

import boto3
from botocore.config import Config

from chalicelib.config import Settings

LOCALSTACK_STAGE = "localstack"


def endpoint_url(service: str, settings: Settings) -> str | None:
    """Where `service` answers: the configured AWS_ENDPOINT_URL (moto server, LocalStack; None: AWS itself).
    The `localstack` stage may leave it empty: localstack-client then finds LocalStack the way LocalStack's
    own tools do (its AWS_ENDPOINT_URL, else LOCALSTACK_HOST, else localhost:4566), as in a Lambda it runs."""
    if settings.aws_endpoint_url or settings.stage != LOCALSTACK_STAGE:
        return settings.aws_endpoint_url
    from localstack_client.config import get_service_endpoint  # in the Lambda package; AWS never gets here

    return get_service_endpoint(service)


def client(service: str, settings: Settings, max_pool_connections: int = 64):
    return boto3.session.Session().client(
        service,
        region_name=settings.aws_region,
        endpoint_url=endpoint_url(service, settings),
        config=Config(
            connect_timeout=settings.aws_connect_timeout_seconds,
            read_timeout=settings.aws_read_timeout_seconds,
            # Short and bounded: a request thread must not hang on a sick queue; the caller decides (503).
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max_pool_connections,
        ),
    )
