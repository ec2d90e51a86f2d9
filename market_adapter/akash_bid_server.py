"""The agent's bid endpoint: the Akash provider's bid-price script asks it for each order's price.

The provider runs its bid-price script in its own container (bash, curl, jq and bc; no Python,
nothing of sunrig's), so the script only forwards the order here:
  POST /akash/v1/price, `Authorization: Bearer <token>`, the order JSON as the body (1 MiB most)
  200: one line, the price per block for the whole group, a plain decimal
  422: one line saying why the rig declines the order (among them: beyond Akash's share of the
       plan, akash_bid.py AkashShare)
  401 without the right token; 404 elsewhere; 405 for another method; 411/413 for a body
  without a length or longer than an order can be.
It is the standard library's ThreadingHTTPServer, apart from the dashboard: small, and listening
no wider than the provider's pod needs. `bid_script` prints the script that talks to it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from market_adapter.akash_order import MAX_ORDER_BYTES, Decline

log = logging.getLogger(__name__)

PRICE_PATH = "/akash/v1/price"
# what a bearer token may hold (RFC 6750's b64token): nothing a header or a shell could misread
BEARER = re.compile(r"[A-Za-z0-9._~+/-]{32,512}=*")
READ_TIMEOUT_S = 5.0  # a client that sends its body slower than this is dropped
LOG_EVERY_S = 60.0  # one log line per reason per minute at most
MAX_REASONS = 64  # reasons remembered for that; beyond them a decline is not logged


def parse_listen(text: str, allow_any: bool = False) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for IPv6) as (host, port); ValueError says what is wrong."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", text)
    if not m:
        raise ValueError(f"{text[:60]!r} is not host:port with an IP address, such as "
                         "'10.0.0.5:8787' or '[fd00::5]:8787'")
    host, port = (m[1], m[2]) if m[1] else (m[3], m[4])
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is not from 1 to 65535")
    return check_host(host, allow_any), int(port)


def check_host(host: str, allow_any: bool = False) -> str:
    """The address to listen on: an IP address, and not the unspecified one (0.0.0.0, ::)
    unless `allow_any`: the endpoint listens no wider than the provider's pod needs."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host[:60]!r} is not an IP address") from None
    if address.is_unspecified and not allow_any:
        raise ValueError(f"{host} listens on every interface; give the address the provider's "
                         "pod reaches (the node's), or set bid_listen_any = true")
    return str(address)


def check_token(token: str) -> str:
    """The bid token, or ValueError: 32 to 512 characters of letters, digits and `._~+/-`, so
    it goes into a header and a shell script as it is."""
    if not BEARER.fullmatch(token):
        raise ValueError(f"a bid token is 32 to 512 characters of letters, digits and ._~+/- "
                         f"(got {len(token)} characters, or others)")
    return token


