"""Retries against the real node, with faults injected between client and node.

The property that matters: an answer lost after the node acted (an
indeterminate outcome) is resent with the same idempotency key, so the
node ends up with exactly one task; and what cannot be resent safely is
reported as IndeterminateError, never as a plain failure.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from conftest import FAST_RETRY, Node
from faults import AsyncFaultTransport, Fault, FaultTransport, is_submit, route

from synod_client import (
    AsyncClient,
    Client,
    ConnectionFailedError,
    IndeterminateError,
    ResourceExhaustedError,
    RetryPolicy,
    UnauthenticatedError,
    UnavailableError,
)


def tasks_with_marker(client: Client, marker: str) -> list:
    """The tenant's echo tasks whose payload carries ``marker``."""
    return [t for t in client.iter_tasks(type="echo", payloads=True) if (t.payload or {}).get("marker") == marker]


def test_a_lost_submit_answer_is_resent_with_the_same_key_and_makes_one_task(node: Node, client: Client) -> None:
    marker = uuid.uuid4().hex
    transport = FaultTransport([Fault("drop_response", is_submit)])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        sub = flaky.submit("echo", {"marker": marker})

    sent = transport.requests("POST", "/tasks/submit")
    assert [s.fault for s in sent] == ["drop_response", None], "one lost answer, then one resend"
    keys = {s.headers["idempotency-key"] for s in sent} | {s.json()["idempotency_key"] for s in sent}
    assert keys == {sub.idempotency_key}, f"every attempt carries the one generated key: {keys}"
    assert sub.duplicate, "the resend found the task the first attempt made"
    found = tasks_with_marker(client, marker)
    assert [t.id for t in found] == [sub.id], f"exactly one task: {found}"
    assert client.wait(sub.id, timeout=30).result == {"marker": marker}


def test_control_two_submits_with_different_keys_make_two_tasks(node: Node, client: Client) -> None:
    """Without a key-preserving resend the same request makes two tasks, so
    the test above can fail."""
    marker = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {client.token}"}
    with httpx.Client(base_url=node.url, headers=headers) as raw:
        for key in ("control-a-" + marker, "control-b-" + marker):
            r = raw.post("/tasks/submit", json={"type": "echo", "payload": {"marker": marker}, "idempotency_key": key})
            assert r.status_code == 200, r.text
            assert r.json()["duplicate"] is False
    assert len(tasks_with_marker(client, marker)) == 2


@pytest.mark.anyio
async def test_async_a_lost_submit_answer_is_resent_with_the_same_key(node: Node, client: Client) -> None:
    marker = uuid.uuid4().hex
    transport = AsyncFaultTransport([Fault("drop_response", is_submit)])
    async with AsyncClient(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        sub = await flaky.submit("echo", {"marker": marker}, idempotency_key="caller-key-" + marker)
    sent = transport.requests("POST", "/tasks/submit")
    assert [s.fault for s in sent] == ["drop_response", None]
    assert {s.headers["idempotency-key"] for s in sent} == {"caller-key-" + marker}, "the caller's key, kept"
    assert sub.duplicate
    assert [t.id for t in tasks_with_marker(client, marker)] == [sub.id]


def test_a_lost_batch_answer_is_resent_with_the_same_keys(node: Node, client: Client) -> None:
    marker = uuid.uuid4().hex
    transport = FaultTransport([Fault("drop_response", is_submit)])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        subs = flaky.submit_batch([{"type": "echo", "payload": {"marker": marker, "i": i}} for i in range(3)])
    assert all(s.duplicate for s in subs)
    first, second = (s.json()["tasks"] for s in transport.requests("POST", "/tasks/submit"))
    assert [t["idempotency_key"] for t in first] == [t["idempotency_key"] for t in second]
    assert sorted(t.id for t in tasks_with_marker(client, marker)) == sorted(s.id for s in subs)


def test_an_outcome_unknown_after_the_last_attempt_is_indeterminate_and_the_key_resolves_it(
    node: Node, client: Client
) -> None:
    marker = uuid.uuid4().hex
    transport = FaultTransport([Fault("drop_response", is_submit, times=3)])
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01)
    with Client(node.url, token=client.token, transport=transport, retry=policy) as flaky:
        with pytest.raises(IndeterminateError) as info:
            flaky.submit("echo", {"marker": marker})
    err = info.value
    assert err.code == "indeterminate" and err.operation == "submit" and err.idempotency_key
    assert err.idempotency_keys == [err.idempotency_key]
    assert len(transport.requests("POST", "/tasks/submit")) == 3
    assert len(tasks_with_marker(client, marker)) == 1, "three deliveries, one task"
    # The key in the error tells the caller what happened.
    again = client.submit("echo", {"marker": marker}, idempotency_key=err.idempotency_key)
    assert again.duplicate


