"""The local serving mode runs the Chalice app on many threads (granian's blocking threads); Chalice keeps the
request being handled on the app object, so without infra/local/wsgi.py's per-thread request state a view can
read another thread's request. `make bench` found bookings made with another request's body that way."""

from __future__ import annotations

import io
import json
import threading
import time

from chalice import Chalice
from chalice.config import Config
from chalice.local import LocalGateway

from infra.local.wsgi import ChaliceWsgiAdapter, per_thread_request_state


def _echo_app() -> Chalice:
    app = Chalice(app_name="echo")

    @app.route("/echo", methods=["POST"])
    def echo() -> dict:
        first = app.current_request.json_body
        time.sleep(0.005)  # long enough for other threads to start their own requests meanwhile
        return {"first": first, "again": app.current_request.json_body}

    return app


def _post(adapter: ChaliceWsgiAdapter, body: dict) -> dict:
    raw = json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/echo",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    answer = adapter(environ, lambda status, headers: None)
    return json.loads(b"".join(answer))


def test_each_thread_reads_its_own_request() -> None:
    adapter = ChaliceWsgiAdapter(LocalGateway(per_thread_request_state(_echo_app()), Config()), 10_000)
    answers: dict[int, list[dict]] = {}

    def client(number: int) -> None:
        answers[number] = [_post(adapter, {"n": number, "i": i}) for i in range(20)]

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for number, replies in answers.items():
        for i, reply in enumerate(replies):
            assert reply == {"first": {"n": number, "i": i}, "again": {"n": number, "i": i}}


def test_the_app_stays_a_chalice_app() -> None:
    app = per_thread_request_state(_echo_app())
    assert isinstance(app, Chalice)
    assert per_thread_request_state(app) is app  # idempotent: no second subclass
    assert type(app).__mro__[1] is Chalice
