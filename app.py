"""The Chalice app: HTTP routes and event wiring only. Parse -> call a service -> map the answer."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from chalice import Chalice, Rate, Response
from chalice.app import Request

from chalicelib import conditional, openapi, prepared, swagger_ui, web
from chalicelib.adapters import observability
from chalicelib.adapters.observability import correlated
from chalicelib.adapters.tokens import cognito_user
from chalicelib.bootstrap import container
from chalicelib.config import settings
from chalicelib.domain.errors import BookingError, NotFound, Unauthorized
from chalicelib.domain.models import BookingStatus
from chalicelib.domain.validation import parse_dev_token_body, parse_json_body, parse_path_id
from chalicelib.services.catalogue import event_to_dict
from chalicelib.services.health import check_health
from chalicelib.services.seat_map_views import FULL, EncodedView, parse_since, parse_view

# Chalice's own log handler would write text: Powertools' Logger, of the same name, writes JSON instead.
app = Chalice(app_name=observability.SERVICE, configure_logs=False)
observability.configure(settings)
log = observability.logger

JSON = {"Content-Type": "application/json"}
# A waiting room's admission to a performance, required by its booking writes (docs/api.md#waiting-rooms).
ADMISSION = "X-Admission-Token"
PONG = '{"status": "ok"}'
# Errors Chalice itself produces before a view runs ({"Code", "Message"}), in the contract's error shape.
CHALICE_ERROR_CODES = {
    "MethodNotAllowedError": "METHOD_NOT_ALLOWED",
    "UnsupportedMediaType": "UNSUPPORTED_MEDIA_TYPE",
    "BadRequestError": "INVALID_REQUEST",
    "BadRequest": "INVALID_REQUEST",
    "InternalServerError": "INTERNAL_ERROR",
}


def _error_response(error: BookingError) -> Response:
    body = {"error": {"code": error.code, "message": error.message, **error.extra}}
    return Response(body=body, status_code=error.status, headers={**JSON, **error.headers})


def json_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure leaves as the contract's error shape; nothing unexpected leaks a stack trace."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except BookingError as error:
            return _error_response(error)
        except Exception:
            log.exception("unhandled error in %s", view.__name__)
            return _error_response(BookingError("internal error; nothing was changed by this request"))

    return wrapper


def _invocation_id(event: Any) -> str | None:
    """API Gateway's request id for an HTTP request (locally, the gateway emulation's Lambda request id);
    the Lambda request id of any other invocation (each record of a batch then names its booking)."""
    if isinstance(event, Request):
        return event.context.get("requestId") or getattr(event.lambda_context, "aws_request_id", None)
    return getattr(event.context, "aws_request_id", None)


@app.middleware("all")
def observed(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Every handler: its log lines carry the invocation's correlation id, and what it counted leaves as
    metrics when it ends (Lambda may freeze the process right after)."""
    with correlated(_invocation_id(event)):
        try:
            return get_response(event)
        finally:
            observability.metrics.flush()


@app.middleware("http")
def contract_error_shape(event: Any, get_response: Callable[[Any], Response]) -> Response:
    response = get_response(event)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code = CHALICE_ERROR_CODES.get(
            body["Code"], "INVALID_REQUEST" if response.status_code < 500 else "INTERNAL_ERROR"
        )
        response.body = {"error": {"code": code, "message": body["Message"]}}
        # Chalice sends its own errors (415, 405, ...) without a Content-Type: say it is JSON.
        response.headers = {**response.headers, **JSON}
    return response


def _json_body() -> Any:
    return parse_json_body(app.current_request.raw_body)


def _header(name: str) -> str | None:
    return app.current_request.headers.get(name)


def _caller() -> str:
    """The signed-in user making this request (docs/api.md#identity); 401 UNAUTHORIZED when none is."""
    request = app.current_request
    if settings.identity_provider == "cognito":
        return cognito_user(request.context)
    return container().tokens.user_of(request.headers.get("Authorization"))


def _booking_writer() -> str:
    """The signed-in user of a booking write, within the rate limits (the client address's bucket and the
    user's, in one Redis call); 429 RATE_LIMITED otherwise."""
    caller = _caller()
    address = (app.current_request.context.get("identity") or {}).get("sourceIp")
    container().booking_limits.check(caller, address)
    return caller


def _query(name: str) -> str | None:
    return (app.current_request.query_params or {}).get(name)


def _conditional(body: Any, etag: str, headers: dict[str, str]) -> Response:
    """The answer with its ETag, or 304 with an empty body if the client's If-None-Match names it."""
    validators = {"ETag": etag, "Cache-Control": headers.get("Cache-Control", conditional.CACHE_CONTROL)}
    if conditional.is_not_modified(_header("If-None-Match"), etag):
        return Response(body="", status_code=304, headers=validators)
    return Response(body=body, headers={**headers, **validators})


# --- health and documentation -----------------------------------------------------------------------------
@app.route("/health", methods=["GET"])
@json_errors
def health() -> Response:
    healthy, body = check_health(container().health_checks())
    return Response(body=body, status_code=200 if healthy else 503, headers=JSON)


