"""One wall-clock deadline per HTTP exchange, enforced even while a blocking read is waiting.

Socket timeouts bound silence, not time: a server that trickles its status line or headers a byte at a time, or
sends `100 Continue` forever (http.client skips interim responses in an unbounded loop), never stays silent long
enough for `read_timeout`, and a body loop cannot check the clock while http.client is still parsing headers.
So the fetch thread arms a deadline around each exchange (`WATCHDOG.deadline(t)`); every socket our connection
classes open or reuse inside it is attached (`WATCHDOG.attach`, called from crawl/fetch/safety.py); one daemon
thread shuts those sockets down when the deadline passes. The blocked read then returns at once, the request
fails, and the fetcher, seeing the deadline passed, names it "timeout".
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Dict, List


class Watchdog:
    def __init__(self):
        self._cv = threading.Condition()
        self._armed: Dict[object, list] = {}     # token -> [deadline, fired, [sockets]]
        self._local = threading.local()
        self._thread = None

    @contextmanager
    def deadline(self, when: float):
        """Arm `when` (time.monotonic()) for the exchanges this thread makes inside the block."""
        token = object()
        with self._cv:
            self._armed[token] = [when, False, []]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self._thread.start()
            self._cv.notify()
        prev = getattr(self._local, "token", None)
        self._local.token = token
        try:
            yield
        finally:
            self._local.token = prev
            with self._cv:
                self._armed.pop(token, None)

    def attach(self, sock: socket.socket) -> None:
        """Watch `sock` for this thread's armed deadline (no-op outside one); past it already: cut now."""
        token = getattr(self._local, "token", None)
        if token is None:
            return
        with self._cv:
            entry = self._armed.get(token)
            if entry is None:
                return
            if entry[1] or time.monotonic() >= entry[0]:
                _cut([sock])
            else:
                entry[2].append(sock)

    def _run(self):
        while True:
            with self._cv:
                now = time.monotonic()
                for entry in self._armed.values():
                    if not entry[1] and entry[0] <= now:
                        entry[1] = True
                        _cut(entry[2])
                pending = [e[0] for e in self._armed.values() if not e[1]]
                self._cv.wait(timeout=max(0.001, min(pending) - now) if pending else 5.0)


def _cut(socks: List[socket.socket]) -> None:
    for s in socks:
        try:
            # The plain socket's shutdown, also for an SSLSocket: it wakes a recv blocked in another thread
            # without touching the TLS object that thread is using.
            socket.socket.shutdown(s, socket.SHUT_RDWR)
        except OSError:
            pass            # already closed


WATCHDOG = Watchdog()
