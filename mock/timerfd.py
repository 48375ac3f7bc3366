"""A Linux timerfd through ctypes: one file descriptor that becomes readable at an exact time.

The event loop's own timers are millisecond-granular; a timerfd armed for an absolute
CLOCK_MONOTONIC deadline (the clock behind `time.monotonic()`) wakes epoll within
microseconds, without polling. `TimerFd.create()` returns None where timerfds are not
available (not Linux), and callers fall back to polling.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class TimerFd:
    """One timerfd; `arm(deadline)` at an absolute monotonic time, `fileno()` for the loop."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._settime = libc.timerfd_settime
        self._fd = fd
        self._spec = _Itimerspec()

    @classmethod
    def create(cls) -> TimerFd | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        except (OSError, AttributeError):
            return None
        if fd < 0:
            return None
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        )
        return cls(libc, fd)

    def fileno(self) -> int:
        return self._fd

    def arm(self, deadline: float) -> None:
        """Become readable at `deadline` (seconds on CLOCK_MONOTONIC; a past one: at once)."""
        frac, whole = math.modf(max(deadline, 1e-9))
        value = self._spec.it_value
        value.tv_sec = int(whole)
        value.tv_nsec = int(frac * 1e9)
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def disarm(self) -> None:
        value = self._spec.it_value
        value.tv_sec = value.tv_nsec = 0
        self._settime(self._fd, 0, ctypes.byref(self._spec), None)

    def clear(self) -> None:
        """Consume the expiry count so the descriptor stops being readable."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