def test_a_batch_whose_outcome_stays_unknown_reports_its_keys_and_they_resolve_it(node: Node, client: Client) -> None:
    marker = uuid.uuid4().hex
    tasks = [
        {"type": "echo", "payload": {"marker": marker, "i": 0}},
        {"type": "echo", "payload": {"marker": marker, "i": 1}, "idempotency_key": "own-" + marker},
        {"type": "echo", "payload": {"marker": marker, "i": 2}},
    ]
    transport = FaultTransport([Fault("drop_response", is_submit, times=3)])
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01)
    with Client(node.url, token=client.token, transport=transport, retry=policy) as flaky:
        with pytest.raises(IndeterminateError) as info:
            flaky.submit_batch(tasks)
    err = info.value
    sent = [[t["idempotency_key"] for t in s.json()["tasks"]] for s in transport.requests("POST", "/tasks/submit")]
    assert len(sent) == 3 and sent[0] == sent[1] == sent[2], "every attempt carries the same keys"
    assert err.operation == "submit_batch" and err.idempotency_key is None
    assert err.idempotency_keys == sent[0], "the keys sent, in the tasks' order"
    assert err.idempotency_keys[1] == "own-" + marker, "the caller's own key, kept in its place"
    assert len(tasks_with_marker(client, marker)) == 3, "three deliveries, one batch"
    # The keys in the error let the caller resubmit the batch and find its tasks.
    again = client.submit_batch([{**t, "idempotency_key": k} for t, k in zip(tasks, err.idempotency_keys)])
    assert all(s.duplicate for s in again)
    assert sorted(t.id for t in tasks_with_marker(client, marker)) == sorted(s.id for s in again)


def test_a_tls_failure_after_an_unknown_outcome_is_indeterminate_not_a_failure(node: Node, client: Client) -> None:
    """A failed TLS handshake sends nothing, but the attempt before it may
    have made the task: that is not "nothing was changed"."""
    marker = uuid.uuid4().hex
    transport = FaultTransport([Fault("drop_response", is_submit), Fault("refuse_tls", is_submit, times=10)])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        with pytest.raises(IndeterminateError) as info:
            flaky.submit("echo", {"marker": marker})
    assert [s.fault for s in transport.requests("POST", "/tasks/submit")] == ["drop_response", "refuse_tls"]
    assert not isinstance(info.value, UnavailableError)
    assert len(tasks_with_marker(client, marker)) == 1, "the first attempt did make the task"
    assert client.submit("echo", {"marker": marker}, idempotency_key=info.value.idempotency_key).duplicate


