#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of an S3 endpoint (moto in the tests).

Requests pass through byte-for-byte (request line, headers in their order and case, Host as the
client sent it, streamed bodies in either framing), except that the proxy answers
`Expect: 100-continue` itself and does not forward that header. Tests program faults through
`POST /_faults`; see README.md beside this file for the interface.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from urllib.parse import parse_qsl, quote, unquote, urlsplit

COPY_CHUNK = 1 << 20
MAX_HEAD_LINE = 65536
MAX_HEADERS = 200
MAX_LOG = 2000

ACTIONS = ("503_slowdown", "500", "error", "reset_mid_body", "stall", "complete_200_error", "reset_mid_response")


class Abort(Exception):
    """This client connection is finished (closed on purpose or by the peer)."""


# ---------------------------------------------------------------------------------------------
# Faults and statistics.


class Fault:
    def __init__(self, spec: dict, ident: int) -> None:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        self.id = ident
        self.spec = spec
        match = spec.get("match") or {}
        if not isinstance(match, dict):
            raise ValueError("\"match\" must be an object")
        unknown = set(match) - {"method", "path", "path_contains", "query_contains", "query_absent", "query_params"}
        if unknown:
            raise ValueError(f"unknown match keys {sorted(unknown)}")
        self.method = match.get("method")
        self.path = match.get("path")
        self.path_contains = match.get("path_contains")
        self.query_contains = as_list(match.get("query_contains"))
        self.query_absent = as_list(match.get("query_absent"))
        self.query_params = match.get("query_params") or {}
        if not isinstance(self.query_params, dict):
            raise ValueError("\"query_params\" must be an object of parameter names to exact values")
        self.action = spec.get("action")
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {', '.join(ACTIONS)}")
        times = spec.get("times", 1)
        self.times = None if times in (None, -1, "all", "always") else int(times)
        self.skip = int(spec.get("skip", 0))
        self.seconds = float(spec.get("seconds", 5))
        self.bytes = spec.get("bytes")
        self.phase = spec.get("phase", "request")
        if self.phase not in ("request", "response"):
            raise ValueError("\"phase\" is \"request\" or \"response\"")
        self.forward = bool(spec.get("forward", False))
        self.status = int(spec.get("status", 500))
        self.code = str(spec.get("code", "InternalError"))
        self.message = str(spec.get("message", "We encountered an internal error. Please try again."))
        self.seen = 0
        self.fired = 0

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.method is not None and method.upper() != str(self.method).upper():
            return False
        if self.path is not None and path != self.path:
            return False
        if self.path_contains is not None and str(self.path_contains) not in path:
            return False
        if any(q not in query for q in self.query_contains):
            return False
        if any(q in query for q in self.query_absent):
            return False
        if self.query_params:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if any(params.get(name) != str(value) for name, value in self.query_params.items()):
                return False
        return True

    def describe(self) -> dict:
        return {**self.spec, "id": self.id, "seen": self.seen, "fired": self.fired}


