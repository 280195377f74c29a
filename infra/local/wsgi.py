"""The production serving mode of `make run`: the Chalice app behind granian (a Rust HTTP server) through a
thin WSGI adapter that turns each request into the API Gateway proxy event Lambda would get.

Why not `chalice local`: its dev server is single-threaded (~110 req/s here, dropping connections at 16
concurrent clients). The adapter reuses Chalice's own LocalGateway (route matching, event shape, the app's
middleware and error handling), so the app runs exactly as under API Gateway; granian brings the workers.

    python -m infra.local.wsgi --host 127.0.0.1 --port 8000 --workers 2 --stage local
"""

from __future__ import annotations

import argparse
import base64
import functools
import importlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from infra.local.stage import PROJECT_DIR, apply_stage_environment

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _status_line(code: int) -> str:
    return f"{code} {REASONS.get(code, 'Status')}"


def _json_error(start_response: StartResponse, status: int, code: str, message: str) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    start_response(
        _status_line(status), [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _request_headers(environ: dict) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _response_headers(response: dict) -> list[tuple[str, str]]:
    headers = [(name, str(value)) for name, value in (response.get("headers") or {}).items()]
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(value)) for value in values)
    return headers


def _response_body(response: dict) -> bytes:
    body = response.get("body")
    if body is None:
        return b""
    if response.get("isBase64Encoded"):
        return _decoded(body)
    return body.encode() if isinstance(body, str) else body


@functools.lru_cache(maxsize=64)
def _decoded(body: str) -> bytes:
    """A base64 body as bytes, remembered: the seat map's gzip is one string per map version, shared by every
    request for it (chalicelib/prepared.py), so it is decoded once, not per request (a string keeps its hash,
    and the same object compares equal at once)."""
    return base64.b64decode(body)


