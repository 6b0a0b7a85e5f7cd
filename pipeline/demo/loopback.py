"""A small web on 127.0.0.1: many virtual hosts behind one threaded HTTP server that also acts as a forward proxy.

The demo and the fetcher's tests point `requests` at it with `proxies={"http": web.proxy_url}`, so pages keep their
real hostnames (en.wikipedia.org, www.example-news.com) while nothing leaves the machine. A proxied request arrives
in absolute form (`GET http://news.example/a HTTP/1.1`); a direct one (`GET /a` + `Host: news.example`) works too.

    with LoopbackWeb() as web:
        web.add("http://news.example/a", "<html>...</html>")
        web.add_redirect("http://news.example/old", "http://news.example/a")
        web.add_handler("http://slow.example/", lambda h, url: ...)   # full control for hostile cases
        requests.get("http://news.example/a", proxies={"http": web.proxy_url})

Static routes match the exact URL (scheme, host, port, path, query); handlers match the longest URL prefix.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import SplitResult, unquote, urlsplit

Handler = Callable[[BaseHTTPRequestHandler, SplitResult], None]

NOT_FOUND_BODY = b"<!doctype html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"


class Response(NamedTuple):
    status: int
    body: bytes
    headers: Tuple[Tuple[str, str], ...]


def route_key(url: Union[str, SplitResult]) -> str:
    """The key a URL is served under: lower-case scheme and host, default port dropped, decoded path ("/" if empty),
    query as sent."""
    parts = urlsplit(url) if isinstance(url, str) else url
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port in (None, 80 if scheme == "http" else 443) else f"{host}:{port}"
    path = unquote(parts.path) or "/"       # "/wiki/A_(b)" and "/wiki/A_%28b%29" are one page
    return f"{scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive: every static response carries Content-Length
    server_version = "LoopbackWeb/1.0"
    timeout = 60                       # idle keep-alive connections do not pin a thread forever

    def setup(self):
        super().setup()
        # Headers and body are separate writes: with Nagle on, the body waits for the client's delayed ACK,
        # ~40 ms per response on Linux loopback, which no real server of this size would add.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _url(self) -> SplitResult:
        # Proxy form carries the URL; origin form (path only) takes its host from the Host header. A request pinned
        # to a checked address (crawl/fetch/safety.py: the address in the URL, the name in Host) reaches the name's
        # pages unless the address has pages of its own, as a real proxy reaches the name's server at that address.
        if self.path.startswith(("http://", "https://")):
            url, host = urlsplit(self.path), self.headers.get("Host")
            web: LoopbackWeb = self.server.web  # type: ignore[attr-defined]
            if host and _is_address(url.hostname or "") and not web._serves(route_key(url)):
                return url._replace(netloc=host)
            return url
        host = self.headers.get("Host", "localhost")
        return urlsplit(f"http://{host}{self.path}")

    def _serve(self, head_only: bool = False) -> None:
        web: LoopbackWeb = self.server.web  # type: ignore[attr-defined]
        started = time.monotonic()
        # Drain a request body so the next request on a kept-alive connection starts at the right byte.
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        url = self._url()
        key = route_key(url)
        web._record(started, self.command, url)
        response = web._routes.get(key)
        if response is None:
            handler = web._handler_for(key)
            if handler is not None:
                # Hostile handlers may send anything (wrong length, no length): do not reuse the connection.
                self.close_connection = True
                handler(self, url)
                return
            response = Response(404, NOT_FOUND_BODY, (("Content-Type", "text/html; charset=utf-8"),))
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(response.body)

    def do_GET(self):
        self._serve()

    def do_HEAD(self):
        self._serve(head_only=True)

    def do_POST(self):
        self._serve()

    def log_message(self, format, *args):
        if not self.server.web.quiet:  # type: ignore[attr-defined]
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024          # fetch benchmarks open many connections at once
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients that hang up mid-response (timeouts in fetcher tests) are expected, not errors.
        if not self.web.quiet:  # type: ignore[attr-defined]
            super().handle_error(request, client_address)


class LoopbackWeb:
    def __init__(self, quiet: bool = True):
        self.quiet = quiet
        self.log: List[Tuple[float, str, str, str]] = []   # (monotonic start, method, host, path+query)
        self.stopped = threading.Event()   # set by stop(): handlers that hang can wait on it instead of sleeping
        self._routes: Dict[str, Response] = {}
        self._handlers: Dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # --- content -------------------------------------------------------------------------------------------------
    def add(self, url: str, body: Union[bytes, str], status: int = 200,
            content_type: str = "text/html; charset=utf-8", headers: Optional[dict] = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        extra = [(k, str(v)) for k, v in (headers or {}).items()]
        if content_type and not any(k.lower() == "content-type" for k, _ in extra):
            extra.insert(0, ("Content-Type", content_type))
        self._routes[route_key(url)] = Response(status, data, tuple(extra))

    def add_redirect(self, url: str, location: str, status: int = 301) -> None:
        body = f'<html><body>Moved to <a href="{location}">{location}</a></body></html>'
        self.add(url, body, status=status, headers={"Location": location})

    def add_handler(self, url_prefix: str, fn: Handler) -> None:
        """fn(handler, url) writes the whole response itself; the connection is closed after it returns."""
        self._handlers[route_key(url_prefix)] = fn

    def add_robots(self, host: str, text: str) -> None:
        for scheme in ("http", "https"):
            self.add(f"{scheme}://{host}/robots.txt", text, content_type="text/plain; charset=utf-8")

    def urls(self) -> List[str]:
        return sorted(self._routes)

    # --- internals -----------------------------------------------------------------------------------------------
    def _serves(self, key: str) -> bool:
        return key in self._routes or self._handler_for(key) is not None

    def _handler_for(self, key: str) -> Optional[Handler]:
        best = max((p for p in self._handlers if key.startswith(p)), key=len, default=None)
        return self._handlers[best] if best is not None else None

    def _record(self, started: float, method: str, url: SplitResult) -> None:
        key = urlsplit(route_key(url))
        path = key.path + (f"?{key.query}" if key.query else "")
        with self._lock:
            self.log.append((started, method, key.netloc, path))

    # --- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LoopbackWeb is not started")
        return self._server.server_address[1]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoopbackWeb":
        if self._server is not None:
            return self
        self.stopped.clear()
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.web = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="loopback-web", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "LoopbackWeb":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
