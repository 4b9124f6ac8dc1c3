"""Errors: one class per error code of the server's JSON error body.

Every error a Synod node answers has the body
``{"error": {"code", "message", "details"}}``; :func:`from_response` turns it
into the matching :class:`SynodError` subclass, keeping the HTTP status, the
code, the message, the details and ``Retry-After``.

Two errors say something about *what happened* rather than what went wrong:

* :class:`UnavailableError` (and its :class:`ConnectionFailedError`): nothing
  was changed. Safe to retry anything.
* :class:`IndeterminateError`: a write may or may not have taken effect. The
  client raises it after its retries when any attempt's outcome is unknown
  (a timeout or a dropped connection after the request was sent, or the
  server's own 504). Resend with the same idempotency key (a batch: the
  same keys) to find out.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Dict, List, Mapping, Optional, Type

__all__ = [
    "SynodError",
    "InvalidArgumentError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "NotFoundError",
    "FailedPreconditionError",
    "ResourceExhaustedError",
    "UnavailableError",
    "ConnectionFailedError",
    "IndeterminateError",
    "InternalError",
    "WaitTimeoutError",
    "from_response",
]


class SynodError(Exception):
    """An error answered by a Synod node, or found by the client.

    Attributes:
        message: the server's message (or the client's).
        status: the HTTP status, ``None`` when no answer arrived.
        code: the error code (``not_found``, ``invalid_argument`` ...).
        details: the body's ``details`` (``None`` for most errors).
        retry_after: seconds from ``Retry-After``, when the server sent it.
        operation: what the client was doing (``submit``, ``upsert`` ...).
        after_unknown_outcome: an earlier attempt of this same call may have
            taken effect (its outcome was unknown), so this answer may be
            about the state that attempt left.
    """

    default_code = "unknown"

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        details: Any = None,
        retry_after: Optional[float] = None,
        operation: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.details = details
        self.retry_after = retry_after
        self.operation = operation
        self.after_unknown_outcome = False

    def __str__(self) -> str:
        where = f" {self.status}" if self.status is not None else ""
        what = f" ({self.operation})" if self.operation else ""
        return f"{self.code}{where}{what}: {self.message}"


class InvalidArgumentError(SynodError):
    """400 (and 405): the request is malformed or names something impossible."""

    default_code = "invalid_argument"


class UnauthenticatedError(SynodError):
    """401: no credentials, or credentials that are not valid."""

    default_code = "unauthenticated"


class PermissionDeniedError(SynodError):
    """403: the caller's role does not allow this."""

    default_code = "permission_denied"


class NotFoundError(SynodError):
    """404: the named resource does not exist (or is another tenant's)."""

    default_code = "not_found"


class FailedPreconditionError(SynodError):
    """412: a stale ``If-Match``, an existing name, a finished task to cancel..."""

    default_code = "failed_precondition"


class ResourceExhaustedError(SynodError):
    """413 (body too large) or 429 (rate or quota; ``retry_after`` says when)."""

    default_code = "resource_exhausted"


class UnavailableError(SynodError):
    """503: no leader or no quorum right now; nothing was changed."""

    default_code = "unavailable"


class ConnectionFailedError(UnavailableError):
    """No answer: the connection could not be made (nothing was sent), or a
    read-only call got no answer. Nothing was changed by this client."""

    default_code = "unavailable"


class IndeterminateError(SynodError):
    """The write may or may not have taken effect.

    Raised for the server's 504 and, after the client's last retry, for any
    call some attempt of which had an unknown outcome.

    Attributes:
        idempotency_key: a task submit's key: submit again with it to learn
            what happened (``None`` for other calls).
        idempotency_keys: the keys the call sent, in order: ``[key]`` for a
            task submit, one per task for a batch submit (resubmit the same
            tasks with these keys: the answer is the tasks the lost attempt
            made, ``duplicate=True``, or new ones if it made none), empty
            for every other call.
    """

    default_code = "indeterminate"

    def __init__(
        self,
        message: str,
        *,
        idempotency_key: Optional[str] = None,
        idempotency_keys: Optional[List[str]] = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.idempotency_key = idempotency_key
        if idempotency_keys is None:
            idempotency_keys = [idempotency_key] if idempotency_key is not None else []
        self.idempotency_keys: List[str] = list(idempotency_keys)
        self.after_unknown_outcome = True


class InternalError(SynodError):
    """500: a bug or a storage failure on the node (details in its log)."""

    default_code = "internal"


class WaitTimeoutError(SynodError, TimeoutError):
    """A task did not finish within the time the caller allowed."""

    default_code = "wait_timeout"


_BY_CODE: Dict[str, Type[SynodError]] = {
    "invalid_argument": InvalidArgumentError,
    "unauthenticated": UnauthenticatedError,
    "permission_denied": PermissionDeniedError,
    "not_found": NotFoundError,
    "failed_precondition": FailedPreconditionError,
    "resource_exhausted": ResourceExhaustedError,
    "unavailable": UnavailableError,
    "indeterminate": IndeterminateError,
    "internal": InternalError,
}

_BY_STATUS: Dict[int, Type[SynodError]] = {
    400: InvalidArgumentError,
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: InvalidArgumentError,
    412: FailedPreconditionError,
    413: ResourceExhaustedError,
    429: ResourceExhaustedError,
    500: InternalError,
    503: UnavailableError,
    504: IndeterminateError,
}


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def from_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    operation: Optional[str] = None,
) -> SynodError:
    """The error a non-2xx answer stands for."""
    code: Optional[str] = None
    message = ""
    details: Any = None
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = str(err.get("message") or "")
        details = err.get("details")
    if not message:
        text = content[:500].decode("utf-8", "replace").strip()
        message = text or f"HTTP {status}"
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or SynodError
    return cls(
        message,
        status=status,
        code=code,
        details=details,
        retry_after=parse_retry_after(headers.get("retry-after")),
        operation=operation,
    )
