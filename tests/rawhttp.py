"""A scriptable raw-socket HTTP server on 127.0.0.1 for tests: it sends exactly the bytes a test gives, with the
timing it gives, so framing errors, cut bodies, trickles and resets can be played against the real fetcher.

    with RawHTTP({"/robots.txt": [(head(404), 0)], "/": [(head(200, length=5), 0), (b"hel", 0.2), CLOSE]}) as srv:
        fetch_one(session, srv.url("/"), cfg)

A script is, per request path (a dict, with "*" as the fallback) or for every request (a list or a callable):
- a list of steps: (bytes, delay) waits `delay` seconds, then sends the bytes; CLOSE (the default after the last
  step) ends the connection with a FIN, RESET with a RST, HOLD keeps it open until the client lets go, KEEP
  waits for the next request on it;
- or a callable(conn, request, stop) that does anything with the socket; `stop()` says when to give up.
Every wait is bounded (`limit` seconds per connection) and close() stops everything, so a client that does not bound
its own waits fails a timing assertion instead of hanging the suite. `log` holds one Conn per connection.
"""
from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
import zlib
from typing import List, Optional

CLOSE, RESET, HOLD, KEEP = "close", "reset", "hold", "keep"


class Conn:
    """What one connection saw: when it opened and ended, the request line(s), bytes sent, and whether the client
    let go before the script was done (`cut`: a send failed, or the client closed while we held)."""

    def __init__(self):
        self.opened, self.closed, self.requests, self.sent, self.cut = time.monotonic(), None, [], 0, False

    def __repr__(self):
        return f"Conn(requests={self.requests}, sent={self.sent}, cut={self.cut})"


def head(status: int = 200, headers=(), *, length: Optional[int] = None, reason: str = "X",
         version: str = "HTTP/1.1") -> bytes:
    """A status line and headers; `length` adds Content-Length. `headers`: (name, value) pairs or a dict."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    if length is not None:
        items.append(("Content-Length", str(length)))
    lines = [f"{version} {status} {reason}"] + [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body: bytes, size: int = 4096, complete: bool = True) -> bytes:
    """`body` in chunked transfer coding; without the terminating zero chunk unless `complete`."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + (b"0\r\n\r\n" if complete else b"")


def compress(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body, compresslevel=6, mtime=0)
    if coding == "deflate":
        return zlib.compress(body)
    return body


def gzip_bomb(decoded: int) -> bytes:
    """A gzip member of `decoded` zero bytes, built without holding them (about decoded / 1000 bytes)."""
    c, block, out = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS), bytes(2**20), []
    for _ in range(decoded // len(block)):
        out.append(c.compress(block))
    out.append(c.compress(bytes(decoded % len(block))))
    out.append(c.flush())
    return b"".join(out)


class RawHTTP:
    def __init__(self, script, limit: float = 8.0):
        self.script, self.limit, self.log = script, limit, []
        self._stop, self._conns, self._threads = threading.Event(), [], []
        self._lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.srv.settimeout(0.05)
        self.port = self.srv.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True, name="rawhttp-accept")
        self._acceptor.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self, wait: float = 2.0):
        self._stop.set()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._acceptor.join(wait)
        for t in list(self._threads):
            t.join(max(0.0, wait / 4))

    def requests(self, path: str = "") -> List[Conn]:
        """Connections whose request line contains `path`."""
        return [c for c in self.log if any(path.encode() in r for r in c.requests)]

    # ------------------------------------------------------------------ serving
    def _accept(self):
        try:
            while not self._stop.is_set():
                try:
                    sock, _ = self.srv.accept()
                except socket.timeout:
                    continue
                except OSError:
                    return
                t = threading.Thread(target=self._serve, args=(sock,), daemon=True, name="rawhttp-conn")
                self._threads.append(t)
                t.start()
        finally:
            self.srv.close()

    def _script_for(self, request: bytes):
        if not isinstance(self.script, dict):
            return self.script
        parts = request.split(b" ", 2)
        path = parts[1].decode("latin-1").split("?", 1)[0] if len(parts) > 1 else ""
        return self.script.get(path, self.script.get("*", [(head(404, length=0), 0)]))

    def _serve(self, sock: socket.socket):
        conn = Conn()
        self.log.append(conn)
        with self._lock:
            self._conns.append(sock)
        deadline = conn.opened + self.limit
        stop = lambda: self._stop.is_set() or time.monotonic() > deadline   # noqa: E731
        sock.settimeout(0.1)
        try:
            while not stop():                     # keep-alive: one script per request on this connection
                request = self._read_request(sock, stop)
                if request is None:
                    return
                conn.requests.append(request.split(b"\r\n", 1)[0])
                script = self._script_for(request)
                if callable(script):
                    script(sock, request, stop)
                    return
                end = CLOSE
                for step in script:
                    if isinstance(step, str):
                        end = step
                        break
                    data, delay = step
                    if delay and self._stop.wait(delay):
                        return
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    sock.sendall(data)
                    sock.settimeout(0.1)
                    conn.sent += len(data)
                if end == RESET:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if end == HOLD:
                    self._hold(sock, conn, stop)
                    return
                if end == CLOSE:
                    return
        except OSError:
            conn.cut = True                       # the client let go (or the server stopped)
        finally:
            conn.closed = time.monotonic()
            with self._lock:
                self._conns.remove(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _read_request(self, sock, stop) -> Optional[bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            if stop() or len(data) > 65536:
                return None
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                return None
            data += chunk
        return data

    @staticmethod
    def _hold(sock, conn, stop):
        while not stop():
            try:
                if not sock.recv(4096):
                    conn.cut = True
                    return
            except socket.timeout:
                continue


def send_steps(sock, steps, stop) -> int:
    """For callable scripts: send (bytes, delay) steps until `stop()`; the bytes sent."""
    sent = 0
    for data, delay in steps:
        if stop():
            break
        if delay:
            time.sleep(delay)
        sock.sendall(data)
        sent += len(data)
    return sent
