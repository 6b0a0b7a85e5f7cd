"""The fetcher is never tricked into a request it must not make: special-use names through a proxy, IP literals
in disguise, a redirect whose authority two URL parsers read differently, and (with pin_dns) a proxy that would
resolve a name again. Each case asserts from the loopback proxy's own log what reached the network."""
import socket
import threading
import time

import pytest

from core.records import Link
from crawl.fetch.config import FetchConfig
from crawl.fetch.fetcher import fetch_host, fetch_one, make_session
from crawl.fetch.safety import Resolver
from conftest import recording_handler
from pipeline.demo.loopback import LoopbackWeb

PAGE = "<!doctype html><html><head><title>t</title></head><body><p>Hello.</p></body></html>"
PUBLIC = "93.184.216.34"            # a public address: with pin_dns the proxy is asked for it by number
PINNED = []                         # (request target, Host header) as the proxy received them


_pinned_handler = recording_handler(PINNED, PAGE)


@pytest.fixture(scope="module")
def web():
    with LoopbackWeb() as w:
        w.add("http://good.example/", PAGE)
        w.add("http://good.example/b?z=1", PAGE)
        w.add("http://evil.example/", PAGE)
        w.add_redirect("http://r.example/backslash", "http://evil.example\\@good.example/")
        w.add_redirect("http://r.example/space", "http://evil.example @good.example/")
        w.add_redirect("http://r.example/messy", "HTTP://Good.Example:80/a/../b?utm_source=x&z=1#frag")
        w.add_redirect("http://r.example/to-localhost", "http://localhost/admin")
        w.add_redirect("http://r.example/to-metadata-name", "http://metadata.google.internal/computeMetadata/v1/")
        w.add_handler(f"http://{PUBLIC}/", _pinned_handler)
        yield w


def _cfg(web, **kw):
    base = dict(http_proxy=web.proxy_url, min_delay=0.0, connect_timeout=1.0, read_timeout=0.5, page_timeout=1.0,
                robots=False, backoff=0.01)
    base.update(kw)
    return FetchConfig(**base)


@pytest.mark.parametrize("url", [
    "http://localhost/admin", "http://localhost./admin", "http://app.localhost/", "http://printer.local/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata.goog/", "http://db.internal/",
    "http://router.home.arpa/", "http://intranet/", "http://127.0.0.1./", "http://169.254.169.254./latest/",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",              # full-width digits: 127.0.0.1 to IDNA
    "http://r.example/to-localhost", "http://r.example/to-metadata-name",
])
def test_names_for_this_machine_are_refused_through_a_proxy(web, url):
    n = len(web.log)
    cfg = _cfg(web)
    result = fetch_one(make_session(cfg), url, cfg)
    assert result.outcome == "private_address", result
    sent = [e for e in web.log[n:] if e[2] != "r.example"]
    assert sent == []                                   # nothing but the redirecting page reached the proxy


@pytest.mark.parametrize("path", ["/backslash", "/space"])
def test_ambiguous_redirect_authority_is_refused(web, path):
    n = len(web.log)
    cfg = _cfg(web)
    result = fetch_one(make_session(cfg), f"http://r.example{path}", cfg)
    assert result.outcome == "bad_redirect" and "ambiguous" in result.detail, result
    assert [e[2] for e in web.log[n:]] == ["r.example"]   # neither evil.example nor good.example was asked


def test_the_url_checked_is_the_url_sent(web):
    n = len(web.log)
    cfg = _cfg(web)
    result = fetch_one(make_session(cfg), "http://r.example/messy", cfg)
    assert result.outcome == "ok" and result.page.final_url == "http://good.example/b?z=1"
    assert [(e[2], e[3]) for e in web.log[n:]] == [("r.example", "/messy"), ("good.example", "/b?z=1")]


def _answers(table, calls=None):
    """A stand-in for the system resolver: name -> address, or an exception to raise."""
    def lookup(host, port, proto=0):
        if calls is not None:
            calls.append(host)
        answer = table[host]
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            time.sleep(3)
            answer = PUBLIC
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, 0))]
    return lookup


def test_pin_dns_sends_the_proxy_the_checked_address(web):
    PINNED.clear()
    n = len(web.log)
    cfg = _cfg(web, pin_dns=True)
    resolver = Resolver(lookup=_answers({"news.example": PUBLIC, "rebind.example": "10.1.2.3"}))
    ok = fetch_one(make_session(cfg), "http://news.example/story", cfg, resolver=resolver)
    assert ok.outcome == "ok" and ok.page.final_url == "http://news.example/story"
    assert PINNED == [(f"http://{PUBLIC}/story", "news.example")]
    bad = fetch_one(make_session(cfg), "http://rebind.example/", cfg, resolver=resolver)
    assert bad.outcome == "private_address" and "10.1.2.3" in bad.detail and not bad.network
    assert len(web.log) == n + 1


