"""The circuit breaker guarding Redis, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from chalicelib.adapters.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Down(Exception):
    pass


def fail() -> None:
    raise Down()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(
        "test",
        failure_threshold=3,
        reset_seconds=5,
        is_failure=lambda exc: isinstance(exc, Down),
        clock=clock,
    )


def test_opens_after_the_threshold_of_consecutive_failures_and_then_refuses_without_calling(clock) -> None:
    circuit = breaker(clock)
    for _ in range(3):
        with pytest.raises(Down):
            circuit.call(fail)
    assert circuit.state == OPEN
    calls = []
    with pytest.raises(CircuitOpen):
        circuit.call(lambda: calls.append(1))
    assert calls == [], "an open circuit does not even try"


def test_a_success_resets_the_count(clock) -> None:
    circuit = breaker(clock)
    for _ in range(2):
        with pytest.raises(Down):
            circuit.call(fail)
    assert circuit.call(lambda: "ok") == "ok"
    for _ in range(2):
        with pytest.raises(Down):
            circuit.call(fail)
    assert circuit.state == CLOSED


def test_errors_that_are_not_outages_do_not_count(clock) -> None:
    circuit = breaker(clock)
    for _ in range(10):
        with pytest.raises(KeyError):
            circuit.call(lambda: {}["missing"])
    assert circuit.state == CLOSED


def test_half_open_probes_and_recovers_before_anyone_is_let_through(clock) -> None:
    events: list[str] = []
    circuit = breaker(clock)
    inside, release = threading.Event(), threading.Event()

    def probe() -> None:
        events.append("probe")
        inside.set()
        assert release.wait(5)

    circuit.probe = probe
    circuit.on_recovered = lambda: events.append("rebuild")
    for _ in range(3):
        with pytest.raises(Down):
            circuit.call(fail)
    clock.now += 5
    assert circuit.state == HALF_OPEN
    result: list = []
    thread = threading.Thread(target=lambda: result.append(circuit.call(lambda: events.append("work"))))
    thread.start()
    assert inside.wait(5)
    with pytest.raises(CircuitOpen):
        circuit.call(lambda: "second caller")  # refused while the first one probes and rebuilds
    release.set()
    thread.join(5)
    assert events == ["probe", "rebuild", "work"], "trusted again only after the recovery work"
    assert circuit.state == CLOSED


def test_a_failed_probe_or_recovery_opens_the_circuit_again_for_a_full_period(clock) -> None:
    circuit = breaker(clock)
    for _ in range(3):
        with pytest.raises(Down):
            circuit.call(fail)
    clock.now += 5
    circuit.on_recovered = fail
    calls: list = []
    with pytest.raises(CircuitOpen):
        circuit.call(lambda: calls.append(1))
    assert calls == [] and circuit.state == OPEN
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        circuit.call(lambda: "too early")
    clock.now += 0.1
    circuit.on_recovered = lambda: None
    assert circuit.call(lambda: "ok") == "ok" and circuit.state == CLOSED


def test_calls_run_concurrently_while_closed(clock) -> None:
    circuit = breaker(clock)
    together = threading.Barrier(8, timeout=5)
    threads = [threading.Thread(target=circuit.call, args=(together.wait,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not together.broken, "eight calls were inside the breaker at the same time"
