"""When and how long to retry.

A call is retried when its outcome allows it (see :class:`Safety`):

=========================================  ===============================
outcome                                    retried for
=========================================  ===============================
no connection (nothing was sent)           every call
429 with ``Retry-After``                   every call (nothing was stored)
503 ``unavailable`` (nothing changed)      every call
timeout or dropped connection after send   reads and idempotent writes
504 ``indeterminate``                      reads and idempotent writes
anything else (4xx, 500)                   never
=========================================  ===============================

A write some attempt of which had an unknown outcome ends, when the
attempts run out, in :class:`~synod_client.errors.IndeterminateError`.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

__all__ = ["RetryPolicy", "Safety"]


class Safety(enum.Enum):
    """What repeating a request does."""

    #: No effect on the server's state (GETs, searches, logins).
    READ = "read"
    #: Repeating it leaves the state as one success would: a task submit
    #: with an idempotency key, an upsert by id, a delete, a cancel.
    IDEMPOTENT = "idempotent"
    #: A repeat may do it twice (creating an API key): resent only when the
    #: server said nothing changed, never after an unknown outcome.
    UNSAFE = "unsafe"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff and jitter.

    Args:
        max_attempts: attempts of one call, the first included (1: no retry).
        initial_backoff: seconds before the second attempt.
        multiplier: each further wait is this many times longer...
        max_backoff: ...up to this many seconds.
        jitter: each wait is randomly shortened by up to this fraction, so
            clients that failed together do not come back together.
        max_retry_after: the longest ``Retry-After`` (seconds) waited out;
            a longer one is raised to the caller at once.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 5.0
    jitter: float = 0.2
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction in 0..1")

    @classmethod
    def never(cls) -> "RetryPolicy":
        """One attempt per call."""
        return cls(max_attempts=1)

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` attempts (>= 1)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failed_attempts - 1))
        return base * (1 - self.jitter * random.random())