def as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.next_fault_id = 1
        self.reset_stats()

    def reset_stats(self) -> None:
        with self.lock:
            self.requests = 0
            self.connections = 0
            # Requests between their head's arrival and their answer's head, and the most there were since the reset.
            self.in_flight = getattr(self, "in_flight", 0)
            self.max_in_flight = self.in_flight
            self.faults_fired = 0
            self.methods: dict[str, dict] = {}
            self.statuses: dict[str, int] = {}
            self.log: list[dict] = []
            self.signature_failures: list[dict] = []

    def add_fault(self, spec: dict) -> Fault:
        with self.lock:
            fault = Fault(spec, self.next_fault_id)
            self.next_fault_id += 1
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> int:
        with self.lock:
            n = len(self.faults)
            self.faults = []
            return n

    def take_fault(self, method: str, path: str, query: str) -> Fault | None:
        """The first programmed fault that fires for this request (its counters advance)."""
        with self.lock:
            for fault in self.faults:
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if not fault.matches(method, path, query):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                fault.fired += 1
                self.faults_fired += 1
                return fault
            return None

    def method_entry(self, method: str) -> dict:
        entry = self.methods.get(method)
        if entry is None:
            entry = {"requests": 0, "request_bytes": 0, "response_bytes": 0}
            self.methods[method] = entry
        return entry

    # Counters move before the bytes or the answer reach the client, so a client that has its answer
    # reads statistics that already include it.

    def begin(self, method: str, path: str, query: str, fault: Fault | None, amz: dict[str, str],
              expect: str | None = None, content_type: str | None = None) -> dict:
        record = {"method": method, "path": path, "query": query, "status": None,
                  "fault": fault.action if fault else None, "request_bytes": 0, "response_bytes": 0,
                  "time": time.time(), "amz": amz, "expect": expect, "content_type": content_type}
        with self.lock:
            self.requests += 1
            self.method_entry(method)["requests"] += 1
            if len(self.log) < MAX_LOG:
                self.log.append(record)
        return record

    def add(self, record: dict, field: str, n: int) -> None:
        with self.lock:
            record[field] += n
            self.method_entry(record["method"])[field] += n

    def set_status(self, record: dict, status) -> None:
        with self.lock:
            previous = record["status"]
            if previous is not None:
                self.statuses[str(previous)] -= 1
            record["status"] = status
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "connections": self.connections,
                "max_in_flight": self.max_in_flight,
                "faults_fired": self.faults_fired,
                "methods": json.loads(json.dumps(self.methods)),
                "statuses": dict(self.statuses),
                "request_bytes": sum(m["request_bytes"] for m in self.methods.values()),
                "response_bytes": sum(m["response_bytes"] for m in self.methods.values()),
                "log": [dict(r) for r in self.log],
                "faults": [f.describe() for f in self.faults],
                "signature_failures": [dict(f) for f in self.signature_failures],
            }


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 framing, raw.


class Head:
    """A request or response head as received: the first line and header lines, unchanged."""

    def __init__(self, first: bytes, lines: list[bytes]) -> None:
        self.first = first
        self.lines = lines
        self.headers: list[tuple[str, str]] = []
        for line in lines:
            name, _, value = line.decode("latin-1").partition(":")
            self.headers.append((name.strip().lower(), value.strip()))

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: str) -> list[str]:
        return [t.strip().lower() for key, value in self.headers if key == name for t in value.split(",")]

    def encode(self, drop: tuple[str, ...] = ()) -> bytes:
        kept = [line for line, (key, _) in zip(self.lines, self.headers) if key not in drop]
        return self.first + b"".join(kept) + b"\r\n"

    def body_framing(self) -> tuple[str, int]:
        if "chunked" in self.tokens("transfer-encoding"):
            return ("chunked", 0)
        length = self.get("content-length")
        if length is not None:
            return ("length", int(length))
        return ("none", 0)


def read_head(reader) -> Head | None:
    first = reader.readline(MAX_HEAD_LINE)
    while first in (b"\r\n", b"\n"):  # tolerate stray CRLF between requests (RFC 9112 2.2)
        first = reader.readline(MAX_HEAD_LINE)
    if not first:
        return None
    if not first.endswith(b"\n"):
        raise Abort()
    lines = []
    while True:
        line = reader.readline(MAX_HEAD_LINE)
        if not line or not line.endswith(b"\n"):
            raise Abort()
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise Abort()
    return Head(first, lines)