@app.route("/ping", methods=["GET"])
def ping() -> Response:
    """Liveness without any dependency: no MySQL, no Redis, no AWS (`make bench`'s do-nothing endpoint)."""
    return Response(body=PONG, headers=JSON)


@app.route("/openapi.json", methods=["GET"])
@json_errors
def openapi_document() -> Response:
    return Response(body=openapi.build_openapi_document(settings.max_seats_per_booking), headers=JSON)


@app.route("/docs", methods=["GET"])
@json_errors
def docs_page() -> Response:
    return Response(body=swagger_ui.docs_page_html(), headers={"Content-Type": "text/html; charset=utf-8"})


@app.route("/docs/assets/{name}", methods=["GET"])
@json_errors
def docs_asset(name: str) -> Response:
    found = swagger_ui.asset(name)
    if found is None:
        raise NotFound(f"no documentation asset {name!r}")
    content, content_type = found
    return Response(
        body=content, headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"}
    )


# --- the live seat-map page ---------------------------------------------------------------------------------
@app.route("/", methods=["GET"])
@json_errors
def seat_map_page() -> Response:
    html, etag = web.page(settings.max_seats_per_booking)
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": web.PAGE_CACHE_CONTROL,
        **web.PAGE_SECURITY_HEADERS,
    }
    return _conditional(html, etag, headers)


@app.route("/assets/{name}", methods=["GET"])
@json_errors
def seat_map_asset(name: str) -> Response:
    found = web.asset(name)
    if found is None:
        raise NotFound(f"no page asset {name!r}")
    content, content_type = found
    return Response(
        body=content,
        headers={
            "Content-Type": content_type,
            "Cache-Control": web.ASSET_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        },
    )


# --- catalogue ----------------------------------------------------------------------------------------------
@app.route("/admin/events", methods=["POST"])
@json_errors
def create_event() -> Response:
    token = _header("X-Admin-Token") or ""
    # An unset (empty) admin token locks the admin API rather than opening it to an empty header.
    if not settings.admin_token or not hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        raise Unauthorized("a valid X-Admin-Token header is required")
    event = container().catalogue.create_event(_json_body(), _header("Idempotency-Key"))
    return Response(body=event, status_code=201, headers=JSON)


@app.route("/events", methods=["GET"])
@json_errors
def list_events() -> Response:
    return Response(body=container().catalogue.list_events(_query("limit"), _query("cursor")), headers=JSON)


@app.route("/events/{event_id}", methods=["GET"])
@json_errors
def get_event(event_id: str) -> Response:
    event = container().catalogue.get_event(parse_path_id(event_id, "event"))
    return Response(body=event_to_dict(event), headers=JSON)


@app.route("/performances/{performance_id}/seats", methods=["GET"])
@json_errors
def seat_map(performance_id: str) -> Response:
    """The view's bytes as rendered once for the map's version, or with `since` what changed after it:
    nothing built or serialised here."""
    view, since = parse_view(_query("view")), parse_since(_query("since"))
    services = container()
    performance = services.catalogue.performance(parse_path_id(performance_id, "performance"))
    accepts_gzip = prepared.accepts_gzip(_header("Accept-Encoding"))
    if since is not None:
        changes = services.seat_state.changes_since(performance, since)
        return _seat_map_answer(
            performance.performance_id, changes.version, changes.view, accepts_gzip, since=since
        )
    encoded = services.seat_state.encoded_map(performance)
    return _seat_map_answer(
        performance.performance_id, encoded.version, encoded.views[view], accepts_gzip, view=view
    )


def _seat_map_answer(
    performance_id: int,
    version: int,
    answer: EncodedView | None,
    accepts_gzip: bool,
    *,
    view: str = FULL,
    since: int | None = None,
) -> Response:
    """A prepared map answer (a view, or a delta; None: nothing changed since `since` -> 304) in the coding
    the client takes, with its representation's ETag; 304 where If-None-Match names it."""
    gzipped = accepts_gzip and answer is not None and answer.gzip_base64 is not None
    coding = prepared.GZIP if gzipped else None
    etag = conditional.seat_map_etag(performance_id, version, view, coding, since=since)
    headers = {"ETag": etag, "Cache-Control": conditional.SEAT_MAP_CACHE_CONTROL, "Vary": prepared.VARY}
    if answer is None or conditional.is_not_modified(_header("If-None-Match"), etag):
        return Response(body="", status_code=304, headers=headers)
    if gzipped:
        headers = {**headers, **JSON, "Content-Encoding": prepared.GZIP}
        return prepared.PreparedResponse(answer.gzip_base64, headers, base64_encoded=True)
    return prepared.PreparedResponse(answer.text, {**headers, **JSON})


# --- identity -----------------------------------------------------------------------------------------
if settings.dev_tokens:

    @app.route("/dev/token", methods=["POST"])
    @json_errors
    def dev_token() -> Response:
        """The local stage's sign-in: any user id -> a token that proves it (never deployed to AWS)."""
        token = container().tokens.user_token(parse_dev_token_body(_json_body()))
        return Response(body=token, status_code=201, headers=JSON)


