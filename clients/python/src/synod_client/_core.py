"""The client's logic, free of I/O, shared by the sync and async clients.

Every operation is a *program*: a generator that yields instructions and
gets their outcomes sent back. A driver (``Client._drive``, or the async
one) performs them:

    program ──Send(request)──▶ driver ──httpx──▶ node
       ▲                         │
       └── Response or the ──────┘     Sleep(s): time.sleep / anyio.sleep
           TransportError              Emit(x): hand x to the caller (streams)
                                       Notify(fn, args): call a user callback

So the retry loop, the token refresh and the multi-request operations
(batched upserts, waits, watches, paging) exist once, and the two clients
differ only in how they wait.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, Generic, List, Mapping, Optional, Tuple, TypeVar
from urllib.parse import quote, urlencode

import httpx

from . import errors
from .errors import ConnectionFailedError, IndeterminateError, SynodError
from .models import Token
from .retry import RetryPolicy, Safety

T = TypeVar("T")

#: A program: yields instructions, is sent their outcomes, returns a T.
Program = Generator[Any, Any, T]

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Send:
    method: str
    path: str
    params: Optional[Dict[str, Any]]
    headers: Dict[str, str]
    content: Optional[bytes]
    #: Seconds to wait for the answer instead of the client's read timeout.
    read_timeout: Optional[float] = None


@dataclass
class Sleep:
    seconds: float


@dataclass
class Emit:
    value: Any


@dataclass
class Notify:
    fn: Callable[..., Any]
    args: Tuple[Any, ...]


def _parse_json(r: httpx.Response) -> Any:
    return r.json() if r.content else None


@dataclass
class Call(Generic[T]):
    """One logical request: what to send, how safe it is to repeat, how to read the answer."""

    method: str
    path: str
    op: str
    safety: Safety
    parse: Callable[[httpx.Response], T] = _parse_json
    params: Optional[Dict[str, Any]] = None
    content: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    auth: bool = True
    read_timeout: Optional[float] = None
    #: Error statuses that are answers, not errors (``/health/ready``'s 503).
    ok_statuses: Tuple[int, ...] = ()
    #: The task submit's key, reported in an IndeterminateError.
    idempotency_key: Optional[str] = None
    #: A batch submit's keys, one per task in order, reported likewise.
    idempotency_keys: Optional[List[str]] = None


def dumps(value: Any) -> bytes:
    """Compact JSON; NaN and infinities are refused here, not by the server."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def json_call(
    method: str, path: str, op: str, safety: Safety, body: Any, *, parse: Callable[[httpx.Response], T], **kw: Any
) -> Call[T]:
    headers = dict(kw.pop("headers", {}))
    headers["Content-Type"] = JSON
    return Call(method, path, op, safety, parse=parse, content=dumps(body), headers=headers, **kw)


def path(template: str, *segments: Any) -> str:
    """``template`` with each ``{}`` replaced by a percent-encoded segment:
    ``path("/collections/{}/points/{}", "docs", "s:a/b")`` is
    ``/collections/docs/points/s%3Aa%2Fb``."""
    return template.format(*(quote(str(s), safe="") for s in segments))


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


class Session:
    """What the two clients share between calls: credentials and limits."""

    def __init__(
        self,
        *,
        token: Optional[str],
        api_key: Optional[str],
        username: Optional[str],
        password: Optional[str],
        tenant: Optional[str],
        retry: RetryPolicy,
        max_body_bytes: int,
        max_batch: int,
        user_agent: str,
    ) -> None:
        if token and api_key:
            raise ValueError("give a token or an API key, not both")
        self.token = token
        self.api_key = api_key
        self.username = username
        self.password = password
        self.tenant = tenant
        self.retry = retry
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.user_agent = user_agent
        #: time.monotonic() after which the token is renewed before use.
        self.token_renew_at: Optional[float] = None

    def auth_headers(self) -> Dict[str, str]:
        h: Dict[str, str] = {}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        elif self.api_key:
            h["X-API-Key"] = self.api_key
        if self.tenant:
            h["X-Synod-Tenant"] = self.tenant
        return h

    def can_login(self) -> bool:
        return bool(self.username and self.password)

    def needs_login(self) -> bool:
        if not self.can_login():
            return False
        if self.token is None:
            return True
        return self.token_renew_at is not None and time.monotonic() >= self.token_renew_at

    def set_token(self, tok: Token) -> None:
        self.token = tok.access_token
        self.api_key = None
        if tok.expires_in:
            # Renew a little before it expires (a tenth of its life, at most a minute).
            margin = min(60.0, tok.expires_in / 10)
            self.token_renew_at = time.monotonic() + tok.expires_in - margin
        else:
            self.token_renew_at = None


# ---- transport outcomes

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_FATAL = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def _chain(exc: BaseException) -> Generator[BaseException, None, None]:
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def transport_outcome(exc: BaseException) -> str:
    """``fatal`` (nothing was sent and retrying cannot help), ``not_sent`` or
    ``unknown``.

    A TLS error is fatal only while connecting (a handshake or certificate
    failure: nothing was sent). Once the request may have gone out, a TLS
    error reading or writing is like any other dropped connection: unknown.
    """
    if isinstance(exc, _FATAL):
        return "fatal"
    if isinstance(exc, _NOT_SENT):
        return "fatal" if any(isinstance(e, ssl.SSLError) for e in _chain(exc)) else "not_sent"
    return "unknown"


