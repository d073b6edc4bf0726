"""The pool's policy: when a request uses, waits for or dials a connection, or fails at once."""

from __future__ import annotations

import pytest

from rocketmq_proto.connection.pool import Dial, Fail, PoolPolicy, ReconnectBackoff, Use, Wait
from rocketmq_proto.wire.errors import ConnectionClosedError

A = "10.0.0.1:10911"
B = "10.0.0.2:10911"


class Conn:
    """A driver's connection object: the policy compares it by identity only."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Conn {self.name}>"


def fail_message(decision: object) -> str:
    assert isinstance(decision, Fail), decision
    assert isinstance(decision.error, ConnectionClosedError)
    return str(decision.error)


def test_the_first_need_dials_concurrent_needs_wait_and_then_use_the_connection() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy()
    assert pool.on_need(A, 0.0) == Dial()
    assert pool.on_need(A, 0.0) == Dial()  # nothing changes until the driver dials
    conn = Conn("a")
    pool.on_dial(A, conn)
    for now in (0.0, 0.5, 2.0):  # however long the dial takes
        decision = pool.on_need(A, now)
        assert isinstance(decision, Wait) and decision.conn is conn
    assert pool.conns == {A: conn} and pool.open == {}
    assert pool.on_need(B, 0.0) == Dial()  # another address is another matter
    assert pool.on_connected(A, conn)
    decision = pool.on_need(A, 3.0)
    assert isinstance(decision, Use) and decision.conn is conn
    assert pool.open == {A: conn}


def test_a_closed_connection_is_dialled_again_at_once_without_backing_off() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy()
    conn = Conn("a")
    pool.on_dial(A, conn)
    pool.on_connected(A, conn)
    assert pool.on_closed(A, conn)
    assert pool.conns == {} and pool.open == {}
    assert pool.on_need(A, 0.0) == Dial()


def test_a_failed_connect_backs_off_and_fails_needs_with_the_error_until_it_expires() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy(ReconnectBackoff(initial=1.0, maximum=8.0))
    conn = Conn("a")
    pool.on_dial(A, conn)
    assert pool.on_connect_failed(A, conn, "[Errno 111] Connection refused", 10.0) == 1.0
    assert pool.conns == {}
    message = fail_message(pool.on_need(A, 10.25))
    assert message == (
        f"not connecting to {A}: backing off for 0.750s more after a failed connect "
        "([Errno 111] Connection refused)"
    )
    # A fresh error per failure: one instance raised in many callers would share a traceback.
    one, two = pool.on_need(A, 10.5), pool.on_need(A, 10.5)
    assert isinstance(one, Fail) and isinstance(two, Fail) and one.error is not two.error
    fail_message(pool.on_need(A, 10.999))
    assert pool.on_need(B, 10.5) == Dial()  # only the address that failed backs off
    assert pool.on_need(A, 11.0) == Dial()  # the memory of the error has expired


def test_backoff_doubles_per_failure_up_to_its_maximum_and_a_connect_resets_it() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy(ReconnectBackoff(initial=0.1, maximum=0.5))
    now = 0.0
    delays = []
    for attempt in range(5):
        assert pool.on_need(A, now) == Dial()
        conn = Conn(f"a{attempt}")
        pool.on_dial(A, conn)
        delay = pool.on_connect_failed(A, conn, "refused", now)
        assert delay is not None
        delays.append(delay)
        now += delay
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    conn = Conn("up")
    pool.on_dial(A, conn)
    assert pool.on_connected(A, conn)
    pool.on_closed(A, conn)
    conn = Conn("again")
    pool.on_dial(A, conn)
    assert pool.on_connect_failed(A, conn, "refused", now) == pytest.approx(0.1)


def test_the_remembered_error_is_the_last_one_and_a_connect_forgets_it() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy(ReconnectBackoff(initial=1.0))
    first, second = Conn("1"), Conn("2")
    pool.on_dial(A, first)
    pool.on_connect_failed(A, first, "timed out", 0.0)
    pool.on_dial(A, second)
    pool.on_connect_failed(A, second, "refused", 1.0)
    assert fail_message(pool.on_need(A, 1.5)).endswith("(refused)")
    # A connect succeeds while an error is remembered: the memory and the back-off go.
    third = Conn("3")
    pool.on_dial(A, third)
    pool.on_connected(A, third)
    pool.on_closed(A, third)
    assert pool.on_need(A, 3.0) == Dial()
    fourth = Conn("4")
    pool.on_dial(A, fourth)
    pool.on_connect_failed(A, fourth, "reset", 3.0)
    assert fail_message(pool.on_need(A, 3.5)).endswith("(reset)")


def test_a_backoff_the_client_was_given_already_failing_names_no_error() -> None:
    backoff = ReconnectBackoff(initial=1.0)
    backoff.failed(A, 0.0)
    pool: PoolPolicy[Conn] = PoolPolicy(backoff)
    assert fail_message(pool.on_need(A, 0.5)).endswith("(unknown error)")


def test_reports_about_a_connection_the_address_no_longer_uses_change_nothing() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy()
    old = Conn("old")
    pool.on_dial(A, old)
    pool.on_closed(A, old)  # e.g. it closed while dialling
    new = Conn("new")
    pool.on_dial(A, new)
    # The old connection's late reports: no back-off, no replacing the new one.
    assert pool.on_connect_failed(A, old, "refused", 0.0) is None
    assert not pool.on_closed(A, old)
    assert not pool.on_connected(A, old)
    decision = pool.on_need(A, 0.0)
    assert isinstance(decision, Wait) and decision.conn is new
    assert pool.on_connected(A, new)
    assert not pool.on_closed(A, old)
    decision = pool.on_need(A, 0.0)
    assert isinstance(decision, Use) and decision.conn is new


def test_a_late_connect_still_resets_the_backoff_of_a_reachable_address() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy(ReconnectBackoff(initial=1.0))
    failed = Conn("failed")
    pool.on_dial(A, failed)
    pool.on_connect_failed(A, failed, "refused", 0.0)
    late = Conn("late")  # its close was reported before its connect (the peer hung up)
    pool.on_dial(A, late)
    pool.on_closed(A, late)
    assert not pool.on_connected(A, late)
    assert pool.on_need(A, 0.5) == Dial()  # the address answered: no back-off left


def test_forgetting_drops_connections_and_ignores_their_reports() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy()
    a, b = Conn("a"), Conn("b")
    pool.on_dial(A, a)
    pool.on_connected(A, a)
    pool.on_dial(B, b)
    assert pool.forget(A) is a
    assert pool.forget(A) is None
    assert pool.open == {} and pool.conns == {B: b}
    assert not pool.on_closed(A, a)
    pool.on_dial(A, a2 := Conn("a2"))
    assert pool.forget_all() == [b, a2]
    assert pool.conns == {} and pool.open == {}
    # A dial forgotten by a closing client fails without making the address back off.
    assert pool.on_connect_failed(B, b, "refused", 0.0) is None
    assert pool.on_need(B, 0.0) == Dial()


def test_the_views_of_the_connections_follow_the_policy() -> None:
    pool: PoolPolicy[Conn] = PoolPolicy()
    conns, open_ = pool.conns, pool.open  # a driver keeps the views, not copies
    conn = Conn("a")
    pool.on_dial(A, conn)
    assert conns == {A: conn} and open_ == {}
    pool.on_connected(A, conn)
    assert open_ == {A: conn}
    pool.on_closed(A, conn)
    assert conns == {} and open_ == {}
