"""The client's own logic, without a node."""

from __future__ import annotations

import base64
import json
import ssl

import httpx
import numpy as np
import pytest

from synod_client import Client, RetryPolicy, errors
from synod_client._core import path, transport_outcome
from synod_client._points import fragments, pack, vector_json


def test_path_segments_are_percent_encoded() -> None:
    assert path("/collections/{}/points/{}", "docs", "s:a/b") == "/collections/docs/points/s%3Aa%2Fb"
    assert path("/tasks/{}/status", "x y?#%ü") == "/tasks/x%20y%3F%23%25%C3%BC/status"
    assert path("/collections/{}/points/{}", "c", 7) == "/collections/c/points/7"


def test_batches_respect_count_and_bytes() -> None:
    frags, total = fragments([{"id": i, "vector": [0.5] * 10} for i in range(100)], None, None, None, None)
    assert total == 100
    bodies = list(pack(frags, 30, 1000))
    assert sum(n for _, n in bodies) == 100
    for body, n in bodies:
        assert len(body) <= 1000 and n <= 30
        assert len(json.loads(body)["points"]) == n
    ids = [p["id"] for body, _ in bodies for p in json.loads(body)["points"]]
    assert ids == list(range(100)), "order kept"
    with pytest.raises(ValueError, match="over the 50-byte request limit"):
        list(pack(iter([b"x" * 60]), 10, 50))


def test_numpy_rows_go_as_base64_float32_and_round_trip_exactly() -> None:
    v = np.random.default_rng(1).standard_normal((50, 33)).astype(np.float64)
    frags, total = fragments(None, np.arange(50, dtype=np.int64), v, None, [{"i": i} for i in range(50)])
    points = [json.loads(f) for f in frags]
    assert total == 50 and points[3]["id"] == 3 and points[3]["metadata"] == {"i": 3}
    # The server's compact form: base64 of the little-endian float32s.
    back = np.array([np.frombuffer(base64.b64decode(p["vector"]), dtype="<f4") for p in points])
    assert np.array_equal(back, v.astype(np.float32))
    # One vector alone takes the same path.
    assert json.loads(vector_json(v[0].astype(">f8"))) == points[0]["vector"]
    with pytest.raises(ValueError, match="2 ids but 50 vectors"):
        fragments(None, [1, 2], v, None, None)


def test_errors_from_the_servers_body_and_from_other_answers() -> None:
    body = b'{"error":{"code":"failed_precondition","message":"stale","details":{"v":3}}}'
    e = errors.from_response(412, {"retry-after": "2"}, body, operation="labels")
    assert isinstance(e, errors.FailedPreconditionError)
    assert (e.status, e.code, e.message, e.details, e.retry_after) == (412, "failed_precondition", "stale", {"v": 3}, 2)
    proxy = errors.from_response(502, {}, b"<html>bad gateway</html>")
    assert type(proxy) is errors.SynodError and proxy.status == 502 and "bad gateway" in proxy.message
    assert isinstance(errors.from_response(504, {}, b""), errors.IndeterminateError)
    assert isinstance(errors.from_response(429, {}, b""), errors.ResourceExhaustedError)
    assert errors.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_grows_to_its_cap_with_jitter_below_it() -> None:
    p = RetryPolicy(initial_backoff=0.1, multiplier=2, max_backoff=0.5, jitter=0.2)
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        d = p.backoff(attempt)
        assert base * 0.8 <= d <= base
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_transport_failures_are_classified_by_what_may_have_happened() -> None:
    req = httpx.Request("POST", "http://x/tasks/submit")
    assert transport_outcome(httpx.ConnectError("refused", request=req)) == "not_sent"
    assert transport_outcome(httpx.ReadTimeout("slow", request=req)) == "unknown"
    assert transport_outcome(httpx.RemoteProtocolError("closed", request=req)) == "unknown"
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as inner:
            raise httpx.ConnectError("tls", request=req) from inner
    except httpx.ConnectError as e:
        assert transport_outcome(e) == "fatal"
    # A TLS error after the request may have gone out is a lost answer, not fatal.
    for exc in (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        try:
            try:
                raise ssl.SSLError("bad record mac")
            except ssl.SSLError as inner:
                raise exc("tls", request=req) from inner
        except httpx.TransportError as e:
            assert transport_outcome(e) == "unknown", exc


def test_from_env_reads_the_clis_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNOD_ADDR", "http://10.1.2.3:7700/")
    monkeypatch.setenv("SYNOD_API_KEY", "sk_a_b")
    monkeypatch.delenv("SYNOD_TOKEN", raising=False)
    monkeypatch.delenv("SYNOD_CA_CERT", raising=False)
    with Client.from_env() as c:
        assert c.base_url == "http://10.1.2.3:7700"
        assert c._session.auth_headers() == {"X-API-Key": "sk_a_b"}
    with Client.from_env(token="t") as c:
        assert c._session.auth_headers() == {"Authorization": "Bearer t"}
