"""Tasks and identity through the sync client, against the real node."""

from __future__ import annotations

import uuid

import pytest
from conftest import FAST_RETRY, Node, unique

from synod_client import (
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    SynodError,
    TaskSpec,
    UnauthenticatedError,
    WaitTimeoutError,
)


def test_login_with_a_password(node: Node) -> None:
    with Client(node.url) as c:
        tok = c.login("admin", node.password)
        assert tok.token_type == "bearer" and tok.expires_in and tok.access_token
        me = c.whoami()
    assert (me.subject, me.tenant, me.role) == ("admin", "default", "admin")


def test_a_wrong_password_is_unauthenticated_with_the_servers_message(node: Node) -> None:
    with Client(node.url, retry=FAST_RETRY) as c:
        with pytest.raises(UnauthenticatedError) as info:
            c.login("admin", "not-the-password")
    e = info.value
    assert (e.status, e.code) == (401, "unauthenticated")
    assert e.message == "wrong user name or password"


def test_login_with_an_api_key(node: Node, client: Client) -> None:
    key = client.create_api_key(name=unique("py"), role="reader")
    assert key.key and key.role == "reader"
    with Client(node.url, api_key=key.key) as c:
        me = c.whoami()
        assert me.role == "reader" and me.tenant == "default"
        with pytest.raises(PermissionDeniedError) as info:
            c.submit("echo", {})
        assert info.value.status == 403 and info.value.code == "permission_denied"
    revoked = client.revoke_api_key(key.id)
    assert revoked.revoked_at_ms
    with Client(node.url, api_key=key.key) as c:
        with pytest.raises(UnauthenticatedError):
            c.whoami()


def test_submit_and_wait_for_a_vectorize_result(client: Client) -> None:
    sub = client.submit("vectorize", {"text": "hello world"})
    # "assigned" when a worker slot was free as it was submitted.
    assert sub.state in ("queued", "assigned") and not sub.duplicate and sub.idempotency_key
    res = client.wait(sub.id, timeout=60)
    assert res.finished and res.succeeded and res.error is None
    assert res.result["dimension"] == 384 and len(res.result["vector"]) == 384
    assert res.result["model"] == "all-MiniLM-L6-v2"
    st = client.status(sub.id)
    assert st.state == "succeeded" and st.type == "vectorize" and st.payload == {"text": "hello world"}
    assert st.attempts and st.attempts[0].ended_at_ms


def test_the_same_key_twice_is_one_task(client: Client) -> None:
    key = uuid.uuid4().hex
    a = client.submit("echo", {"n": 1}, idempotency_key=key, priority=7, labels={})
    b = client.submit("echo", {"n": 1}, idempotency_key=key)
    assert a.id == b.id and not a.duplicate and b.duplicate


