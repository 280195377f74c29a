"""boto3 clients built from Settings: the same code talks to moto, LocalStack or AWS, by endpoint alone."""

from __future__ import annotations

import boto3
from botocore.config import Config

from chalicelib.config import Settings


def client(service: str, settings: Settings, max_pool_connections: int = 64):
    return boto3.session.Session().client(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(
            connect_timeout=settings.aws_connect_timeout_seconds,
            read_timeout=settings.aws_read_timeout_seconds,
            # Short and bounded: a request thread must not hang on a sick queue; the caller decides (503).
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max_pool_connections,
        ),
    )
