"""The catalogue's Bloom filter on real MariaDB and Redis: unknown event, performance and seat ids are
answered 404 without MySQL (bar the filter's false positives), known ids are always found, a new event is
known to every process before its 201, and a filter that is missing or unreachable fails open."""

from __future__ import annotations

import multiprocessing
import random
import socket
import threading
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chalicelib.adapters.bloom import RedisBloomFilter, filter_size
from chalicelib.adapters.fill_lock import RedisFillLock
from chalicelib.adapters.mysql import CatalogueRepository
from chalicelib.bootstrap import build
from chalicelib.config import Settings
from chalicelib.domain.errors import NotFound, ServiceUnavailable
from chalicelib.services.catalogue import CatalogueService
from tests.support.factories import event_body

pytestmark = pytest.mark.timeout(180)
LOOKUPS = 10_000


def app_filter(client: redis.Redis, settings: Settings, key_prefix: str | None = None) -> RedisBloomFilter:
    """The filter as the app sizes it (with the app's key prefix: the very filter the app uses)."""
    return RedisBloomFilter(
        client,
        settings.redis_key_prefix if key_prefix is None else key_prefix,
        settings.bloom_expected_ids,
        settings.bloom_false_positive_rate,
    )


@pytest.fixture()
def catalogue_filter(services, redis_client) -> RedisBloomFilter:
    return app_filter(redis_client, services.settings)


@pytest.fixture()
def mysql_calls(monkeypatch) -> dict[str, int]:
    """How often each catalogue lookup reached MySQL (the repository's methods, counted)."""
    calls = {"get_event": 0, "get_performance": 0, "existing_seat_ids": 0, "performance_ids": 0}
    for name in calls:
        original = getattr(CatalogueRepository, name)

        def counted(self, *args, _name=name, _original=original):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(CatalogueRepository, name, counted)
    return calls


def catalogue_ids(sql) -> tuple[set[int], set[int], set[int]]:
    events = {row[0] for row in sql("SELECT event_id FROM events")}
    performances = {row[0] for row in sql("SELECT performance_id FROM performances")}
    seats = {row[0] for row in sql("SELECT seat_id FROM seats")}
    return events, performances, seats


def unknown_ids(count: int, known: set[int], rng: random.Random) -> list[int]:
    ids: set[int] = set()
    while len(ids) < count:
        candidate = rng.randrange(1, 2**31)
        if candidate not in known:
            ids.add(candidate)
    return sorted(ids)


def test_the_filter_is_sized_from_the_expected_count_and_false_positive_rate() -> None:
    assert filter_size(1_000_000, 0.01) == (9_585_059, 7)
    assert filter_size(2_000_000, 0.001) == (28_755_176, 10)
    with pytest.raises(ValueError):
        filter_size(1_000, 1.5)


def test_a_filter_at_its_expected_count_keeps_its_false_positive_rate(redis_client, settings) -> None:
    expected_items, rate = 5_000, 0.01
    bloom = RedisBloomFilter(redis_client, f"{settings.redis_key_prefix}:fp-test", expected_items, rate)
    try:
        bloom.add(("seat", seat) for seat in range(1, expected_items + 1))
        bloom.mark_built()
        assert bloom.absent("seat", list(range(1, expected_items + 1))) == set(), "no false negative"
        probes = list(range(10_000_000, 10_000_000 + 4 * LOOKUPS))
        false_positives = len(probes) - len(bloom.absent("seat", probes))
    finally:
        redis_client.delete(bloom.key)
    measured = false_positives / len(probes)
    print(f"\n{bloom.bits} bits, k={bloom.hashes}, {expected_items} ids: {measured:.2%} false positives")
    assert measured <= 1.5 * rate