# --- bookings ---------------------------------------------------------------------------------------
@app.route("/performances/{performance_id}/bookings", methods=["POST"])
@json_errors
def create_booking(performance_id: str) -> Response:
    caller = _booking_writer()
    booking = container().booking_service.book(
        parse_path_id(performance_id, "performance"),
        _json_body(),
        _header("Idempotency-Key"),
        caller,
        _header(ADMISSION),
    )
    if booking.status is BookingStatus.PENDING:
        return Response(
            body=booking.to_dict(),
            status_code=202,
            headers={**JSON, "Location": f"/bookings/{booking.booking_id}"},
        )
    return Response(body=booking.to_dict(), status_code=201, headers=JSON)


@app.route("/bookings/{booking_id}", methods=["GET"])
@json_errors
def get_booking(booking_id: str) -> Response:
    return Response(body=container().booking_service.get(booking_id, _caller()).to_dict(), headers=JSON)


@app.route("/bookings/{booking_id}/confirm", methods=["POST"])
@json_errors
def confirm_booking(booking_id: str) -> Response:
    booking = container().booking_service.confirm(
        booking_id, _booking_writer(), _json_body(), _header(ADMISSION)
    )
    return Response(body=booking.to_dict(), headers=JSON)


@app.route("/bookings/{booking_id}/extend", methods=["POST"])
@json_errors
def extend_booking(booking_id: str) -> Response:
    booking = container().booking_service.extend(booking_id, _booking_writer(), _header(ADMISSION))
    return Response(body=booking.to_dict(), headers=JSON)


@app.route("/bookings/{booking_id}", methods=["DELETE"])
@json_errors
def cancel_booking(booking_id: str) -> Response:
    booking = container().booking_service.cancel(
        booking_id, _booking_writer(), _header("Idempotency-Key"), _header(ADMISSION)
    )
    return Response(body=booking.to_dict(), headers=JSON)


# --- waiting rooms ---------------------------------------------------------------------------------------
@app.route("/performances/{performance_id}/queue", methods=["POST"])
@json_errors
def join_queue(performance_id: str) -> Response:
    caller = _booking_writer()
    services = container()
    performance = services.catalogue.performance(parse_path_id(performance_id, "performance"))
    ticket, new = services.waiting_rooms.join(performance, caller)
    return Response(body=ticket, status_code=201 if new else 200, headers=JSON)


@app.route("/performances/{performance_id}/queue/{ticket}", methods=["GET"])
@json_errors
def queue_ticket(performance_id: str, ticket: str) -> Response:
    caller = _caller()
    services = container()
    performance = services.catalogue.performance(parse_path_id(performance_id, "performance"))
    return Response(body=services.waiting_rooms.ticket(performance, ticket, caller), headers=JSON)


# --- queue consumers --------------------------------------------------------------------------------
@app.on_sqs_message(queue=settings.booking_queue_name, batch_size=10)
def on_booking_event(event: Any) -> dict:
    """Persist accepted `redis_async` bookings. Returns batchItemFailures (ReportBatchItemFailures)."""
    return container().booking_batch_handler(event.to_dict(), event.context)


@app.on_sqs_message(queue=settings.fifo_queue_name, batch_size=10)
def on_booking_request_in_line(event: Any) -> dict:
    """Decide `fifo_partition` requests, one section's group at a time, in order."""
    return container().fifo_batch_handler(event.to_dict(), event.context)


# --- stream consumers (stream_state) ---------------------------------------------------------------
@app.on_kinesis_record(stream=settings.request_stream_name, batch_size=100, starting_position="TRIM_HORIZON")
def on_seat_request(event: Any) -> dict:
    """Decide `stream_state` requests against the embedded seat ledger, per shard in order (no MySQL)."""
    return container().ledger_batch_handler(event.to_dict(), event.context)


@app.on_kinesis_record(
    stream=settings.changelog_stream_name, batch_size=100, starting_position="TRIM_HORIZON"
)
def on_seat_decision(event: Any) -> dict:
    """Persist the ledger's decisions to MySQL and the Redis seat map, idempotently."""
    return container().persister_batch_handler(event.to_dict(), event.context)


# --- scheduled jobs ---------------------------------------------------------------------------------
@app.schedule(Rate(1, unit=Rate.MINUTES))
def expire_holds(event: Any) -> dict:
    """Settle the holds whose time ran out: EXPIRED in MySQL, seats AVAILABLE on the map. Correctness never
    waits for this: every take already treats a lapsed hold's seats as free."""
    return {"expired": container().booking_service.sweep_lapsed_holds()}


@app.schedule(Rate(5, unit=Rate.MINUTES))
def reconcile_seat_maps(event: Any) -> dict:
    """Repair drift between the Redis seat maps and MySQL (the truth); returns the run's summary. A run
    stops starting performances when most of the invocation's time is spent (the next run goes on)."""
    seconds_left = event.context.get_remaining_time_in_millis() / 1000
    return container().reconciler.run(time_budget_seconds=seconds_left * 0.8).to_dict()