def test_transient_dns_failure_does_not_give_up_the_host(web):
    """Five EAI_AGAIN answers in a row (a resolver hiccup) used to trip the circuit breaker for every URL left."""
    PINNED.clear()
    cfg = _cfg(web, pin_dns=True, circuit_breaker=3, max_retries=0)
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    calls = []
    resolver = Resolver(lookup=_answers({"flaky.example": [again] * 5 + [PUBLIC]}, calls))
    links = [Link(f"http://flaky.example/{i}", "flaky.example", 3, (), 0) for i in range(8)]
    outcomes = [r.outcome for _, r in fetch_host(links, cfg, session=make_session(cfg), resolver=resolver)]
    assert outcomes == ["dns_error"] * 5 + ["ok"] * 3
    assert len(calls) == 6                              # transient answers are not cached; the good one is
    assert len(PINNED) == 3


def test_transient_dns_failure_is_retried_within_the_page(web):
    cfg = _cfg(web, pin_dns=True, max_retries=2)
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    resolver = Resolver(lookup=_answers({"hiccup.example": [again, again, PUBLIC]}))
    assert fetch_one(make_session(cfg), "http://hiccup.example/", cfg, resolver=resolver).outcome == "ok"


def test_a_lookup_that_hangs_is_a_bounded_wait(web):
    cfg = _cfg(web, pin_dns=True, dns_timeout=0.2, max_retries=0)
    resolver = Resolver(timeout=0.2, lookup=_answers({"slowdns.example": "hang"}))
    t0 = time.monotonic()
    result = fetch_one(make_session(cfg), "http://slowdns.example/", cfg, resolver=resolver)
    assert result.outcome == "dns_error" and "transient" in result.detail
    assert time.monotonic() - t0 < 0.8


def test_nxdomain_is_cached():
    calls = []
    nx = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    r = Resolver(lookup=_answers({"gone.example": nx}, calls))
    assert r.resolve("gone.example")[0] == [] and r.resolve("gone.example")[0] == []
    assert calls == ["gone.example"]


def _tls_server(tmp_path, name):
    """HTTPS on 127.0.0.1 with a self-signed certificate for `name`; logs (SNI, Host) per request."""
    import datetime
    import http.server
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    seen, sni = [], []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    ctx.sni_callback = lambda sock, server_name, _: sni.append(server_name)

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((sni[-1] if sni else None, self.headers.get("Host"), self.path))
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv, str(cert_path), seen


def test_pin_dns_over_tls_keeps_the_name_for_sni_and_certificate(tmp_path):
    srv, ca, seen = _tls_server(tmp_path, "tls.example")
    port = srv.server_address[1]
    try:
        cfg = FetchConfig(allow_private=True, pin_dns=True, robots=False, min_delay=0.0, read_timeout=2.0)
        resolver = Resolver(lookup=_answers({"tls.example": "127.0.0.1", "wrong.example": "127.0.0.1"}))
        session = make_session(cfg)
        session.verify = ca                                   # trust the test certificate (for tls.example only)
        ok = fetch_one(session, f"https://tls.example:{port}/a", cfg, resolver=resolver)
        assert ok.outcome == "ok", ok
        assert seen == [("tls.example", f"tls.example:{port}", "/a")]
        wrong = fetch_one(session, f"https://wrong.example:{port}/b", cfg, resolver=resolver)
        assert wrong.outcome == "tls_error", wrong             # checked against the name, not the address
        assert len(seen) == 1
    finally:
        srv.shutdown()
        srv.server_close()


def _request_heads(n: int):
    """A loopback server that records the head of each of `n` requests and answers 204: (url, heads, thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(10)
    heads = []

    def serve():
        for _ in range(n):
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                heads.append(data.split(b"\r\n\r\n")[0])
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        srv.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}", heads, t


@pytest.mark.parametrize("through_proxy", [False, True])
def test_the_fast_get_sends_what_requests_get_sends(through_proxy):
    """http.get_exact skips Session.request's per-request merging: the bytes on the wire must be the
    same as Session.get's, with a cookie of the redirect chain, a Host header (pin_dns) and through a proxy."""
    import requests
    from crawl.fetch.http import send
    base, heads, served = _request_heads(4)
    cfg = FetchConfig(http_proxy=base, allow_private=True) if through_proxy else FetchConfig(allow_private=True)
    session = make_session(cfg)
    jar = requests.cookies.RequestsCookieJar()
    jar.set("chain", "1", domain="news.example", path="/")
    url = "http://news.example/a%20b?q=1" if through_proxy else f"{base}/a%20b?q=1"
    extra = {"Host": "news.example"}
    with session.get(url, stream=True, allow_redirects=False, cookies=jar, timeout=(5, 5), headers=extra) as r:
        assert r.status_code == 204
    with send(session, url, jar, (5, 5), time.monotonic() + 10, extra) as r:
        assert r.status_code == 204
    with session.get(url, stream=True, allow_redirects=False, cookies=None, timeout=(5, 5)) as r:
        pass
    with send(session, url, None, (5, 5), time.monotonic() + 10) as r:
        pass
    served.join(10)
    assert len(heads) == 4 and heads[0] == heads[1] and heads[2] == heads[3]
    assert b"Cookie: chain=1" in heads[1] and b"Host: news.example" in heads[1]
