"""Rate limits on booking writes (docs/api.md#rate-limits), across two server processes sharing one Redis:
a user's bucket and a client address's bucket are each one bucket wherever the requests land.

The servers run with a refill period of an hour, so no token comes back while a test runs: "exactly N pass"
is then a property of the buckets, not of how fast this machine sends. Each test speaks from a loopback
address of its own (127.0.0.x), so the address buckets of two tests are two buckets.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.support.app_stack import serving
from tests.support.http import conforms, create_performance, error_code, signed_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
USER_LIMIT, ADDRESS_LIMIT, WINDOW = 20, 60, 3600
BOOK = "/performances/{performance_id}/bookings"


@pytest.fixture(scope="module")
def two_servers(services) -> Iterator[tuple[str, str]]:
    environment = {
        **os.environ,
        "USER_RATE_LIMIT": str(USER_LIMIT),
        "USER_RATE_WINDOW_SECONDS": str(WINDOW),
        "ADDRESS_RATE_LIMIT": str(ADDRESS_LIMIT),
        "ADDRESS_RATE_WINDOW_SECONDS": str(WINDOW),
    }
    with serving(environment, workers=1) as first, serving(environment, workers=1) as second:
        yield first, second


def client(base_url: str, address: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=10, transport=httpx.HTTPTransport(local_address=address))


def test_one_users_bucket_is_shared_by_both_servers_and_refuses_with_retry_after(two_servers) -> None:
    first, second = (client(url, "127.0.0.21") for url in two_servers)
    performance = create_performance(first, strategy="db_lock", rows=1, seats_per_row=5)
    seat, path = performance["sections"][0]["first_seat_id"], BOOK.format(**performance)
    ann = signed_in(first, "rl-ann")
    # Every request is a booking write (the first books, the rest are refused the taken seat): each takes a
    # token, alternately from the two servers.
    answers = [
        server.post(path, json={"seat_ids": [seat]}, headers=ann)
        for server in itertools.islice(itertools.cycle((first, second)), USER_LIMIT + 4)
    ]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:USER_LIMIT] == [201] + [409] * (USER_LIMIT - 1), statuses
    assert statuses[USER_LIMIT:] == [429] * 4, statuses
    refused = answers[-1]
    assert error_code(refused, BOOK, "post") == "RATE_LIMITED"
    assert conforms(refused, BOOK, "post")["error"]["limit"] == "user"
    # One token per WINDOW / USER_LIMIT = 180 s comes back; the header is whole seconds.
    assert 0 < int(refused.headers["Retry-After"]) <= WINDOW // USER_LIMIT
    cancel = second.delete(f"/bookings/{answers[0].json()['booking_id']}", headers=ann)
    assert cancel.status_code == 429, "a cancel is a booking write too"
    assert first.get(f"/bookings/{answers[0].json()['booking_id']}", headers=ann).status_code == 200, (
        "reading is not limited"
    )
    other = first.post(path, json={"seat_ids": [seat + 1]}, headers=signed_in(first, "rl-bob"))
    assert other.status_code == 201, "another user has a bucket of their own"


def test_a_burst_on_both_servers_at_once_gets_exactly_the_buckets_tokens(two_servers) -> None:
    clients = [client(url, "127.0.0.22") for url in two_servers]
    performance = create_performance(clients[0], strategy="db_lock", rows=1, seats_per_row=5)
    path = BOOK.format(**performance)
    carol = signed_in(clients[0], "rl-carol")
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(2 * USER_LIMIT)

    def send(index: int) -> None:
        start.wait()
        # An unknown seat: refused 404 after the token is taken, and nothing is booked.
        answer = clients[index % 2].post(path, json={"seat_ids": [10**15 + index]}, headers=carol)
        with lock:
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2 * USER_LIMIT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [404] * USER_LIMIT + [429] * USER_LIMIT


def test_one_addresss_bucket_counts_every_user_behind_it(two_servers) -> None:
    first, second = (client(url, "127.0.0.23") for url in two_servers)
    elsewhere = client(two_servers[0], "127.0.0.24")
    performance = create_performance(first, strategy="db_lock", rows=1, seats_per_row=5)
    path = BOOK.format(**performance)
    unknown_seat = {"seat_ids": [10**15]}
    statuses = [
        (first, second)[i % 2]
        .post(path, json=unknown_seat, headers=signed_in(first, f"rl-crowd-{i}"))
        .status_code
        for i in range(ADDRESS_LIMIT + 1)
    ]
    assert statuses == [404] * ADDRESS_LIMIT + [429], statuses
    refused = first.post(path, json=unknown_seat, headers=signed_in(first, "rl-crowd-new"))
    assert conforms(refused, BOOK, "post")["error"]["limit"] == "address"
    assert (
        elsewhere.post(path, json=unknown_seat, headers=signed_in(first, "rl-crowd-new")).status_code == 404
    )