def copy_body(reader, framing: tuple[str, int], send, limit: int | None = None, payload=None) -> int:
    """Streams one message body from reader to send(bytes), raw (chunk framing included).

    Returns the payload bytes copied; payload(n) is told of each payload piece before it is sent.
    With `limit`, stops after that many payload bytes.
    """
    kind, length = framing
    copied = 0
    if kind == "length":
        remaining = length
        while remaining > 0:
            want = min(COPY_CHUNK, remaining)
            if limit is not None:
                want = min(want, limit - copied)
                if want <= 0:
                    return copied
            data = reader.read1(want) if hasattr(reader, "read1") else reader.read(want)
            if not data:
                raise Abort()
            if payload:
                payload(len(data))
            send(data)
            copied += len(data)
            remaining -= len(data)
        return copied
    if kind == "chunked":
        while True:
            size_line = reader.readline(MAX_HEAD_LINE)
            if not size_line.endswith(b"\n"):
                raise Abort()
            send(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    line = reader.readline(MAX_HEAD_LINE)
                    if not line.endswith(b"\n"):
                        raise Abort()
                    send(line)
                    if line in (b"\r\n", b"\n"):
                        return copied
            remaining = size
            while remaining > 0:
                want = min(COPY_CHUNK, remaining)
                if limit is not None:
                    want = min(want, limit - copied)
                    if want <= 0:
                        return copied
                data = reader.read1(want)
                if not data:
                    raise Abort()
                if payload:
                    payload(len(data))
                send(data)
                copied += len(data)
                remaining -= len(data)
            crlf = reader.readline(MAX_HEAD_LINE)
            send(crlf)
    if kind == "eof":
        while True:
            data = reader.read1(COPY_CHUNK)
            if not data:
                return copied
            if limit is not None and copied + len(data) > limit:
                data = data[: limit - copied]
            if payload:
                payload(len(data))
            send(data)
            copied += len(data)
            if limit is not None and copied >= limit:
                return copied
    return 0


def s3_error_xml(code: str, message: str, resource: str) -> bytes:
    request_id = uuid.uuid4().hex[:16].upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{xml_escape(resource)}</Resource>"
        f"<RequestId>{request_id}</RequestId><HostId>squall-fault-proxy</HostId></Error>"
    ).encode()


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def simple_response(status: int, reason: str, body: bytes, content_type: str, close: bool) -> bytes:
    head = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        f"x-amz-request-id: {uuid.uuid4().hex[:16].upper()}",
        "Server: SquallS3FaultProxy",
    ]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# ---------------------------------------------------------------------------------------------
# SigV4 as S3 checks it (moto checks no signature). From the request as it arrived on the wire, the
# canonical request is rebuilt the way S3 does: the path decoded once and encoded again (S3 does not
# squash dot segments), the query's parameters decoded, encoded and sorted, the signed headers with
# their values trimmed. A client whose own canonical form differs gets S3's answer: 403.


def aws_encode(text: str, safe: str) -> str:
    """URI-encodes as SigV4 does: every byte but A-Z a-z 0-9 - . _ ~ (and `safe`), in upper-case hex."""
    return quote(text, safe=safe + "-._~")


def canonical_request(method: str, raw_target: str, headers: list[tuple[str, str]], signed: list[str],
                      payload: str) -> str:
    split = urlsplit(raw_target)
    path = aws_encode(unquote(split.path), safe="/") or "/"
    pairs = []
    for item in split.query.split("&") if split.query else []:
        name, _, value = item.partition("=")
        pairs.append((aws_encode(unquote(name), safe=""), aws_encode(unquote(value), safe="")))
    query = "&".join(f"{name}={value}" for name, value in sorted(pairs))
    lines = []
    for name in signed:
        values = [" ".join(value.split()) for key, value in headers if key == name]
        lines.append(f"{name}:{','.join(values)}\n")
    return "\n".join([method, path, query, "".join(lines), ";".join(signed), payload])


# S3 refuses a request whose x-amz-date is more than 15 minutes from its own clock.
ALLOWED_SKEW_SECONDS = 15 * 60


