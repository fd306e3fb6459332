#!/usr/bin/env python3
"""A deterministic HTTP/1.1 source for the transfer engine's tests and benchmark.

Serves generated objects without storing them (`/gen/<size>/<seed>`), with Range, validators and
fault injection driven by query parameters, so a test can describe the misbehaving source it needs
in the URL it hands to the engine. The interface is documented in README.md beside this file.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

BLOCK = 1 << 20  # the generator repeats a 1 MiB block per seed, rotated and stamped per block
HEADER = 16  # each block starts with seed and block index, 8 bytes big-endian each
ROTATION_MULTIPLIER = 2654435761  # odd, so block index -> rotation is a bijection modulo 2**20
ROTATION_OFFSET = 12345
LAST_MODIFIED_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
MAX_LOGGED_RANGES = 200


# ---------------------------------------------------------------------------------------------
# The generator: any byte at any offset is computable, and streaming costs no hashing.


class Generator:
    """Content of `/gen/<size>/<seed>`: byte `o` is `block(seed, o // BLOCK)[o % BLOCK]`.

    base(seed) = SHA256(seed_be64 || c_be64) for c in 0..32767, concatenated (1 MiB).
    block(seed, i) = (base rotated left by r_i) with its first 16 bytes replaced by seed_be64 || i_be64,
    where r_i = (i * 2654435761 + 12345) mod 2**20. Blocks differ from each other, so a part uploaded at
    the wrong offset changes the object's hash.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._doubled: dict[int, bytes] = {}

    def _base_doubled(self, seed: int) -> memoryview:
        with self._lock:
            doubled = self._doubled.get(seed)
        if doubled is None:
            prefix = struct.pack(">Q", seed)
            base = b"".join(hashlib.sha256(prefix + struct.pack(">Q", c)).digest() for c in range(BLOCK // 32))
            doubled = base + base
            with self._lock:
                if len(self._doubled) >= 64:
                    self._doubled.pop(next(iter(self._doubled)))
                self._doubled[seed] = doubled
        return memoryview(doubled)

    def pieces(self, seed: int, offset: int, length: int):
        """Yields the bytes of [offset, offset+length) as memoryviews of at most 1 MiB, without copying."""
        doubled = self._base_doubled(seed)
        end = offset + length
        while offset < end:
            index, within = divmod(offset, BLOCK)
            stop = min(BLOCK, within + (end - offset))
            rotation = (index * ROTATION_MULTIPLIER + ROTATION_OFFSET) % BLOCK
            if within < HEADER:
                header = struct.pack(">QQ", seed, index)
                yield memoryview(header)[within : min(HEADER, stop)]
                within = min(HEADER, stop)
            if within < stop:
                yield doubled[rotation + within : rotation + stop]
            offset = index * BLOCK + stop

    def read(self, seed: int, offset: int, length: int) -> bytes:
        return b"".join(bytes(p) for p in self.pieces(seed, offset, length))


GENERATOR = Generator()


def generate(seed: int, offset: int, length: int) -> bytes:
    """The bytes [offset, offset+length) of every object generated with `seed` (whatever its size)."""
    return GENERATOR.read(seed, offset, length)


# ---------------------------------------------------------------------------------------------
# Shared state: counters, fault counters, replacements.


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.requests = 0
            self.connections = 0
            self.paths: dict[str, dict] = {}
            self.fault_counters: dict[str, int] = {}
            self.replacements: dict[str, int] = {}
            self.sha_cache: dict[tuple[int, int], str] = getattr(self, "sha_cache", {})

    def path_entry(self, path: str) -> dict:
        entry = self.paths.get(path)
        if entry is None:
            entry = {"requests": 0, "methods": {}, "statuses": {}, "bytes": 0, "ranges": [], "faults": 0}
            self.paths[path] = entry
        return entry

    def count_request(self, path: str, method: str, status: int, range_header: str | None, faulted: bool) -> None:
        with self.lock:
            self.requests += 1
            entry = self.path_entry(path)
            entry["requests"] += 1
            entry["methods"][method] = entry["methods"].get(method, 0) + 1
            entry["statuses"][str(status)] = entry["statuses"].get(str(status), 0) + 1
            if faulted:
                entry["faults"] += 1
            if range_header is not None and len(entry["ranges"]) < MAX_LOGGED_RANGES:
                entry["ranges"].append(range_header)

    def count_bytes(self, path: str, n: int) -> None:
        with self.lock:
            self.bytes_sent += n
            self.path_entry(path)["bytes"] += n

    def next_fault_count(self, key: str) -> int:
        """1 for the first request with this key, 2 for the second, …"""
        with self.lock:
            count = self.fault_counters.get(key, 0) + 1
            self.fault_counters[key] = count
            return count

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "bytes_sent": self.bytes_sent,
                "requests": self.requests,
                "connections": self.connections,
                "paths": json.loads(json.dumps(self.paths)),
                "fault_counters": dict(self.fault_counters),
                "replacements": dict(self.replacements),
            }


class Abort(Exception):
    """The handler closed the connection on purpose (a fault): nothing more to write."""


# ---------------------------------------------------------------------------------------------
# Requests.


class Options:
    """The fault and behaviour parameters of one request's query string."""


    def __init__(self, query: str) -> None:
        self.raw = dict(parse_qsl(query, keep_blank_values=True))
        self.errors: list[str] = []

        def number(name: str, parse=int):
            value = self.raw.get(name)
            if value is None:
                return None
            try:
                return parse(value)
            except ValueError:
                self.errors.append(f"query parameter {name}={value!r} is not a number")
                return None

        times = self.raw.get("times")
        if times in ("all", "always", "-1"):
            self.times = None
        else:
            self.times = number("times")
            if self.times is None and "status" in self.raw and "fail" not in self.raw:
                self.times = None  # status=… is permanent unless times is given
            elif self.times is None:
                self.times = 1
        self.fail = number("fail")
        self.status = number("status")
        self.reset_at = number("reset_at")
        self.stall_at = number("stall_at")
        self.stall_s = number("stall_s", float)
        self.truncate_at = number("truncate_at")
        self.wrong_length = number("wrong_length")
        self.slow_bps = number("slow_bps")
        self.head_status = number("head_status")
        self.retry_after = self.raw.get("retry_after")
        self.norange = self.raw.get("norange") in ("1", "true", "yes")
        self.no_validators = self.raw.get("no_validators") in ("1", "true", "yes")
        self.etag = self.raw.get("etag")
        self.last_modified = number("last_modified")
        if self.stall_at is not None and self.stall_s is None:
            self.stall_s = 5.0

    @property
    def has_faults(self) -> bool:
        return any(
            v is not None
            for v in (self.fail, self.status, self.reset_at, self.stall_at, self.truncate_at, self.wrong_length)
        )


GEN_RE = re.compile(r"^/(gen|chunked)/(\d+)/(\d+)$")
HOPS_RE = re.compile(r"^/hops/(\d+)(/.*)$")
SHA_RE = re.compile(r"^/_sha256/(\d+)/(\d+)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SquallSourceFixture/1"
    state: State
    root: str | None
    verbose: bool

    # -- plumbing ------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.state.lock:
            self.state.connections += 1

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        if self.verbose:
            sys.stderr.write("source %s - %s\n" % (self.address_string(), format % args))

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except Abort:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def abort_with_reset(self) -> None:
        """Closes the connection with a TCP RST (SO_LINGER 0), as a crashed peer or middlebox would."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._close_now()

    def abort_with_close(self) -> None:
        """Closes the connection cleanly (FIN): the client sees a short body."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._close_now()

    def _close_now(self) -> None:
        # The socket's file objects hold references to it: close them first so close() really closes.
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except Exception:  # noqa: BLE001 (already broken is fine)
                pass
        try:
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True
        raise Abort()

    def discard_request_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_simple(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                    extra: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def send_json(self, value, status: int = 200) -> None:
        self.send_simple(status, json.dumps(value, indent=1, sort_keys=True).encode(), "application/json")

    # -- methods -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.dispatch(head=False)

    def do_HEAD(self) -> None:
        self.dispatch(head=True)

    def do_POST(self) -> None:
        body = self.discard_request_body()
        path = urlsplit(self.path).path
        if path == "/_reset":
            self.state.reset()
            self.send_json({"reset": True})
        elif path == "/_replace":
            try:
                request = json.loads(body or b"{}")
                target, seed = str(request["path"]), int(request["seed"])
            except (ValueError, KeyError, TypeError) as error:
                self.send_simple(400, f"POST /_replace wants {{\"path\": \"/gen/N/S\", \"seed\": S2}}: {error}\n".encode())
                return
            with self.state.lock:
                self.state.replacements[target] = seed
            self.send_json({"path": target, "seed": seed})
        else:
            self.send_simple(405, f"POST {path}: only /_reset and /_replace accept POST\n".encode())

    def do_PUT(self) -> None:
        self.discard_request_body()
        self.send_simple(405, b"the source fixture is read-only\n", extra={"Allow": "GET, HEAD"})

    do_DELETE = do_PUT

    # -- routing -------------------------------------------------------------------------------

    def dispatch(self, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        if path == "/_stats":
            self.send_json(self.state.snapshot())
            return
        if path == "/_health":
            self.send_simple(200, b"ok\n", head=head)
            return
        match = SHA_RE.match(path)
        if match:
            self.send_json(self.sha256_of(int(match.group(1)), int(match.group(2))))
            return
        if path == "/redirect":
            self.redirect(split.query, head)
            return
        match = HOPS_RE.match(path)
        if match:
            hops, rest = int(match.group(1)), match.group(2)
            location = rest if hops <= 1 else f"/hops/{hops - 1}{rest}"
            if split.query:
                location += "?" + split.query
            self.state.count_request(path, self.command, 302, None, False)
            self.send_simple(302, b"", extra={"Location": location}, head=head)
            return
        match = GEN_RE.match(path)
        if match:
            kind, size, seed = match.group(1), int(match.group(2)), int(match.group(3))
            with self.state.lock:
                seed = self.state.replacements.get(path, seed)
            self.serve_object(path, split.query, head, size, chunked=(kind == "chunked"),
                              pieces=lambda offset, length: GENERATOR.pieces(seed, offset, length),
                              validator_seed=f"gen:{size}:{seed}")
            return
        if path.startswith("/static/") and self.root:
            self.serve_static(path, split.query, head)
            return
        self.state.count_request(path, self.command, 404, None, False)
        self.send_simple(404, f"{self.command} {path}: no such fixture path (see README.md)\n".encode(), head=head)

    def redirect(self, query: str, head: bool) -> None:
        params = dict(parse_qsl(query, keep_blank_values=True))
        target = params.get("to")
        if not target:
            self.send_simple(400, b"/redirect needs ?to=URL\n", head=head)
            return
        code = int(params.get("code", "302"))
        self.state.count_request("/redirect", self.command, code, None, False)
        self.send_simple(code, b"", extra={"Location": target}, head=head)

    def sha256_of(self, size: int, seed: int) -> dict:
        key = (size, seed)
        with self.state.lock:
            cached = self.state.sha_cache.get(key)
        if cached is None:
            digest = hashlib.sha256()
            for piece in GENERATOR.pieces(seed, 0, size):
                digest.update(piece)
            cached = digest.hexdigest()
            with self.state.lock:
                self.state.sha_cache[key] = cached
        return {"size": size, "seed": seed, "sha256": cached}

    def serve_static(self, path: str, query: str, head: bool) -> None:
        name = path[len("/static/"):]
        root = os.path.realpath(self.root or ".")
        full = os.path.realpath(os.path.join(root, name))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            self.state.count_request(path, self.command, 404, None, False)
            self.send_simple(404, f"{path}: no such file under --root\n".encode(), head=head)
            return
        stat = os.stat(full)

        def pieces(offset: int, length: int):
            with open(full, "rb") as f:
                f.seek(offset)
                remaining = length
                while remaining > 0:
                    chunk = f.read(min(BLOCK, remaining))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk

        self.serve_object(path, query, head, stat.st_size, chunked=False, pieces=pieces,
                          validator_seed=f"static:{name}:{stat.st_size}:{stat.st_mtime_ns}",
                          mtime=int(stat.st_mtime))

    # -- the object response -------------------------------------------------------------------

    def serve_object(self, path: str, query: str, head: bool, size: int, chunked: bool, pieces,
                     validator_seed: str, mtime: int | None = None) -> None:
        options = Options(query)
        if options.errors:
            self.send_simple(400, ("; ".join(options.errors) + "\n").encode(), head=head)
            return
        range_header = self.headers.get("Range")

        # Faults count per (method, path, query): a HEAD and a GET each get their own first N.
        fault_active = False
        if options.has_faults:
            count = self.state.next_fault_count(f"{self.command} {path}?{query}")
            fault_active = options.times is None or count <= options.times

        digest = hashlib.sha256(validator_seed.encode()).hexdigest()
        etag = options.etag if options.etag is not None else f'"{digest[:24]}"'
        if not etag.startswith('"') and not etag.startswith("W/"):
            etag = f'"{etag}"'
        if mtime is None:
            mtime = LAST_MODIFIED_EPOCH + int(digest[24:30], 16) % (365 * 86400)
        if options.last_modified is not None:
            mtime = options.last_modified
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        validators = {} if options.no_validators else {"ETag": etag, "Last-Modified": last_modified}

        failing_status = None
        if fault_active and options.fail is not None:
            failing_status = options.fail
        elif fault_active and options.status is not None:
            failing_status = options.status
        elif head and options.head_status is not None:
            failing_status = options.head_status  # e.g. a presigned GET URL, which refuses HEAD
        if failing_status is not None:
            extra = {}
            if options.retry_after is not None:
                extra["Retry-After"] = options.retry_after
            self.state.count_request(path, self.command, failing_status, range_header, True)
            body = f"fixture fault: status {failing_status} for {path}\n".encode()
            self.send_simple(failing_status, body, extra=extra, head=head)
            return

        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match.strip() != "*" and etag not in [t.strip() for t in if_match.split(",")]:
            self.state.count_request(path, self.command, 412, range_header, False)
            self.send_simple(412, b"If-Match does not match the current ETag\n", extra=validators, head=head)
            return

        # Range: single ranges only; anything else (or norange, or chunked) is answered with 200 in full.
        status, start, length = 200, 0, size
        byte_range = None
        if range_header is not None and not options.norange and not chunked:
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range.strip() in (etag, last_modified):
                byte_range = parse_range(range_header, size)
        if byte_range == "unsatisfiable":
            self.state.count_request(path, self.command, 416, range_header, False)
            self.send_simple(416, b"range not satisfiable\n", extra={"Content-Range": f"bytes */{size}"}, head=head)
            return
        if byte_range is not None:
            start, end = byte_range
            status, length = 206, end - start + 1

        self.state.count_request(path, self.command, status, range_header, fault_active)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            declared = options.wrong_length if (fault_active and options.wrong_length is not None) else length
            self.send_header("Content-Length", str(declared))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        self.send_header("Accept-Ranges", "none" if (options.norange or chunked) else "bytes")
        for name, value in validators.items():
            self.send_header(name, value)
        if fault_active and (options.wrong_length is not None or options.truncate_at is not None
                             or options.reset_at is not None):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        self.send_body(path, pieces(start, length), options if fault_active else None, options.slow_bps, chunked)

    def send_body(self, path: str, pieces, faults: Options | None, slow_bps: int | None, chunked: bool) -> None:
        sock = self.connection
        stop_at = None
        stop_action = None
        stall_at = None
        if faults is not None:
            for limit, action in ((faults.reset_at, "reset"), (faults.truncate_at, "truncate")):
                if limit is not None and (stop_at is None or limit < stop_at):
                    stop_at, stop_action = limit, action
            stall_at = faults.stall_at
        sent = 0
        started = time.monotonic()
        for piece in pieces:
            view = memoryview(piece)
            while len(view) > 0:
                n = len(view)
                if stall_at is not None:
                    if sent >= stall_at:
                        time.sleep(faults.stall_s or 0)
                        stall_at = None
                        continue
                    n = min(n, stall_at - sent)
                if stop_at is not None:
                    if sent >= stop_at:
                        break
                    n = min(n, stop_at - sent)
                if slow_bps:
                    n = min(n, max(1, slow_bps // 20))
                    due = started + sent / slow_bps
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                chunk = view[:n]
                # Counted before it is sent, so a client that has the bytes reads stats that include them.
                self.state.count_bytes(path, n)
                if chunked:
                    sock.sendall(b"%x\r\n" % n)
                    sock.sendall(chunk)
                    sock.sendall(b"\r\n")
                else:
                    sock.sendall(chunk)
                sent += n
                view = view[n:]
            if stop_at is not None and sent >= stop_at:
                break
        if stop_action == "reset" and sent >= stop_at:
            self.abort_with_reset()
        if stop_action == "truncate" and sent >= stop_at:
            self.abort_with_close()
        if faults is not None and faults.wrong_length is not None:
            self.abort_with_close()
        if chunked:
            sock.sendall(b"0\r\n\r\n")


def parse_range(header: str, size: int):
    """(first, last) inclusive for one `bytes=` range, "unsatisfiable", or None to ignore the header."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match:
        return None  # multiple ranges or another unit: answered with the whole object
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - suffix), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return (start, end)


class Server(ThreadingHTTPServer):
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
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--root", help="directory served under /static/<name>")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit when standard input closes (the launcher's lifeline)")
    parser.add_argument("--tls-cert", help="serve https with this certificate (PEM; needs --tls-key)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    # A parent may spawn us with signals blocked (Foundation's Process from a dispatch thread does):
    # unblock them so SIGTERM stops the fixture.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    handler = type("BoundHandler", (Handler,), {"state": State(), "root": args.root, "verbose": args.verbose})
    server = Server((args.host, args.port), handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        # A client that refuses the certificate fails the handshake in accept(); socketserver drops
        # that connection and goes on serving.
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    if args.exit_on_stdin_eof:
        watch_stdin()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