@pytest.mark.anyio
async def test_async_a_tls_failure_after_an_unknown_outcome_is_indeterminate(node: Node, client: Client) -> None:
    name = "tls-" + uuid.uuid4().hex[:8]
    client.create_collection(name, 2)
    points = route("POST", f"/collections/{name}/points")
    transport = AsyncFaultTransport([Fault("drop_response", points), Fault("refuse_tls", points, times=10)])
    async with AsyncClient(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        with pytest.raises(IndeterminateError):
            await flaky.upsert(name, [{"id": 1, "vector": [1.0, 2.0]}])
    assert client.get_collection(name).points == 1, "the first attempt did store the point"


def test_a_tls_error_reading_the_answer_is_an_unknown_outcome_and_is_resent(node: Node, client: Client) -> None:
    """A TLS error after the request went out is a lost answer, not "nothing
    was sent": an idempotent write is resent, and a read is retried."""
    marker = uuid.uuid4().hex
    transport = FaultTransport(
        [Fault("drop_response_tls", is_submit), Fault("drop_response_tls", route("GET", "/whoami"))]
    )
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        sub = flaky.submit("echo", {"marker": marker})
        assert flaky.whoami().subject == "admin"
    assert [s.fault for s in transport.requests("POST", "/tasks/submit")] == ["drop_response_tls", None]
    assert sub.duplicate, "the resend found the task the first attempt made"
    assert [t.id for t in tasks_with_marker(client, marker)] == [sub.id]
    assert [s.fault for s in transport.requests("GET", "/whoami")] == ["drop_response_tls", None]


def test_a_failed_login_in_the_middle_of_a_write_with_an_unknown_outcome_is_indeterminate(node: Node) -> None:
    marker = uuid.uuid4().hex
    transport = FaultTransport([])
    with Client(node.url, username="admin", password=node.password, transport=transport, retry=FAST_RETRY) as c:
        assert c.whoami().subject == "admin", "logged in"
        transport.faults += [
            Fault("drop_response", is_submit),  # attempt 1: may have made the task
            Fault("status", is_submit, status=401, code="unauthenticated"),  # attempt 2: log in again...
            Fault("refuse", route("POST", "/login"), times=10),  # ...which cannot reach the node
        ]
        with pytest.raises(IndeterminateError) as info:
            c.submit("echo", {"marker": marker})
        assert len(transport.requests("POST", "/login")) == 1 + FAST_RETRY.max_attempts
        again = c.submit("echo", {"marker": marker}, idempotency_key=info.value.idempotency_key)
    assert again.duplicate, "the first attempt had made the task"


def test_a_write_that_is_not_idempotent_is_not_resent_after_an_unknown_outcome(node: Node, client: Client) -> None:
    name = "unsafe-" + uuid.uuid4().hex[:8]
    transport = FaultTransport([Fault("drop_response", route("POST", "/apikeys"))])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        with pytest.raises(IndeterminateError) as info:
            flaky.create_api_key(name=name)
    assert "not resent" in info.value.message
    assert len(transport.requests("POST", "/apikeys")) == 1, "sent once"
    assert [k.name for k in client.api_keys()].count(name) == 1, "the one attempt did create it"


def test_an_unsafe_write_is_resent_when_nothing_was_sent(node: Node, client: Client) -> None:
    name = "refused-" + uuid.uuid4().hex[:8]
    transport = FaultTransport([Fault("refuse", route("POST", "/apikeys"))])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        key = flaky.create_api_key(name=name)
    assert key.key and key.key.startswith("sk_")
    assert [k.name for k in client.api_keys()].count(name) == 1


def test_503_and_504_are_retried_and_a_later_success_returns(node: Node, client: Client) -> None:
    marker = uuid.uuid4().hex
    faults = [
        Fault("status", is_submit, status=503, code="unavailable"),
        Fault("status", is_submit, status=504, code="indeterminate"),
    ]
    transport = FaultTransport(faults)
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        sub = flaky.submit("echo", {"marker": marker})
    assert [s.fault for s in transport.requests("POST", "/tasks/submit")] == ["status", "status", None]
    assert not sub.duplicate, "the injected answers were never sent to the node"
    assert len(tasks_with_marker(client, marker)) == 1


def test_503_until_the_end_is_unavailable_not_indeterminate(node: Node, client: Client) -> None:
    transport = FaultTransport([Fault("status", is_submit, status=503, times=10)])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        with pytest.raises(UnavailableError) as info:
            flaky.submit("echo", {})
    assert not isinstance(info.value, IndeterminateError)
    assert info.value.status == 503 and info.value.message == "injected 503"


def test_429_retry_after_is_honoured(node: Node, client: Client) -> None:
    limited = Fault("status", is_submit, status=429, code="resource_exhausted", headers={"Retry-After": "1"})
    transport = FaultTransport([limited])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        started = time.monotonic()
        flaky.submit("echo", {})
        waited = time.monotonic() - started
    assert waited >= 1.0, f"resent after {waited:.2f}s, before Retry-After"
    # A Retry-After beyond the policy's limit is the caller's to handle.
    transport = FaultTransport(
        [Fault("status", is_submit, status=429, code="resource_exhausted", headers={"Retry-After": "120"})]
    )
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        with pytest.raises(ResourceExhaustedError) as info:
            flaky.submit("echo", {})
    assert info.value.retry_after == 120 and info.value.status == 429


def test_reads_are_retried_after_a_lost_answer(node: Node, client: Client) -> None:
    transport = FaultTransport([Fault("drop_response", route("GET", "/whoami"), times=2)])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        assert flaky.whoami().subject == "admin"
    assert len(transport.requests("GET", "/whoami")) == 3


def test_no_node_listening_is_a_connection_failure(node: Node) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with Client(f"http://127.0.0.1:{port}", token="x", retry=FAST_RETRY) as c:
            with pytest.raises(ConnectionFailedError):
                c.whoami()
            # Nothing was sent, so even a task submit is plainly unavailable.
            with pytest.raises(UnavailableError) as info:
                c.submit("echo", {})
            assert not isinstance(info.value, IndeterminateError)


def test_an_expired_or_refused_token_is_renewed_with_the_kept_password(node: Node) -> None:
    with Client(node.url, username="admin", password=node.password, retry=FAST_RETRY) as c:
        assert c.whoami().subject == "admin", "logs in on first use"
        first = c.token
        c._session.token = "not-a-token"  # refused by the node
        assert c.whoami().subject == "admin"
        assert c.token != first


@pytest.mark.parametrize("missing_ok", [False, True])
def test_delete_after_a_lost_answer_is_done_not_not_found(node: Node, client: Client, missing_ok: bool) -> None:
    name = "gone-" + uuid.uuid4().hex[:8]
    client.create_collection(name, 3)
    transport = FaultTransport([Fault("drop_response", route("DELETE", f"/collections/{name}"))])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        # The first attempt deleted it; the resend found it gone: this call did it.
        assert flaky.delete_collection(name, missing_ok=missing_ok) is True
        assert [s.fault for s in transport.requests("DELETE", f"/collections/{name}")] == ["drop_response", None]
        # Absent before the call could delete anything: not this call's doing.
        assert flaky.delete_collection(name, missing_ok=True) is False
    assert name not in [c.name for c in client.list_collections()]


def test_cancel_after_a_lost_answer_reports_the_cancelled_task(node: Node, client: Client) -> None:
    sub = client.submit("sleep", {"ms": 60000})
    transport = FaultTransport([Fault("drop_response", route("POST", f"/tasks/{sub.id}/cancel"))])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        t = flaky.cancel(sub.id)
    assert t.state == "cancelled" or t.cancel_requested
    assert client.wait(sub.id, timeout=30).state == "cancelled"


def test_an_upsert_resent_after_a_lost_answer_stores_each_point_once(node: Node, client: Client) -> None:
    name = "resent-" + uuid.uuid4().hex[:8]
    client.create_collection(name, 2)
    transport = FaultTransport([Fault("drop_response", route("POST", f"/collections/{name}/points"))])
    with Client(node.url, token=client.token, transport=transport, retry=FAST_RETRY) as flaky:
        out = flaky.upsert(name, [{"id": i, "vector": [1.0, float(i)]} for i in range(10)])
    assert out.points == 10 and len(transport.requests("POST", f"/collections/{name}/points")) == 2
    assert client.get_collection(name).points == 10


def test_a_refused_password_is_not_tried_again_and_again(node: Node) -> None:
    transport = FaultTransport([])
    with Client(node.url, username="admin", password="wrong", transport=transport, retry=FAST_RETRY) as c:
        for _ in range(3):
            with pytest.raises(UnauthenticatedError):
                c.whoami()
    assert len(transport.requests("POST", "/login")) == 1, "one failed login, not one per call"