def test_result_without_wait_answers_at_once_and_wait_times_out(client: Client) -> None:
    sub = client.submit("sleep", {"ms": 30000})
    early = client.result(sub.id)
    assert not early.finished and early.result is None
    with pytest.raises(WaitTimeoutError) as info:
        client.wait(sub.id, timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    client.cancel(sub.id)


def test_batch_submit(client: Client) -> None:
    marker = uuid.uuid4().hex
    subs = client.submit_batch(
        [
            {"type": "echo", "payload": {"m": marker, "i": 0}},
            TaskSpec("normalize", {"text": "  Héllo   WORLD "}, priority=9),
            {"type": "echo", "payload": {"m": marker, "i": 2}, "idempotency_key": "own-" + marker},
        ]
    )
    assert len(subs) == 3 and len({s.id for s in subs}) == 3
    assert subs[2].idempotency_key == "own-" + marker
    results = [client.wait(s.id, timeout=30) for s in subs]
    assert results[0].result == {"m": marker, "i": 0}
    assert results[1].result["text"] == "héllo world"
    # One invalid task refuses the whole batch.
    with pytest.raises(InvalidArgumentError) as info:
        client.submit_batch([{"type": "echo", "payload": {"m": marker}}, {"type": "no-such-type"}])
    assert "tasks[1]" in info.value.message


def test_list_and_iterate_tasks(client: Client) -> None:
    marker = uuid.uuid4().hex
    subs = client.submit_batch([{"type": "echo", "payload": {"m": marker, "i": i}} for i in range(5)])
    for s in subs:
        client.wait(s.id, timeout=30)
    page = client.list_tasks(type="echo", limit=2)
    assert len(page.tasks) <= 2 and page.next_cursor
    assert all(t.payload is None for t in page.tasks), "payloads only when asked"
    mine = [t for t in client.iter_tasks(type="echo", page_size=3, payloads=True) if t.payload.get("m") == marker]
    assert [t.id for t in mine] == [s.id for s in subs], "every page followed, in submission order"
    done = client.list_tasks(state="succeeded", limit=1000)
    assert {s.id for s in subs} <= {t.id for t in done.tasks} or done.next_cursor


def test_cancel(client: Client) -> None:
    sub = client.submit("sleep", {"ms": 60000})
    t = client.cancel(sub.id)
    assert t.id == sub.id and (t.state == "cancelled" or t.cancel_requested)
    res = client.wait(sub.id, timeout=30)
    assert res.state == "cancelled" and res.error
    with pytest.raises(FailedPreconditionError) as info:
        client.cancel(sub.id)
    assert info.value.status == 412 and "already cancelled" in info.value.message


def test_watch_follows_a_task_until_it_finishes(client: Client) -> None:
    sub = client.submit("sleep", {"ms": 700})
    seen = [t.state for t in client.watch(sub.id, interval=0.05)]
    assert seen[-1] == "succeeded"
    assert "running" in seen, seen


def test_watch_stops_when_the_caller_stops(client: Client) -> None:
    sub = client.submit("sleep", {"ms": 60000})
    for t in client.watch(sub.id, interval=0.05):
        assert t.id == sub.id
        break
    with pytest.raises(WaitTimeoutError):
        list(client.watch(sub.id, interval=0.05, timeout=0.2))
    client.cancel(sub.id)


def test_errors_carry_the_servers_code_message_and_status(client: Client) -> None:
    with pytest.raises(NotFoundError) as nf:
        client.status("no-such-task")
    assert (nf.value.status, nf.value.code, nf.value.message) == (404, "not_found", "task no-such-task not found")
    with pytest.raises(InvalidArgumentError) as bad:
        client.submit("echo", {}, priority=12)
    assert (bad.value.status, bad.value.code) == (400, "invalid_argument")
    assert bad.value.message == "priority 12 is out of range 0..=9"
    assert "invalid_argument 400 (submit): priority 12" in str(bad.value)
    with pytest.raises(InvalidArgumentError) as unknown:
        client.submit("no-such-type", {})
    assert 'unknown task type "no-such-type"' in unknown.value.message
    with pytest.raises(SynodError) as method:
        client.request("PUT", "/tasks/submit", json={})
    assert method.value.status == 405 and method.value.code == "invalid_argument"


def test_a_task_id_is_percent_encoded_in_the_path(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        client.status("a/b?c#d e")
    assert info.value.message == "task a/b?c#d e not found"


def test_a_duplicate_submit_answers_the_first_tasks_state_now(client: Client) -> None:
    key = f"dup-{uuid.uuid4()}"
    first = client.submit("echo", {"n": 1}, idempotency_key=key)
    # "assigned" when a worker slot was free as it was submitted.
    assert first.state in ("queued", "assigned") and not first.duplicate
    client.wait(first.id, timeout=60)
    again = client.submit("echo", {"n": 1}, idempotency_key=key)
    assert again.id == first.id and again.duplicate
    # The task finished: the duplicate says so (it used to say "queued").
    assert again.state == "succeeded", again