def sigv4_verdict(method: str, raw_target: str, headers: list[tuple[str, str]], secret: str,
                  expected_region: str | None = None, now: float | None = None) -> tuple[str, str]:
    """("ok" | "missing" | "malformed" | "wrong-region" | "skewed" | "unsigned-headers" | "signed-absent"
    | "mismatch", and the canonical request S3 would sign, when it got that far; for "wrong-region" the
    region the request named, for "skewed" its date). With `expected_region`, a
    credential scoped to another region is refused; with `now` (seconds since the epoch), a request
    dated more than 15 minutes away from it. The body's hash is checked as it passes
    (`payload-mismatch` in the statistics)."""
    found = dict(headers)
    authorization = found.get("authorization")
    if not authorization:
        return "missing", ""
    scheme, _, rest = authorization.partition(" ")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    try:
        credential = fields["Credential"].split("/")
        access_key, date, region, service, terminator = credential
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        return "malformed", ""
    amz_date = found.get("x-amz-date", "")
    payload = found.get("x-amz-content-sha256")
    if (scheme != "AWS4-HMAC-SHA256" or service != "s3" or terminator != "aws4_request" or "host" not in signed
            or not amz_date.startswith(date) or payload is None or signed != sorted(signed)):
        return "malformed", ""
    if expected_region is not None and region != expected_region:
        return "wrong-region", region  # S3: 400 AuthorizationHeaderMalformed, "the region ... is wrong"
    if now is not None:
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return "malformed", ""
        if abs(now - signed_at) > ALLOWED_SKEW_SECONDS:
            return "skewed", amz_date  # S3: 403 RequestTimeTooSkewed
    if any(name.startswith("x-amz-") and name not in signed for name, _ in headers):
        return "unsigned-headers", ""  # S3: "There were headers present in the request which were not signed"
    if any(name not in found for name in signed):
        return "signed-absent", ""  # AWS: "'expect' is named as a SignedHeader, but it does not exist in the HTTP request"
    canonical = canonical_request(method, raw_target, headers, signed, payload)
    scope = f"{date}/{region}/{service}/{terminator}"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for step in (date, region, service, terminator):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return ("ok" if hmac.compare_digest(expected, signature) else "mismatch"), canonical


# ---------------------------------------------------------------------------------------------
# The proxy connection.


