"""Idempotency with AWS Lambda Powertools, persisted in Redis (already in the stack; no DynamoDB needed).

Used twice: for HTTP writes carrying an Idempotency-Key (replay the first answer, refuse a different body,
refuse a concurrent duplicate) and for queue messages (a redelivered message never writes twice).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceConnectionError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import DataRecord
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer

from chalicelib.domain.errors import IdempotencyInProgress, IdempotencyKeyReused, ServiceUnavailable

# A request that dies mid-way leaves its key INPROGRESS; without a Lambda context Powertools cannot tell
# when the work timed out, so every call gets one whose deadline bounds how long the key stays locked.
DEFAULT_DEADLINE_MS = 30_000


class _Deadline:
    """The part of a Lambda context Powertools reads: how long the work may still run."""

    def __init__(self, remaining_ms: int) -> None:
        self._ends = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


class ValidatingCachePersistenceLayer(CachePersistenceLayer):
    """Powertools' cache layer, keeping the payload-validation hash when a record completes.

    In aws-lambda-powertools 3.37.0, `_update_record` rewrites the whole Redis value with status, expiry and
    data only, dropping the `validation` hash that `_put_in_progress_record` wrote; every identical replay of
    a completed key then fails validation. (The TypeScript twin: powertools-lambda-typescript#5705, fixed
    there by writing the hash on completion too, as here.) Drop this class once Python's layer does the same.
    """

    def _update_record(self, data_record: DataRecord) -> None:
        item = {
            self.data_attr: data_record.response_data,
            self.status_attr: data_record.status,
            self.expiry_attr: data_record.expiry_timestamp,
        }
        if self.payload_validation_enabled:
            item[self.validation_key_attr] = data_record.payload_hash
        ttl = self._get_expiry_second(data_record.expiry_timestamp)
        self.client.set(name=data_record.idempotency_key, value=self._json_serializer(item), ex=ttl)


class PowertoolsIdempotency:
    def __init__(self, client: redis.Redis, ttl_seconds: int, key_prefix: str = "bk:idem") -> None:
        self._client = client
        # One persistence layer per scope: Powertools' `configure` writes the key prefix into the layer on
        # every call, so scopes sharing one layer (HTTP bookings and the consumer, on concurrent threads)
        # would store a record under one scope's key and complete or delete it under another's.
        self._layers: dict[str, ValidatingCachePersistenceLayer] = {}
        self._layers_lock = threading.Lock()
        self._ttl = ttl_seconds
        self._prefix = key_prefix

    def _persistence(self, scope: str) -> ValidatingCachePersistenceLayer:
        with self._layers_lock:
            if scope not in self._layers:
                self._layers[scope] = ValidatingCachePersistenceLayer(client=self._client)
            return self._layers[scope]

    def run_once(
        self,
        scope: str,
        key: str,
        fingerprint: Mapping[str, Any],
        work: Callable[[], dict],
        lambda_context: Any | None = None,
    ) -> dict:
        config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="fingerprint",
            expires_after_seconds=self._ttl,
            raise_on_no_idempotency_key=True,
        )
        config.register_lambda_context(lambda_context or _Deadline(DEFAULT_DEADLINE_MS))
        done: list[dict] = []

        def once(request: dict) -> dict:
            done.append(work())
            return done[0]

        guarded = idempotent_function(
            data_keyword_argument="request",
            persistence_store=self._persistence(scope),
            config=config,
            key_prefix=f"{self._prefix}:{scope}",
        )(once)
        try:
            return guarded(request={"key": key, "fingerprint": dict(fingerprint)})
        except IdempotencyValidationError:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body", field="Idempotency-Key"
            ) from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyInProgress(
                "a request with this Idempotency-Key is still being processed; retry shortly"
            ) from None
        except (IdempotencyPersistenceConnectionError, IdempotencyPersistenceLayerError) as exc:
            # Only the store's own failures arrive wrapped like this; the work's exceptions pass as they are.
            if done:
                # The work is done (a booking accepted, its message sent) but the store went away before it
                # could remember the answer: that answer is the truth; a 503 would say nothing was done.
                return done[0]
            raise ServiceUnavailable("idempotency store unavailable") from exc
