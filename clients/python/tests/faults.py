"""httpx transports that forward to the real node and inject faults.

A fault applies to the next request that its ``match`` selects:

* ``drop_response``: the request reaches the node and is processed; its
  answer is read and thrown away and ``httpx.ReadTimeout`` raised instead,
  so the client cannot know what happened (an indeterminate outcome).
* ``drop_response_tls``: like ``drop_response``, but the answer is lost to
  a TLS error while reading (``httpx.ReadError`` caused by ``ssl.SSLError``).
* ``refuse``: nothing is sent; ``httpx.ConnectError`` is raised.
* ``refuse_tls``: nothing is sent; the TLS handshake fails
  (``httpx.ConnectError`` caused by ``ssl.SSLCertVerificationError``).
* ``status``: nothing is sent; a synthesized error answer is returned.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import httpx


@dataclass
class Fault:
    kind: str  # drop_response | drop_response_tls | refuse | refuse_tls | status
    match: Callable[[httpx.Request], bool]
    status: int = 503
    code: str = "unavailable"
    headers: Dict[str, str] = field(default_factory=dict)
    #: How many matching requests it applies to.
    times: int = 1


@dataclass
class Seen:
    method: str
    path: str
    headers: httpx.Headers
    body: bytes
    #: The fault applied to it, if any.
    fault: Optional[str]

    def json(self) -> object:
        return json.loads(self.body)


def is_submit(r: httpx.Request) -> bool:
    return r.method == "POST" and r.url.path == "/tasks/submit"


def route(method: str, path_prefix: str) -> Callable[[httpx.Request], bool]:
    return lambda r: r.method == method and r.url.path.startswith(path_prefix)


class _Faults:
    def __init__(self, faults: List[Fault]) -> None:
        self.faults = list(faults)
        self.seen: List[Seen] = []

    def _pick(self, request: httpx.Request, body: bytes) -> Optional[Fault]:
        fault = next((f for f in self.faults if f.times > 0 and f.match(request)), None)
        if fault is not None:
            fault.times -= 1
        self.seen.append(Seen(request.method, request.url.path, request.headers, body, fault.kind if fault else None))
        return fault

    @staticmethod
    def _synthesized(fault: Fault, request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": fault.code, "message": f"injected {fault.status}", "details": None}}
        return httpx.Response(fault.status, json=body, headers=fault.headers, request=request)

    @staticmethod
    def _refused(fault: Fault, request: httpx.Request) -> Exception:
        if fault.kind == "refuse_tls":
            cause: Exception = ssl.SSLCertVerificationError("injected: certificate verify failed")
            err = httpx.ConnectError("injected: [SSL: CERTIFICATE_VERIFY_FAILED]", request=request)
        else:
            cause = ConnectionRefusedError("injected: connection refused")
            err = httpx.ConnectError("injected: connection refused", request=request)
        err.__cause__ = cause
        return err

    @staticmethod
    def _lost(fault: Fault, request: httpx.Request) -> Exception:
        if fault.kind == "drop_response_tls":
            err: Exception = httpx.ReadError("injected: [SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]", request=request)
            err.__cause__ = ssl.SSLError("injected: bad record mac")
            return err
        return httpx.ReadTimeout("injected: the answer was lost", request=request)

    def requests(self, method: str, path: str) -> List[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]


class FaultTransport(_Faults, httpx.BaseTransport):
    def __init__(self, faults: List[Fault], **kw: object) -> None:
        super().__init__(faults)
        self.inner = httpx.HTTPTransport(**kw)  # type: ignore[arg-type]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        fault = self._pick(request, body)
        if fault is None:
            return self.inner.handle_request(request)
        if fault.kind in ("refuse", "refuse_tls"):
            raise self._refused(fault, request)
        if fault.kind == "status":
            return self._synthesized(fault, request)
        response = self.inner.handle_request(request)
        response.read()
        response.close()
        raise self._lost(fault, request)

    def close(self) -> None:
        self.inner.close()


class AsyncFaultTransport(_Faults, httpx.AsyncBaseTransport):
    def __init__(self, faults: List[Fault], **kw: object) -> None:
        super().__init__(faults)
        self.inner = httpx.AsyncHTTPTransport(**kw)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        fault = self._pick(request, body)
        if fault is None:
            return await self.inner.handle_async_request(request)
        if fault.kind in ("refuse", "refuse_tls"):
            raise self._refused(fault, request)
        if fault.kind == "status":
            return self._synthesized(fault, request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        await response.aclose()
        raise self._lost(fault, request)

    async def aclose(self) -> None:
        await self.inner.aclose()