def ensure_token_file(path: str | Path) -> None:
    """Create the token file (0600, a new random token) unless it is there; never replace one:
    the provider's installed script holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    log.info("akash bid: created a new bid token in %s", path)


def check_token_file_mode(path: str | Path) -> None:
    """ValueError when others than its owner may read the token file."""
    mode = Path(path).stat().st_mode
    if mode & 0o077:
        raise ValueError(f"{path} may be read by others (mode {mode & 0o777:o}); "
                         f"chmod 600 {path}")


class _Throttle:
    """Says whether to log a reason now: once per reason per minute, for a bounded number of
    reasons, so a flood of declines (or of bad tokens) cannot flood the log."""

    def __init__(self, every_s: float = LOG_EVERY_S, most: int = MAX_REASONS):
        self.every_s, self.most = every_s, most
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, reason: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self.every_s:
                return False
            if last is None and len(self._last) >= self.most:
                self._last = {r: t for r, t in self._last.items() if now - t < self.every_s}
                if len(self._last) >= self.most:
                    return False
            self._last[reason] = now
            return True


def _reason_key(message: str) -> str:
    """What makes two declines the same reason: the text before the first colon (a field path,
    'offer is stale'), digits aside (how many GPUs)."""
    return re.sub(r"\d+", "N", message.split(":", 1)[0])[:100]


class BidServer:
    """The bid endpoint. `price(body)` prices one order's raw JSON or raises Decline."""

    def __init__(self, host: str, port: int, token: str, price: Callable[[bytes], str],
                 allow_any: bool = False):
        self.host = check_host(host, allow_any)
        self._token = check_token(token).encode()
        self._price = price
        self._throttle = _Throttle()
        handler = type("Handler", (_Handler,), {"endpoint": self})
        server_class = _V6Server if ":" in self.host else ThreadingHTTPServer
        self._httpd = server_class((self.host, port), handler)
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{_joined(self.host, self.port)}{PRICE_PATH}"

    def start(self) -> BidServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="akash-bid",
                                        daemon=True)
        self._thread.start()
        log.info("akash bid endpoint on %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        # compare_digest takes as long whatever matches: the token cannot be guessed by timing
        return scheme == "Bearer" and hmac.compare_digest(given.encode(), self._token)

    def answer(self, body: bytes) -> tuple[int, str]:
        try:
            return 200, self._price(body)
        except Decline as exc:
            self.note(f"declined: {exc}", _reason_key(str(exc)))
            return 422, _one_line(str(exc))
        except Exception as exc:  # noqa: BLE001 - the script gets one line, the log the cause
            log.exception("akash bid: pricing failed")
            return 500, f"internal error: {type(exc).__name__}"

    def note(self, message: str, reason: str) -> None:
        if self._throttle.due(reason):
            log.info("akash bid: %s", _one_line(message))


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    endpoint: BidServer
    protocol_version = "HTTP/1.1"  # answers curl's Expect: 100-continue at once
    timeout = READ_TIMEOUT_S
    server_version = "sunrig-bid"
    sys_version = ""

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        if self.path != PRICE_PATH:
            self._send(404, f"no such endpoint; the price is POST {PRICE_PATH}")
            return
        if not self.endpoint.authorized(self.headers.get("Authorization")):
            self.endpoint.note(f"a request from {self.client_address[0]} without the right "
                               "bid token", "token")
            self._send(401, "the bid token is missing or wrong", {"WWW-Authenticate": "Bearer"})
            return
        body = self._body()
        if body is not None:
            self._send(*self.endpoint.answer(body))

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or self.headers.get("Transfer-Encoding"):
            self._send(411, "the order needs a Content-Length")
            return None
        if not length.isdigit() or len(length) > 15:
            self._send(400, "Content-Length is not a whole number")
            return None
        if int(length) > MAX_ORDER_BYTES:
            self._send(413, f"an order is at most {MAX_ORDER_BYTES} bytes, this one "
                            f"{int(length)}")
            return None
        try:
            return self.rfile.read(int(length))
        except OSError:  # the client went away, or was too slow
            self.close_connection = True
            return None

    def _refuse_method(self) -> None:
        self._send(405, f"the price is POST {PRICE_PATH}", {"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse_method  # noqa: N815

    def _send(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = (text + "\n").encode()
        self.send_response(status)
        for name, value in {"Content-Type": "text/plain; charset=utf-8",
                            "Content-Length": str(len(data)), "Connection": "close",
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: declines are logged by reason, each request is not."""


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


# The provider runs this with one order on stdin and its whole environment (bidengine/
# shellscript.go): only bash and curl, which its image has. Stdout is the price or nothing; a
# failure is one line on stderr and exit 1, which the provider takes as no bid. curl gives up
# after 2 s, well inside the provider's 10 s. The token goes to curl through a file descriptor,
# never on its command line, where every process in the container could read it.
BID_SCRIPT = r"""#!/bin/bash
# The Akash provider's bid-price script for a rig run by sunrig: the agent prices each order.
# Written by `sunrig akash bid-script`. It holds the agent's bid token: keep it secret.
set -u
url='@URL@'
token='@TOKEN@'
reply=$(curl --silent --noproxy '*' --max-time 2 --data-binary @- \
  -H @<(printf 'Authorization: Bearer %s\n' "$token") \
  -H 'Content-Type: application/json' -H 'Expect:' \
  --write-out '\n%{http_code} %{exitcode} %{errormsg}' -- "$url" 2>/dev/null)
last=${reply##*$'\n'}
code=${last%% *}
rest=${last#* }
failed=${rest%% *}
body=${reply%$'\n'*}
body=${body%%[$'\r\n']*}
body=${body//[^[:print:]]/?}
if [[ $failed != 0 ]]; then
  printf 'decline: the sunrig agent at %s did not answer: %s\n' "$url" "${rest#* }" >&2
  exit 1
fi
if [[ $code == 200 && $body =~ ^[0-9]{1,30}(\.[0-9]{1,18})?$ ]]; then
  printf '%s\n' "$body"
  exit 0
fi
if [[ $code == 200 ]]; then
  body="the agent's answer is not a plain decimal: ${body:0:40}"
fi
printf 'decline (%s, HTTP %s): %s\n' "${AKASH_OWNER:-?}" "$code" "${body:0:500}" >&2
exit 1
"""


def bid_script(url: str, token: str) -> str:
    """The bash script to install as the chart's `bidpricescript`, asking `url` with `token`."""
    if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9/._-]*)?", url):
        raise ValueError(f"{url[:80]!r} is not an http URL of an address and path")
    return BID_SCRIPT.replace("@URL@", url).replace("@TOKEN@", check_token(token))
