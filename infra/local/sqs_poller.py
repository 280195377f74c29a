"""A local stand-in for Lambda's SQS event source mapping: receive, invoke the real Chalice handler, delete.

It reproduces what a deployed `@app.on_sqs_message` handler sees and what happens to the messages after:

* the event is the Lambda SQS event (record keys, attribute names and value types as AWS sends them);
* the context is a Lambda context whose remaining time counts down from the function timeout;
* `ReportBatchItemFailures`: listed items stay on the queue, the rest are deleted; an exception, a timeout
  or an invalid response leaves the whole batch on the queue (it comes back after the visibility timeout,
  and the queue's redrive policy moves it to the DLQ after maxReceiveCount receives, as on AWS);
* FIFO queues: after a failed item, the later messages of its group in the batch stay too, so order holds.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import SQSEventConfig

Handler = Callable[[dict, Any], Any]
Message = dict[str, Any]

SQS_MAX_BATCH = 10  # ReceiveMessage and DeleteMessageBatch both take at most 10 messages
LAMBDA_MAX_BATCH = 10_000  # the event source mapping's BatchSize limit (above 10 needs a batching window)
DEFAULT_MEMORY_MB = 128
_BACKOFF_FIRST_SECONDS = 0.5
_BACKOFF_MAX_SECONDS = 10.0
_DELETE_ATTEMPTS = 3


class LambdaContext:
    """The context object of the Python Lambda runtime (awslambdaric), with the same attribute names/types."""

    def __init__(
        self,
        *,
        function_name: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        log_group_name: str,
        log_stream_name: str,
        timeout_seconds: float,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        # The runtime reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE, so on AWS it is a string too.
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.client_context = None
        self.identity = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


# --- the event ----------------------------------------------------------------------------------------------
def parse_queue_arn(queue_arn: str) -> tuple[str, str, str]:
    """arn:aws:sqs:<region>:<account>:<name> -> (region, account, name)."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    return parts[3], parts[4], parts[5]


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # Lambda renames SQS's PascalCase keys, always sends the (unused) list fields, and base64s binary values.
    converted: dict[str, Any] = {}
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    converted["stringListValues"] = []
    converted["binaryListValues"] = []
    converted["dataType"] = value["DataType"]
    return converted