class ProxyHandler(socketserver.BaseRequestHandler):
    state: State
    upstream: tuple[str, int]
    verbose: bool
    secret: str | None
    region: str | None

    def setup(self) -> None:
        self.client = self.request
        self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.client.makefile("rb", buffering=COPY_CHUNK)
        self.up_sock: socket.socket | None = None
        self.up_reader = None
        self.counted = False  # the current request is in `in_flight`
        with self.state.lock:
            self.state.connections += 1

    def finish(self) -> None:
        self.close_upstream()
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001
            pass

    def log(self, text: str) -> None:
        if self.verbose:
            sys.stderr.write(f"proxy {self.client_address[0]}:{self.client_address[1]} {text}\n")

    def handle(self) -> None:
        try:
            while self.handle_one():
                pass
        except (Abort, BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            pass
        except OSError as error:
            self.log(f"connection error: {error}")

    # -- connections -----------------------------------------------------------------------------

    def connect_upstream(self) -> None:
        if self.up_sock is not None and not self.upstream_idle_and_open():
            self.close_upstream()  # the upstream closed its idle keep-alive connection: a request sent there is lost
        if self.up_sock is None:
            self.up_sock = socket.create_connection(self.upstream, timeout=300)
            self.up_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.up_reader = self.up_sock.makefile("rb", buffering=COPY_CHUNK)

    def upstream_idle_and_open(self) -> bool:
        timeout = self.up_sock.gettimeout()
        self.up_sock.settimeout(0)  # with a timeout set, Python would wait for data even with MSG_DONTWAIT
        try:
            self.up_sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # nothing to read: open and idle
        except OSError:
            return False
        finally:
            self.up_sock.settimeout(timeout)
        return False  # end-of-file, or stray bytes that belong to no request: start afresh

    def close_upstream(self) -> None:
        if self.up_sock is not None:
            try:
                self.up_reader.close()
                self.up_sock.close()
            except OSError:
                pass
        self.up_sock = None
        self.up_reader = None

    def reset_client(self) -> None:
        """Closes the client connection with a TCP RST."""
        try:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            self.client.close()
        except OSError:
            pass
        raise Abort()

    def send_client(self, data: bytes) -> None:
        if not data.startswith(b"HTTP/1.1 1"):
            self.answered()  # a final answer's head: the client may send its next request from here on
        self.client.sendall(data)

    def answered(self) -> None:
        """Ends the current request's place in `in_flight` (once)."""
        if self.counted:
            self.counted = False
            with self.state.lock:
                self.state.in_flight -= 1

    # -- one request -------------------------------------------------------------------------------

    def handle_one(self) -> bool:
        head = read_head(self.reader)
        if head is None:
            return False
        parts = head.first.decode("latin-1").split()
        if len(parts) != 3:
            self.send_client(simple_response(400, "Bad Request", b"malformed request line\n", "text/plain", True))
            return False
        method, target, version = parts
        split = urlsplit(target)
        path, query = split.path, split.query
        client_close = "close" in head.tokens("connection") or (
            version == "HTTP/1.0" and "keep-alive" not in head.tokens("connection"))
        framing = head.body_framing()
        expects_continue = "100-continue" in head.tokens("expect")

        if path.startswith("/_") and path.split("/")[1] in ("_faults", "_stats", "_reset", "_health"):
            body = bytearray()
            if expects_continue:
                self.send_client(b"HTTP/1.1 100 Continue\r\n\r\n")
            copy_body(self.reader, framing, body.extend)
            self.control(method, path, bytes(body), client_close)
            return not client_close

        if self.secret is not None:
            verdict, canonical = sigv4_verdict(method, target, head.headers, self.secret, self.region, time.time())
            if verdict != "ok":
                return self.refuse_signature(head, method, target, framing, expects_continue, client_close,
                                             verdict, canonical)
        fault = self.state.take_fault(method, path, query)
        if fault is not None:
            self.log(f"{method} {target}: fault {fault.action}")
        # The request's x-amz-* headers (checksums, payload hash), for tests; never the session token.
        amz = {name: value for name, value in head.headers
               if name.startswith("x-amz-") and name != "x-amz-security-token"}
        record = self.state.begin(method, path, query, fault, amz, head.get("expect"), head.get("content-type"))
        # In flight from its head's arrival to its answer's head: the client cannot have the answer earlier.
        with self.state.lock:
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        self.counted = True
        try:
            keep = self.exchange(head, method, path, framing, expects_continue, client_close, fault, record)
        finally:
            self.answered()
        return keep and not client_close

    def refuse_signature(self, head: Head, method: str, target: str, framing, expects_continue: bool,
                         client_close: bool, verdict: str, canonical: str) -> bool:
        """Answers as S3 does for a bad signature (403; 400 for a credential of another region); the
        request is logged, never forwarded."""
        record = self.state.begin(method, urlsplit(target).path, urlsplit(target).query, None, {})
        with self.state.lock:
            self.state.signature_failures.append({"method": method, "target": target, "verdict": verdict,
                                                  "canonical_request": canonical})
        if not expects_continue:
            copy_body(self.reader, framing, lambda data: None)
        status, reason = 403, "Forbidden"
        if verdict == "mismatch":
            code, message = "SignatureDoesNotMatch", ("The request signature we calculated does not match the "
                                                      "signature you provided.")
        elif verdict == "wrong-region":
            status, reason = 400, "Bad Request"
            code, message = "AuthorizationHeaderMalformed", (f"The authorization header is malformed; the region "
                                                             f"'{canonical}' is wrong; expecting '{self.region}'")
        elif verdict == "skewed":
            code, message = "RequestTimeTooSkewed", ("The difference between the request time and the current "
                                                     "time is too large.")
        else:
            code, message = "AccessDenied", f"SigV4 authorization {verdict}"
        body = s3_error_xml(code, message, target)
        self.state.set_status(record, status)
        self.send_client(simple_response(status, reason, body, "application/xml", expects_continue or client_close))
        return not (expects_continue or client_close)

    def exchange(self, head: Head, method: str, path: str, framing, expects_continue: bool, client_close: bool,
                 fault: Fault | None, record: dict) -> bool:
        """Serves one request (faulted or forwarded); returns whether the client connection stays open."""
        def count_request(n: int) -> None:
            self.state.add(record, "request_bytes", n)

        def read_body(limit: int | None = None) -> None:
            copy_body(self.reader, framing, lambda data: None, limit, count_request)

        def reply_error(status: int, reason: str, code: str, message: str) -> bool:
            # With Expect: 100-continue and no 100 sent, the body never comes: answer and close, as S3 may.
            if not expects_continue:
                read_body()
            body = s3_error_xml(code, message, path)
            self.state.set_status(record, status)
            self.state.add(record, "response_bytes", len(body))
            self.send_client(simple_response(status, reason, body, "application/xml", expects_continue))
            return not expects_continue

        if fault is not None:
            action = fault.action
            if action == "503_slowdown":
                return reply_error(503, "Slow Down", "SlowDown", "Please reduce your request rate.")
            if action == "500":
                return reply_error(500, "Internal Server Error", "InternalError",
                                   "We encountered an internal error. Please try again.")
            if action == "error":
                return reply_error(fault.status, "Error", fault.code, fault.message)
            if action == "reset_mid_body":
                if expects_continue:
                    self.send_client(b"HTTP/1.1 100 Continue\r\n\r\n")
                limit = fault.bytes
                if limit is None:
                    limit = framing[1] // 2 if framing[0] == "length" else 65536
                try:
                    read_body(int(limit))
                except Abort:
                    pass
                self.state.set_status(record, "reset")
                self.reset_client()
            if action == "stall" and fault.phase == "request":
                time.sleep(fault.seconds)
            if action == "complete_200_error" and not fault.forward:
                if expects_continue:
                    self.send_client(b"HTTP/1.1 100 Continue\r\n\r\n")
                read_body()
                return self.reply_200_error(path, record)

        # Forward.
        if expects_continue:
            self.send_client(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            self.connect_upstream()
            self.up_sock.sendall(head.encode(drop=("expect",)))
        except OSError as error:
            self.close_upstream()
            read_body()
            body = f"s3_fault_proxy: upstream {self.upstream[0]}:{self.upstream[1]} unreachable: {error}\n".encode()
            self.state.set_status(record, 502)
            self.send_client(simple_response(502, "Bad Gateway", body, "text/plain", False))
            return True
        # With --verify-sigv4, the body is hashed on its way and checked against the SHA-256 it was
        # signed with, as S3 does (XAmzContentSHA256Mismatch); UNSIGNED-PAYLOAD is not checked.
        declared = head.get("x-amz-content-sha256") or ""
        hasher = None
        if self.secret is not None and framing[0] in ("length", "none") and re.fullmatch("[0-9a-f]{64}", declared):
            hasher = hashlib.sha256()

        def forward(data: bytes) -> None:
            if hasher is not None:
                hasher.update(data)
            self.up_sock.sendall(data)

        try:
            copy_body(self.reader, framing, forward, None, count_request)
        except (Abort, OSError):
            self.close_upstream()  # the upstream saw half a request: that connection is unusable
            raise Abort()

        if hasher is not None and hasher.hexdigest() != declared:
            with self.state.lock:
                self.state.signature_failures.append({
                    "method": method, "target": head.first.decode("latin-1").split()[1],
                    "verdict": "payload-mismatch", "canonical_request": ""})
        response = self.read_upstream_response(method)
        if response is None:
            self.close_upstream()
            body = b"s3_fault_proxy: upstream closed the connection without a response\n"
            self.state.set_status(record, 502)
            self.send_client(simple_response(502, "Bad Gateway", body, "text/plain", True))
            return False
        status = int(response.first.split()[1])
        self.state.set_status(record, status)
        resp_framing = response.body_framing()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            resp_framing = ("none", 0)
        elif resp_framing[0] == "none":
            resp_framing = ("eof", 0)
        upstream_close = ("close" in response.tokens("connection") or resp_framing[0] == "eof"
                          or response.first.startswith(b"HTTP/1.0"))

        if fault is not None and fault.action == "complete_200_error":  # forward: true
            copy_body(self.up_reader, resp_framing, lambda data: None)
            if upstream_close:
                self.close_upstream()
            return self.reply_200_error(path, record)
        if fault is not None and fault.action == "stall" and fault.phase == "response":
            time.sleep(fault.seconds)

        self.send_client(response.encode())
        limit = None
        if fault is not None and fault.action == "reset_mid_response":
            limit = int(fault.bytes) if fault.bytes is not None else max(0, resp_framing[1] // 2)

        def count_response(n: int) -> None:
            self.state.add(record, "response_bytes", n)

        if limit is not None:
            copy_body(self.up_reader, resp_framing, self.client.sendall, limit, count_response)
            self.close_upstream()
            self.state.set_status(record, "reset")
            self.reset_client()
        copy_body(self.up_reader, resp_framing, self.client.sendall, None, count_response)
        if upstream_close:
            self.close_upstream()
            if resp_framing[0] == "eof":
                return False
        return "close" not in response.tokens("connection")

    def read_upstream_response(self, method: str) -> Head | None:
        while True:
            try:
                response = read_head(self.up_reader)
            except Abort:
                return None
            if response is None:
                return None
            status = int(response.first.split()[1])
            if 100 <= status < 200 and status != 101:
                continue  # interim responses: the client already had our own 100 Continue
            return response

    def reply_200_error(self, path: str, record: dict) -> bool:
        # S3 sends 200 at once, then whitespace while it works, then the result: here an <Error>.
        xml = s3_error_xml("InternalError", "We encountered an internal error. Please try again.", path)
        declaration, _, rest = xml.partition(b"\n")
        body = declaration + b"\n" + b" " * 64 + b"\n" + rest
        self.state.set_status(record, 200)
        self.state.add(record, "response_bytes", len(body))
        self.send_client(simple_response(200, "OK", body, "application/xml", False))
        return True

    # -- control API ---------------------------------------------------------------------------------

    def control(self, method: str, path: str, body: bytes, close: bool) -> None:
        def reply(status: int, value, reason: str = "OK") -> None:
            data = json.dumps(value, indent=1, sort_keys=True).encode()
            self.send_client(simple_response(status, reason, data, "application/json", close))

        if path == "/_health":
            reply(200, {"ok": True})
        elif path == "/_stats" and method == "GET":
            reply(200, self.state.snapshot())
        elif path == "/_reset" and method == "POST":
            self.state.reset_stats()
            reply(200, {"reset": True})
        elif path == "/_faults" and method == "GET":
            reply(200, self.state.snapshot()["faults"])
        elif path == "/_faults" and method == "DELETE":
            reply(200, {"cleared": self.state.clear_faults()})
        elif path == "/_faults" and method == "POST":
            try:
                spec = json.loads(body or b"null")
                specs = spec if isinstance(spec, list) else [spec]
                added = [self.state.add_fault(s).describe() for s in specs]
            except (ValueError, TypeError) as error:
                reply(400, {"error": f"POST /_faults: {error}"}, "Bad Request")
                return
            reply(200, added if isinstance(spec, list) else added[0])
        else:
            reply(404, {"error": f"{method} {path}: control endpoints are GET /_stats, POST /_reset, "
                                 "GET|POST|DELETE /_faults"}, "Not Found")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def watch_stdin() -> None:
    """Exits when standard input closes: the launching test process is gone, so is this fixture."""
    def run() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)
    threading.Thread(target=run, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", default="http://127.0.0.1:29000", help="the S3 endpoint to forward to")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--verbose", action="store_true", help="log faults and errors to stderr")
    parser.add_argument("--verify-sigv4", action="store_true",
                        help="check every request's SigV4 signature and date as S3 does, with the secret key in "
                             "$AWS_SECRET_ACCESS_KEY, and answer 403 SignatureDoesNotMatch where it fails")
    parser.add_argument("--region", help="with --verify-sigv4, the region S3 expects in each credential "
                                          "(default: any); another is refused as S3 does, 400")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit when standard input closes (the launcher's lifeline)")
    args = parser.parse_args(argv)
    # A parent may spawn us with signals blocked (Foundation's Process from a dispatch thread does):
    # unblock them so SIGTERM stops the fixture.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    upstream = urlsplit(args.upstream)
    if upstream.scheme != "http" or not upstream.hostname:
        parser.error(f"--upstream {args.upstream!r}: an http://host:port URL is needed (no TLS)")
    secret = None
    if args.verify_sigv4:
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not secret:
            parser.error("--verify-sigv4 needs the secret key in $AWS_SECRET_ACCESS_KEY")
    handler = type("BoundProxyHandler", (ProxyHandler,), {
        "state": State(), "upstream": (upstream.hostname, upstream.port or 80), "verbose": args.verbose,
        "secret": secret, "region": args.region if args.verify_sigv4 else None})
    server = Server((args.host, args.port), handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    if args.exit_on_stdin_eof:
        watch_stdin()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