class _PerThread:
    """A data descriptor whose value is per thread: set on the app's class for the attributes Chalice writes
    on the app object for each request."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else getattr(self._local, "value", None)

    def __set__(self, obj: Any, value: Any) -> None:
        self._local.value = value


def per_thread_request_state(app: Any) -> Any:
    """Chalice keeps the request being handled on the app object (`app.current_request`, `lambda_context`):
    right on Lambda, one request per process at a time, wrong behind granian's blocking threads, where a view
    would read another thread's request (its body, headers, user). `make bench` caught it: bookings made with
    another request's body, and `400 a JSON request body is required` for a POST that had one. The app's
    class is swapped for a subclass whose two attributes are per thread; nothing else changes."""
    if not isinstance(type(app).__dict__.get("current_request"), _PerThread):
        app.__class__ = type(
            type(app).__name__,
            (type(app),),
            {"current_request": _PerThread(), "lambda_context": _PerThread()},
        )
    return app


# The peer address of the request a thread is handling: what API Gateway gives the app as sourceIp (Chalice's
# LocalGateway writes 127.0.0.1 for every request, so every client would share one rate-limit bucket).
_peer = threading.local()


def with_peer_source_ip(gateway: Any) -> Any:
    """The gateway's events carry the TCP peer's address as `requestContext.identity.sourceIp`."""
    generate = getattr(gateway, "_generate_lambda_event", None)
    if generate is None:  # a stand-in gateway of the tests
        return gateway

    def generate_with_peer(*args: Any, **kwargs: Any) -> dict:
        event = generate(*args, **kwargs)
        address = getattr(_peer, "address", None)
        if address:
            event["requestContext"]["identity"]["sourceIp"] = address
        return event

    gateway._generate_lambda_event = generate_with_peer
    return gateway


# How Chalice's LocalGateway (like API Gateway) answers an unknown route: 403 "Missing Authentication Token",
# or, when the request carries an Authorization header (every signed-in client does), a SigV4 complaint that
# echoes the header back. Both are the contract's 404, and the caller's token is not sent back.
UNKNOWN_ROUTE_MARKERS = (b"Missing Authentication Token", b"Authorization header requires")


class ChaliceWsgiAdapter:
    def __init__(self, gateway: Any, max_body_bytes: int) -> None:
        self._gateway = with_peer_source_ip(gateway)
        self._max_body = max_body_bytes

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        from chalice.local import ForbiddenError, LocalGatewayException

        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > self._max_body:
            # Refused before reading: a 1 GB body must not cost 1 GB of memory.
            return self._too_large(start_response)
        # Without a Content-Length (Transfer-Encoding: chunked) the body used to be dropped: read at most one
        # byte past the limit, so a chunked body is neither lost nor unbounded.
        body = environ["wsgi.input"].read(length or self._max_body + 1) or None
        if body is not None and len(body) > self._max_body:
            return self._too_large(start_response)
        query = environ.get("QUERY_STRING")
        _peer.address = environ.get("REMOTE_ADDR")
        try:
            response = self._gateway.handle_request(
                method=method,
                path=f"{path}?{query}" if query else path,
                headers=_request_headers(environ),
                body=body,
            )
        except ForbiddenError as exc:
            if any(marker in (exc.body or b"") for marker in UNKNOWN_ROUTE_MARKERS):
                # API Gateway's answer to an unknown route; the contract's is a 404.
                return _json_error(start_response, 404, "NOT_FOUND", f"no route for {method} {path}")
            return self._raw(start_response, exc.CODE, exc.headers, exc.body)
        except UnicodeEncodeError:
            # Chalice's unknown-route answer to a request with an Authorization header echoes that header,
            # encoded as ASCII: a non-ASCII one raises instead. Still no route.
            return _json_error(start_response, 404, "NOT_FOUND", f"no route for {method} {path}")
        except LocalGatewayException as exc:
            return self._raw(start_response, exc.CODE, exc.headers, exc.body)
        payload = _response_body(response)
        headers = _response_headers(response)
        headers.append(("Content-Length", str(len(payload))))
        start_response(_status_line(int(response["statusCode"])), headers)
        return [payload]

    def _too_large(self, start_response: StartResponse) -> list[bytes]:
        message = f"bodies are limited to {self._max_body} bytes"
        return _json_error(start_response, 413, "PAYLOAD_TOO_LARGE", message)

    @staticmethod
    def _raw(start_response: StartResponse, code: int, headers: dict, body: bytes | None) -> list[bytes]:
        payload = body or b""
        start_response(_status_line(code), [*headers.items(), ("Content-Length", str(len(payload)))])
        return [payload]


def create_wsgi_app(
    app_module_name: str = "app", stage: str = "local", project_dir: str | Path | None = None
):
    from chalice.cli.factory import CLIFactory
    from chalice.local import LocalGateway

    project = Path(project_dir or PROJECT_DIR)
    apply_stage_environment(stage, project)  # before the import: settings are read once, at import
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    module = importlib.import_module(app_module_name)
    # Imported only now: chalicelib reads its settings once, at import, after the stage's environment.
    from chalicelib.domain.validation import MAX_BODY_BYTES

    config = CLIFactory(str(project), environ=os.environ).create_config_obj(chalice_stage_name=stage)
    # The app's own limit, enforced here before the body is read (API Gateway itself caps it at 10 MB).
    return ChaliceWsgiAdapter(LocalGateway(per_thread_request_state(module.app), config), MAX_BODY_BYTES)


_application = None


def application(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    """granian's target ("infra.local.wsgi:application"): builds the app once per worker process."""
    global _application
    if _application is None:
        _application = create_wsgi_app(
            os.environ.get("CHALICE_APP_MODULE", "app"),
            os.environ.get("CHALICE_STAGE", "local"),
            os.environ.get("PROJECT_DIR") or PROJECT_DIR,
        )
    return _application(environ, start_response)


def serve(
    host: str, port: int, workers: int, threads: int, stage: str, backpressure: int | None = None
) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    os.environ["CHALICE_STAGE"] = stage
    Granian(
        target="infra.local.wsgi:application",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        # Handlers block on MySQL/Redis/SQS round trips; enough threads per worker keep the CPU busy while
        # some of them wait, and the blocking pools (DB_POOL_SIZE, REDIS_POOL_SIZE) bound what they hold.
        blocking_threads=threads,
        backlog=2048,
        # Connections each worker serves at once (granian's default: backlog / workers). An idle keep-alive
        # connection holds its place: the bench's crowd (2,000 viewers, each on a connection of its own, as
        # browsers are) raises it so the booking burst's connections are admitted beside them.
        backpressure=backpressure,
    ).serve()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16, help="blocking threads per worker")
    parser.add_argument("--stage", default=os.environ.get("CHALICE_STAGE", "local"))
    parser.add_argument(
        "--backpressure", type=int, help="connections per worker at once (default: 2,048 / workers)"
    )
    args = parser.parse_args()
    serve(args.host, args.port, args.workers, args.threads, args.stage, args.backpressure)


if __name__ == "__main__":
    main()