def test_unknown_ids_rarely_reach_mysql_and_every_known_id_is_found(
    services, new_performance, sql, catalogue_filter, mysql_calls, redis_client
) -> None:
    for strategy in ("redis_async", "db_lock", "redis_lock"):
        new_performance(strategy=strategy, sections=2)
    # A filter of this run's own, built now: the LocalStack e2e servers of this session write events into the
    # same database under another Redis prefix (another deployment's filter), which this one cannot know of.
    # One Redis prefix per database is the supported set-up (docs/seat-map.md, "Caching and lookups").
    redis_client.delete(catalogue_filter.key)
    services.catalogue.build_id_filter()  # normally at start (make run) or on first use
    assert catalogue_filter.is_built()
    events, performances, seats = catalogue_ids(sql)
    rng = random.Random(5)
    an_existing = services.catalogue.performance(max(performances))

    for performance_id in unknown_ids(LOOKUPS, performances, rng):
        with pytest.raises(NotFound):
            services.catalogue.performance(performance_id)
    unknown_seats = unknown_ids(LOOKUPS, seats, rng)
    for start in range(0, LOOKUPS, 4):  # the booking path, four seats of another performance at a time
        with pytest.raises(NotFound):
            services.booking_service.book(
                an_existing.performance_id,
                {"user_id": "eve", "seat_ids": unknown_seats[start : start + 4]},
                None,
            )
    for event_id in unknown_ids(LOOKUPS // 10, events, rng):
        with pytest.raises(NotFound):
            services.catalogue.get_event(event_id)

    print(f"\nlookups of unknown ids that reached MySQL: {mysql_calls}")
    assert mysql_calls["get_performance"] <= LOOKUPS // 100
    assert mysql_calls["existing_seat_ids"] <= LOOKUPS // 4 // 100
    assert mysql_calls["get_event"] <= LOOKUPS // 10 // 100

    # Every id MySQL has passes the filter (no false negative), and the service finds it.
    assert catalogue_filter.absent("event", sorted(events)) == set()
    assert catalogue_filter.absent("performance", sorted(performances)) == set()
    assert catalogue_filter.absent("seat", sorted(seats)) == set()
    fresh = build(services.settings)  # another container: nothing cached in-process
    for performance_id in sorted(performances)[-20:]:
        assert fresh.catalogue.performance(performance_id).performance_id == performance_id
    for event_id in sorted(events)[-20:]:
        assert fresh.catalogue.get_event(event_id).event_id == event_id
    some_seats = sorted(seats)[-200:]
    assert fresh.catalogue.existing_seat_ids(some_seats) == set(some_seats)


def _absent_in_another_process(kinds_and_ids: list[tuple[str, list[int]]], answers) -> None:
    settings = Settings.from_env()
    services = build(settings)
    bloom = app_filter(services.redis, settings)
    found = []
    for kind, ids in kinds_and_ids:
        found.append(sorted(bloom.absent(kind, ids) or []))
    performance_id = kinds_and_ids[1][1][0]
    found.append(services.catalogue.performance(performance_id).performance_id)
    answers.put(found)


def test_a_new_event_is_in_the_filter_before_it_commits_and_known_to_another_process(
    services, sql, catalogue_filter, monkeypatch
) -> None:
    services.catalogue.build_id_filter()
    other = build(services.settings)  # another container, its filter already consulted once
    with pytest.raises(NotFound):
        other.catalogue.performance(2**31 - 1)
    visible_when_added: list[list] = []
    add = RedisBloomFilter.add

    def add_and_look(self, items):
        items = list(items)
        event_id = next(item_id for kind, item_id in items if kind == "event")
        visible_when_added.append(sql("SELECT event_id FROM events WHERE event_id = %s", event_id))
        add(self, items)

    monkeypatch.setattr(RedisBloomFilter, "add", add_and_look)

    event = services.catalogue.create_event(event_body(sections=2))

    assert visible_when_added == [[]], "the filter knew the ids before MySQL showed them to anyone"
    performance = event["performances"][0]
    seat_ids = [
        seat
        for section in performance["sections"]
        for seat in range(section["first_seat_id"], section["last_seat_id"] + 1)
    ]
    assert other.catalogue.get_event(event["event_id"]).event_id == event["event_id"]
    performance_id = performance["performance_id"]
    assert other.catalogue.performance(performance_id).performance_id == performance_id
    assert other.catalogue.existing_seat_ids(seat_ids) == set(seat_ids)

    spawn = multiprocessing.get_context("spawn")
    answers = spawn.Queue()
    process = spawn.Process(
        target=_absent_in_another_process,
        args=(
            [("event", [event["event_id"]]), ("performance", [performance_id]), ("seat", seat_ids)],
            answers,
        ),
    )
    process.start()
    found = answers.get(timeout=90)
    process.join(timeout=30)
    assert found == [[], [], [], performance_id], "mmh3 hashes alike in every process"


def test_an_event_whose_ids_the_filter_cannot_take_is_not_created(services, sql) -> None:
    class UnreachableFilter:
        def add(self, items) -> None:
            raise ServiceUnavailable("the catalogue filter (Redis) is unavailable")

    catalogue = CatalogueService(
        CatalogueRepository(services.db),
        "redis_async",
        services.idempotency,
        available_strategies=frozenset(services.strategies),
        known_ids=UnreachableFilter(),
        fill_lock=RedisFillLock(services.redis, services.settings.redis_key_prefix),
    )
    body = event_body()
    with pytest.raises(ServiceUnavailable):
        catalogue.create_event(body)
    assert sql("SELECT COUNT(*) FROM events WHERE name = %s", body["name"]) == [(0,)], "rolled back"


def test_a_missing_filter_fails_open_and_one_caller_rebuilds_it(
    services, new_performance, redis_client, catalogue_filter, mysql_calls
) -> None:
    performance_id = new_performance()["performance_id"]
    redis_client.delete(catalogue_filter.key)  # a new Redis, or the key was lost
    fresh = build(services.settings)
    readers = 20
    barrier = threading.Barrier(readers)
    errors: list[BaseException] = []

    def lookup() -> None:
        barrier.wait()
        try:
            assert fresh.catalogue.performance(performance_id).performance_id == performance_id
        except BaseException as exc:
            errors.append(exc)

    run_all([lookup] * readers)

    assert errors == []
    assert mysql_calls["performance_ids"] == 1, "one caller across all of them built the filter"
    assert catalogue_filter.is_built()
    calls_before = mysql_calls["get_performance"]
    with pytest.raises(NotFound):
        fresh.catalogue.performance(2**31 - 2)
    assert mysql_calls["get_performance"] == calls_before, "built again: unknown ids stay away from MySQL"


def test_an_unreachable_filter_fails_open(services, new_performance, mysql_calls) -> None:
    performance_id = new_performance()["performance_id"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = redis.Redis(port=dead_port, decode_responses=True, retry=Retry(NoBackoff(), 0))
    catalogue = CatalogueService(
        CatalogueRepository(services.db),
        "redis_async",
        services.idempotency,
        available_strategies=frozenset(services.strategies),
        known_ids=app_filter(dead, services.settings, key_prefix="dead"),
        fill_lock=RedisFillLock(dead, "dead"),
    )

    assert catalogue.performance(performance_id).performance_id == performance_id, "never refuses a known id"
    with pytest.raises(NotFound):
        catalogue.performance(2**31 - 3)
    assert mysql_calls["get_performance"] == 2, "both lookups were answered by MySQL"


def run_all(work: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=w) for w in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