def lambda_record(message: Message, queue_arn: str) -> dict[str, Any]:
    """One ReceiveMessage message as a record of Lambda's SQS event."""
    region = parse_queue_arn(queue_arn)[0]
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        # System attributes pass through as SQS returns them (strings); FIFO adds the group/dedup/sequence.
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(
        {
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
    )
    return record


# --- what stays on the queue -------------------------------------------------------------------------------
class InvalidBatchResponse(ValueError):
    """The handler's answer is not a valid partial batch response; Lambda then fails the whole batch."""


def reported_failures(response: Any, message_ids: Sequence[str]) -> set[str]:
    """The message ids a `ReportBatchItemFailures` response leaves on the queue.

    Success (nothing stays): None, {}, no/None/empty `batchItemFailures`. Anything Lambda cannot map to
    messages of this batch (not JSON, wrong shape, empty/unknown itemIdentifier) raises InvalidBatchResponse.
    """
    try:
        json.dumps(response)  # Lambda serialises the return value first: failing that fails the invocation
    except (TypeError, ValueError) as error:
        raise InvalidBatchResponse(f"the response is not JSON-serialisable: {error}") from None
    if response is None:
        return set()
    if not isinstance(response, dict):
        raise InvalidBatchResponse(
            f"expected an object with batchItemFailures, got {type(response).__name__}"
        )
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise InvalidBatchResponse("batchItemFailures is not a list")
    known = set(message_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier:
            raise InvalidBatchResponse(f"batch item failure without a valid itemIdentifier: {item!r}")
        if identifier not in known:
            raise InvalidBatchResponse(f"itemIdentifier {identifier!r} is not a message of this batch")
        failed.add(identifier)
    return failed


_FIFO_RECEIVE_LOCKS: dict[str, threading.Lock] = {}
_FIFO_RECEIVE_LOCKS_GUARD = threading.Lock()


def _fifo_receive_lock(queue_url: str) -> threading.Lock:
    with _FIFO_RECEIVE_LOCKS_GUARD:
        return _FIFO_RECEIVE_LOCKS.setdefault(queue_url, threading.Lock())


def hold_back_fifo_groups(records: Sequence[dict[str, Any]], failed: set[str]) -> set[str]:
    """FIFO: a failed message also keeps every later message of its group in the batch on the queue."""
    blocked_groups: set[str] = set()
    kept: set[str] = set()
    for record in records:
        group = record["attributes"].get("MessageGroupId")
        if record["messageId"] in failed or group in blocked_groups:
            kept.add(record["messageId"])
            if group is not None:
                blocked_groups.add(group)
    return kept


def _chunks(items: Sequence[Message], size: int) -> Iterator[Sequence[Message]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Backoff:
    """Doubling delays for a flaky endpoint (an emulator restarting, a network blip)."""

    def __init__(self) -> None:
        self._next = _BACKOFF_FIRST_SECONDS

    def reset(self) -> None:
        self._next = _BACKOFF_FIRST_SECONDS

    def next_delay(self) -> float:
        delay, self._next = self._next, min(self._next * 2, _BACKOFF_MAX_SECONDS)
        return delay


class Instance:
    """What one execution environment keeps between invocations (Lambda reuses its log stream)."""

    def __init__(self, function_name: str) -> None:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        self.log_stream_name = f"{day}/[$LATEST]{uuid.uuid4().hex}"
        self.label = f"{function_name}/{self.log_stream_name[-8:]}"


# --- the poller --------------------------------------------------------------------------------------------
class SqsEventSourcePoller:
    """Delivers one queue's messages to one handler the way an SQS event source mapping with
    `FunctionResponseTypes: [ReportBatchItemFailures]` does; `concurrency` workers = concurrent instances."""

    def __init__(
        self,
        handler: Handler,
        queue_url: str,
        sqs_client: Any,
        *,
        batch_size: int = 10,
        function_name: str,
        timeout_seconds: int = 30,
        max_batching_window_seconds: float = 0,
        wait_time_seconds: int = 1,
        concurrency: int = 1,
        memory_limit_in_mb: int = DEFAULT_MEMORY_MB,
        logger: logging.Logger | None = None,
    ) -> None:
        self._fifo = queue_url.endswith(".fifo")
        _validate(batch_size, max_batching_window_seconds, wait_time_seconds, concurrency, timeout_seconds)
        if self._fifo and batch_size > SQS_MAX_BATCH:
            raise ValueError(f"FIFO queues allow a batch size of at most {SQS_MAX_BATCH}")
        self._handler = handler
        self.queue_url = queue_url
        self._sqs = sqs_client
        self.batch_size = batch_size
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.max_batching_window_seconds = max_batching_window_seconds
        self.wait_time_seconds = wait_time_seconds
        self.concurrency = concurrency
        self.memory_limit_in_mb = memory_limit_in_mb
        self._log = logger or logging.getLogger(__name__)
        self._queue_arn: str | None = None
        self._arn_lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        receive = sqs_client.meta.service_model.operation_model("ReceiveMessage")
        # Older botocore only knows the deprecated AttributeNames; SQS accepts both together.
        self._system_attribute_names = "MessageSystemAttributeNames" in receive.input_shape.members

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start `concurrency` daemon workers, each its own receive -> invoke -> delete loop."""
        if any(thread.is_alive() for thread in self._threads):
            raise RuntimeError(f"the poller of {self.function_name} is already running")
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=self._worker_main,
                args=(Instance(self.function_name),),
                name=f"sqs-poller-{self.function_name}-{number}",
                daemon=True,
            )
            for number in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop receiving; batches already received are still invoked and settled. True if all workers ended.

        A worker in a long poll notices only when the poll returns (at most wait_time_seconds)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread for thread in self._threads if thread.is_alive()]
        if alive:
            self._log.warning(
                "%d worker(s) of %s still busy after %.0f s", len(alive), self.function_name, timeout
            )
        self._threads = alive
        return not alive

    def run_until_idle(self, idle_seconds: float = 1.0, timeout: float = 60) -> int:
        """Poll in the calling thread until the queue yields nothing for `idle_seconds`.

        Returns the number of messages delivered (a redelivered message counts each time). Raises TimeoutError
        if the queue is still busy (or unreachable) after `timeout` seconds."""
        return self._run_here(timeout, idle_seconds)

    def run_until_empty(self, timeout: float = 60) -> int:
        """Poll in the calling thread until one receive finds nothing visible; no idle period. Messages in
        flight or backing off are invisible, so the caller decides by the queue's counters whether more will
        come (tests' drain). Returns the number of messages delivered."""
        return self._run_here(timeout, None)

    def _run_here(self, timeout: float, idle_seconds: float | None) -> int:
        instance = Instance(self.function_name)
        backoff = Backoff()
        deadline = time.monotonic() + timeout
        last_activity = time.monotonic()
        delivered = 0
        # Never long-poll past the idle period: an idle queue should end the run promptly.
        wait = 0 if idle_seconds is None else min(self.wait_time_seconds, math.ceil(idle_seconds))
        not_stopping = threading.Event()  # stop() is for the background workers, not for this loop
        while idle_seconds is None or time.monotonic() - last_activity < idle_seconds:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.queue_url} did not go idle within {timeout} s ({delivered} messages delivered)"
                )
            try:
                messages = self._receive_batch(wait, not_stopping)
            except Exception as error:
                delay = backoff.next_delay()
                self._log_receive_error(error, delay)
                time.sleep(delay)
                last_activity = time.monotonic()  # an unreachable queue is not an empty one
                continue
            backoff.reset()
            if messages:
                self._process(messages, instance)
                delivered += len(messages)
                last_activity = time.monotonic()
            elif idle_seconds is None:
                return delivered
            elif wait == 0:
                time.sleep(0.05)  # short polls on an empty queue: don't spin
        return delivered

    # --- the worker loop -----------------------------------------------------------------------------------
    def _worker_main(self, instance: Instance) -> None:
        try:
            self._work(instance)
        except BaseException:
            self._log.critical(
                "the %s poller worker %s died", self.function_name, instance.label, exc_info=True
            )
            raise
        self._log.info("the %s poller worker %s stopped", self.function_name, instance.label)

    def _work(self, instance: Instance) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                messages = self._receive_batch(self.wait_time_seconds, self._stopping)
            except Exception as error:
                delay = backoff.next_delay()
                self._log_receive_error(error, delay)
                self._stopping.wait(delay)
                continue
            backoff.reset()
            if not messages:
                if self.wait_time_seconds == 0:
                    self._stopping.wait(0.05)
                continue
            try:
                self._process(messages, instance)
            except Exception:
                # A bug here, not in the handler: undeleted messages come back after their visibility timeout.
                self._log.exception("settling a batch of %d from %s failed", len(messages), self.queue_url)

    def _log_receive_error(self, error: Exception, delay: float) -> None:
        if isinstance(error, BotoCoreError | ClientError):
            self._log.warning(
                "ReceiveMessage on %s failed (%s); retry in %.1f s", self.queue_url, error, delay
            )
        else:
            self._log.error("polling %s failed; retry in %.1f s", self.queue_url, delay, exc_info=error)

    # --- receive -------------------------------------------------------------------------------------------
    @property
    def queue_arn(self) -> str:
        return self._resolve_queue_arn()

    def _resolve_queue_arn(self) -> str:
        """Fetched once, lazily: the emulator may not be up yet when the poller is built."""
        with self._arn_lock:
            if self._queue_arn is None:
                attributes = self._sqs.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
                )
                self._queue_arn = attributes["Attributes"]["QueueArn"]
            return self._queue_arn

    def _receive(self, count: int, wait_seconds: int) -> list[Message]:
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": count,
            "WaitTimeSeconds": wait_seconds,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self._system_attribute_names:
            request["MessageSystemAttributeNames"] = ["All"]
        if not self._fifo:
            return self._sqs.receive_message(**request).get("Messages", [])
        # moto checks "is this group in flight?" and hands messages out without a lock, so two receives at
        # the same instant can both get messages of one group, and that group's order is lost. SQS itself
        # does not need this; serialising this process's receives of a FIFO queue keeps the emulator honest.
        with _fifo_receive_lock(self.queue_url):
            return self._sqs.receive_message(**request).get("Messages", [])

    def _receive_batch(self, wait_seconds: int, stopping: threading.Event) -> list[Message]:
        """One batch: a single receive, or with a batching window, receives until full or the window ends."""
        self._resolve_queue_arn()  # before taking messages off the queue, so a failure here loses nothing
        messages = self._receive(min(self.batch_size, SQS_MAX_BATCH), wait_seconds)
        if not messages or self.max_batching_window_seconds <= 0:
            return messages
        window_ends = time.monotonic() + self.max_batching_window_seconds
        seen = {message["MessageId"] for message in messages}
        while len(messages) < self.batch_size and not stopping.is_set():
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(min(self.batch_size - len(messages), SQS_MAX_BATCH), min(20, int(remaining)))
            fresh = [message for message in more if message["MessageId"] not in seen]
            seen.update(message["MessageId"] for message in fresh)
            messages.extend(fresh)
            if not more and remaining < 1:
                time.sleep(min(remaining, 0.1))  # sub-second rest of the window: short polls, gently
        return messages

    # --- invoke and settle ---------------------------------------------------------------------------------
    def _process(self, messages: list[Message], instance: Instance) -> None:
        records = [lambda_record(message, self.queue_arn) for message in messages]
        kept = self._invoke(records, instance)
        if self._fifo and kept:
            kept = hold_back_fifo_groups(records, kept)
        if kept:
            self._log.info(
                "%s: %d of %d messages stay on the queue", self.function_name, len(kept), len(records)
            )
        self._delete([message for message in messages if message["MessageId"] not in kept])

    def _context(self, instance: Instance) -> LambdaContext:
        region, account, _ = parse_queue_arn(self.queue_arn)
        return LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=f"arn:aws:lambda:{region}:{account}:function:{self.function_name}",
            memory_limit_in_mb=self.memory_limit_in_mb,
            log_group_name=f"/aws/lambda/{self.function_name}",
            log_stream_name=instance.log_stream_name,
            timeout_seconds=self.timeout_seconds,
        )

    def _invoke(self, records: list[dict[str, Any]], instance: Instance) -> set[str]:
        """Call the handler; return the ids that stay on the queue (all of them if the invocation failed)."""
        ids = [record["messageId"] for record in records]
        context = self._context(instance)
        started = time.monotonic()
        try:
            response = self._handler({"Records": records}, context)
        except (Exception, SystemExit):
            self._log.exception(
                "%s failed (request %s); the batch of %d stays on the queue",
                self.function_name,
                context.aws_request_id,
                len(ids),
            )
            return set(ids)
        elapsed = time.monotonic() - started
        if elapsed > self.timeout_seconds:
            # Lambda would have killed the invocation at its timeout: nothing of the batch was acknowledged.
            self._log.error(
                "%s ran %.1f s, past its %d s timeout (request %s); the batch of %d stays on the queue",
                self.function_name,
                elapsed,
                self.timeout_seconds,
                context.aws_request_id,
                len(ids),
            )
            return set(ids)
        try:
            return reported_failures(response, ids)
        except InvalidBatchResponse as error:
            self._log.error(
                "%s returned an invalid batch response (%s); the batch of %d stays on the queue",
                self.function_name,
                error,
                len(ids),
            )
            return set(ids)

    def _delete(self, messages: Sequence[Message]) -> None:
        for chunk in _chunks(messages, SQS_MAX_BATCH):
            entries = [
                {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                for number, message in enumerate(chunk)
            ]
            self._delete_chunk(entries)

    def _delete_chunk(self, entries: list[dict[str, str]]) -> None:
        backoff = Backoff()
        for attempt in range(1, _DELETE_ATTEMPTS + 1):
            try:
                response = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as error:
                if attempt == _DELETE_ATTEMPTS:
                    # At-least-once, as on AWS: the messages are processed and will be delivered again.
                    self._log.error("deleting %d messages failed for good (%s)", len(entries), error)
                    return
                time.sleep(backoff.next_delay())
                continue
            for failure in response.get("Failed", []):
                self._log.warning("could not delete a message from %s: %s", self.queue_url, failure)
            return


def _validate(
    batch_size: int, window: float, wait_time_seconds: int, concurrency: int, timeout_seconds: float
) -> None:
    if not 1 <= batch_size <= LAMBDA_MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {LAMBDA_MAX_BATCH}")
    if batch_size > SQS_MAX_BATCH and window <= 0:
        raise ValueError("a batch_size above 10 needs a batching window (as on AWS)")
    if not 0 <= window <= 300:
        raise ValueError("max_batching_window_seconds must be between 0 and 300")
    if not 0 <= wait_time_seconds <= 20:
        raise ValueError("wait_time_seconds must be between 0 and 20")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")


# --- wiring a Chalice app ----------------------------------------------------------------------------------
def pollers_for_app(
    app_module: ModuleType,
    sqs_client: Any,
    *,
    function_name_prefix: str,
    concurrency: int = 1,
    **kwargs: Any,
) -> list[SqsEventSourcePoller]:
    """One poller per `@app.on_sqs_message` of `app_module.app`, configured from the decorator's arguments.

    Function names follow Chalice's deployed names, `<prefix>-<handler name>`; a decorator's
    `maximum_concurrency` caps `concurrency` as the mapping's ScalingConfig would."""
    pollers = []
    for config in _sqs_configs(app_module.app.event_sources):
        limit = config.maximum_concurrency
        pollers.append(
            SqsEventSourcePoller(
                handler_for(app_module, config),
                _queue_url(sqs_client, config),
                sqs_client,
                batch_size=config.batch_size,
                max_batching_window_seconds=config.maximum_batching_window_in_seconds or 0,
                function_name=f"{function_name_prefix}-{config.name}",
                concurrency=min(concurrency, limit) if limit else concurrency,
                **kwargs,
            )
        )
    return pollers


def _sqs_configs(event_sources: Iterable[Any]) -> list[SQSEventConfig]:
    return [source for source in event_sources if isinstance(source, SQSEventConfig)]


def handler_for(app_module: ModuleType, config: SQSEventConfig) -> Handler:
    # handler_string is "<module>.<attribute>", e.g. "app.on_booking_event"; the module may be imported
    # under another name (tests), so look the attribute up on the module we were given.
    attribute = config.handler_string.rsplit(".", 1)[-1]
    handler = getattr(app_module, attribute, None)
    if not callable(handler):
        raise ValueError(f"{app_module.__name__} has no handler {attribute!r} for {config.handler_string!r}")
    return handler


def _queue_url(sqs_client: Any, config: SQSEventConfig) -> str:
    if config.queue:
        return sqs_client.get_queue_url(QueueName=config.queue)["QueueUrl"]
    if config.queue_arn:
        _, account, name = parse_queue_arn(config.queue_arn)
        return sqs_client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    raise ValueError(f"{config.name} names neither a queue nor a queue ARN")