def _indeterminate(call: Call[Any], attempts: int, cause: BaseException) -> IndeterminateError:
    status = cause.status if isinstance(cause, SynodError) else None
    why = "not resent: a repeat could do it twice" if call.safety is Safety.UNSAFE and attempts == 1 else ""
    key = ""
    if call.idempotency_key:
        key = f"; resend with idempotency key {call.idempotency_key!r} to learn it"
    elif call.idempotency_keys:
        key = f"; resend the batch with its {len(call.idempotency_keys)} idempotency keys to learn it"
    msg = f"outcome unknown after {attempts} attempt(s) ({cause}){'; ' + why if why else ''}{key}"
    return IndeterminateError(
        msg,
        idempotency_key=call.idempotency_key,
        idempotency_keys=call.idempotency_keys,
        operation=call.op,
        status=status,
    )


def execute(sess: Session, call: Call[T]) -> Program[T]:
    """Sends ``call`` until it has a definite answer or the policy says stop."""
    policy = sess.retry
    unknown = False  # an attempt of a write may have taken effect
    renewed = False
    attempt = 0
    while True:
        if call.auth and sess.needs_login():
            yield from _relogin_during(sess, call, attempt, unknown)
        attempt += 1
        headers = dict(call.headers)
        headers["User-Agent"] = sess.user_agent
        if call.auth:
            headers.update(sess.auth_headers())
        reply = yield Send(call.method, call.path, call.params, headers, call.content, call.read_timeout)
        err: SynodError
        if isinstance(reply, BaseException):
            outcome = transport_outcome(reply)
            if outcome == "fatal":
                # Nothing was sent by this attempt; an earlier one may still
                # have taken effect, and that is what the caller must learn.
                if unknown:
                    raise _indeterminate(call, attempt, reply) from reply
                raise ConnectionFailedError(f"{type(reply).__name__}: {reply}", operation=call.op) from reply
            if outcome == "unknown" and call.safety is not Safety.READ:
                unknown = True
                if call.safety is Safety.UNSAFE:
                    raise _indeterminate(call, attempt, reply) from reply
            err = ConnectionFailedError(f"no answer: {type(reply).__name__}: {reply}", operation=call.op)
            err.__cause__ = reply
        else:
            status = reply.status_code
            if status < 400 or status in call.ok_statuses:
                return call.parse(reply)
            err = errors.from_response(status, reply.headers, reply.content, operation=call.op)
            if status == 401 and call.auth and sess.can_login() and not renewed:
                # Refused before anything happened: log in again and resend.
                renewed = True
                yield from _relogin_during(sess, call, attempt, unknown)
                attempt -= 1
                continue
            if status in (502, 504):
                if call.safety is not Safety.READ:
                    unknown = True
                    if call.safety is Safety.UNSAFE:
                        raise _indeterminate(call, attempt, err) from err
            elif status not in (429, 503):
                err.after_unknown_outcome = unknown
                raise err
        if attempt >= policy.max_attempts:
            if unknown:
                raise _indeterminate(call, attempt, err) from err
            raise err
        delay = policy.backoff(attempt)
        if err.retry_after is not None:
            if err.retry_after > policy.max_retry_after:
                if unknown:
                    raise _indeterminate(call, attempt, err) from err
                raise err
            delay = max(delay, err.retry_after)
        yield Sleep(delay)


def _relogin_during(sess: Session, call: Call[Any], attempts: int, unknown: bool) -> Program[None]:
    """A login in the middle of ``call``: if it fails after an attempt of the
    call had an unknown outcome, the call's outcome is still unknown, and
    that (not the login's failure) is what is raised."""
    try:
        yield from _relogin(sess)
    except SynodError as e:
        if unknown:
            raise _indeterminate(call, attempts, e) from e
        raise


def _relogin(sess: Session) -> Program[Token]:
    """A login with the kept credentials; refused, they are forgotten, so
    later calls do not pile up failed logins (the node locks a user out for
    the rest of the minute after ``security.login_rate_per_minute``)."""
    try:
        return (yield from login(sess))
    except errors.UnauthenticatedError:
        sess.password = None
        raise


def login(sess: Session, username: Optional[str] = None, password: Optional[str] = None) -> Program[Token]:
    """``POST /login`` (the OAuth2 password grant); keeps the token."""
    user = username or sess.username
    pw = password or sess.password
    if not user or not pw:
        raise ValueError("a login needs a username and a password")
    body = urlencode({"grant_type": "password", "username": user, "password": pw}).encode()
    call = Call(
        "POST",
        "/login",
        "login",
        # A login changes nothing a repeat could double.
        Safety.READ,
        parse=lambda r: Token.from_json(r.json()),
        content=body,
        headers={"Content-Type": FORM},
        auth=False,
    )
    tok: Token = yield from execute(sess, call)
    sess.set_token(tok)
    return tok


def timeout_for(send: Send, base: httpx.Timeout) -> httpx.Timeout:
    """The client's timeout, with a longer read timeout for a long poll."""
    if send.read_timeout is None:
        return base
    read = send.read_timeout if base.read is None else max(base.read, send.read_timeout)
    return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


def ssl_context(verify: Any) -> Any:
    """httpx's ``verify`` from ours: a CA file path becomes an SSL context."""
    if isinstance(verify, (str, bytes)) or hasattr(verify, "__fspath__"):
        return ssl.create_default_context(cafile=str(verify if not isinstance(verify, bytes) else verify.decode()))
    return verify


def base_url(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def mapping(x: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(x, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(x).__name__}")
    return x
