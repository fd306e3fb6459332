"""Self-tests of the fixtures: `cd Tests/Fixtures && python3 -m unittest -v test_fixtures`.

Each server runs as a child process, as the Swift launcher starts it. The moto round trips run when
the S3 emulator answers (SQUALL_S3_ENDPOINT, default http://127.0.0.1:29000) and are skipped
otherwise, unless SQUALL_REQUIRE_SERVICES=1 makes that a failure.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import source_server  # noqa: E402

MiB = 1 << 20


def start(script: str, *arguments: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-u", os.path.join(HERE, script), "--port", "0", "--exit-on-stdin-eof", *arguments],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.fullmatch(r"listening on (\d+)\n", line)
    if not match:
        process.kill()
        raise RuntimeError(f"{script} printed {line!r} instead of `listening on PORT`")
    return process, int(match.group(1))


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)
    process.stdin.close()
    process.stdout.close()


class Client:
    """A keep-alive connection to one server, returning (status, headers, body)."""

    def __init__(self, port: int, timeout: float = 30, headers: dict | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self.headers = headers or {}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, target: str, body=None, headers: dict | None = None, encode_chunked=False):
        try:
            self.connection.request(method, target, body=body, headers={**self.headers, **(headers or {})},
                                    encode_chunked=encode_chunked)
            response = self.connection.getresponse()
            data = response.read()
        except Exception:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, response, data

    def json(self, method: str, target: str, value=None):
        body = None if value is None else json.dumps(value).encode()
        status, _, data = self.request(method, target, body=body)
        return status, json.loads(data)

    def close(self) -> None:
        self.connection.close()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)


def at_once(port: int, count: int, method: str, target: str, body: bytes | None = None) -> None:
    """Sends `count` requests at the same time, each on a connection of its own, and waits for them all."""
    clients = [Client(port) for _ in range(count)]
    threads = [threading.Thread(target=c.request, args=(method, target), kwargs={"body": body}) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()


def raw_get(port: int, target: str, timeout: float = 30) -> tuple[bytes, bytes, str]:
    """GET over a plain socket: (head, body received, how it ended: 'eof' or 'reset')."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: fixture\r\nConnection: close\r\n\r\n".encode())
    data = bytearray()
    ending = "eof"
    try:
        while True:
            chunk = sock.recv(MiB)
            if not chunk:
                break
            data.extend(chunk)
    except ConnectionResetError:
        ending = "reset"
    finally:
        sock.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body, ending


# ---------------------------------------------------------------------------------------------


class GeneratorTests(unittest.TestCase):
    def test_any_slice_equals_the_same_offsets_of_the_whole(self):
        whole = source_server.generate(7, 0, 3 * MiB)
        for offset, length in ((0, 1), (15, 2), (MiB - 3, 40), (2 * MiB + 5, 100_000), (0, 3 * MiB)):
            self.assertEqual(source_server.generate(7, offset, length), whole[offset : offset + length])

    def test_blocks_differ_within_an_object_and_between_seeds(self):
        blocks = [source_server.generate(7, i * MiB, MiB) for i in range(4)]
        self.assertEqual(len(set(blocks)), 4)
        self.assertNotEqual(source_server.generate(8, 0, MiB), blocks[0])

    def test_block_layout_is_the_documented_one(self):
        seed, index = 7, 2
        base = b"".join(hashlib.sha256(seed.to_bytes(8, "big") + c.to_bytes(8, "big")).digest() for c in range(MiB // 32))
        rotation = (index * 2654435761 + 12345) % MiB
        expected = seed.to_bytes(8, "big") + index.to_bytes(8, "big") + (base[rotation:] + base[:rotation])[16:]
        self.assertEqual(source_server.generate(seed, index * MiB, MiB), expected)


class SourceServerTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.TemporaryDirectory()
        with open(os.path.join(cls.root.name, "file.bin"), "wb") as f:
            f.write(source_server.generate(3, 0, 2 * MiB + 7))
        cls.process, cls.port = start("source_server.py", "--root", cls.root.name)

    @classmethod
    def tearDownClass(cls):
        stop(cls.process)
        cls.root.cleanup()

    def setUp(self):
        self.client = Client(self.port)
        self.client.json("POST", "/_reset")

    def tearDown(self):
        self.client.close()

    def get(self, target: str, headers: dict | None = None):
        return self.client.request("GET", target, headers=headers)

    # -- content, Range, validators --------------------------------------------------------------

    def test_full_get_is_the_generated_content_with_its_sha256(self):
        status, response, body = self.get("/gen/3000000/7")
        self.assertEqual(status, 200)
        self.assertEqual(response.getheader("Content-Length"), "3000000")
        self.assertEqual(response.getheader("Accept-Ranges"), "bytes")
        self.assertEqual(body, source_server.generate(7, 0, 3_000_000))
        _, answer = self.client.json("GET", "/_sha256/3000000/7")
        self.assertEqual(answer["sha256"], hashlib.sha256(body).hexdigest())

    def test_range_forms(self):
        whole = source_server.generate(7, 0, 3_000_000)
        cases = {
            "bytes=0-0": (0, 0),
            "bytes=1048570-1048600": (1048570, 1048600),
            "bytes=2999990-": (2999990, 2999999),
            "bytes=-10": (2999990, 2999999),
            "bytes=2999990-5000000": (2999990, 2999999),
        }
        for header, (first, last) in cases.items():
            status, response, body = self.get("/gen/3000000/7", {"Range": header})
            self.assertEqual(status, 206, header)
            self.assertEqual(response.getheader("Content-Range"), f"bytes {first}-{last}/3000000", header)
            self.assertEqual(body, whole[first : last + 1], header)

    def test_unsatisfiable_range_is_416_and_multiple_ranges_get_the_whole_object(self):
        status, response, _ = self.get("/gen/1000/7", {"Range": "bytes=1000-"})
        self.assertEqual(status, 416)
        self.assertEqual(response.getheader("Content-Range"), "bytes */1000")
        status, _, body = self.get("/gen/1000/7", {"Range": "bytes=0-1,5-6"})
        self.assertEqual((status, len(body)), (200, 1000))

    def test_head_has_the_headers_of_get_and_no_body(self):
        status, response, body = self.client.request("HEAD", "/gen/5000/9")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(response.getheader("Content-Length"), "5000")
        _, get_response, _ = self.get("/gen/5000/9")
        for name in ("ETag", "Last-Modified"):
            self.assertEqual(response.getheader(name), get_response.getheader(name))

    def test_if_range_honours_a_matching_validator_and_ignores_range_otherwise(self):
        _, response, _ = self.client.request("HEAD", "/gen/5000/9")
        etag, modified = response.getheader("ETag"), response.getheader("Last-Modified")
        self.assertIsNotNone(email.utils.parsedate_to_datetime(modified))
        for validator in (etag, modified):
            status, _, body = self.get("/gen/5000/9", {"Range": "bytes=10-19", "If-Range": validator})
            self.assertEqual((status, len(body)), (206, 10))
        status, _, body = self.get("/gen/5000/9", {"Range": "bytes=10-19", "If-Range": '"other"'})
        self.assertEqual((status, len(body)), (200, 5000))

    def test_replace_changes_content_and_validators_under_the_same_url(self):
        _, before, body_before = self.get("/gen/5000/9")
        self.client.json("POST", "/_replace", {"path": "/gen/5000/9", "seed": 10})
        _, after, body_after = self.get("/gen/5000/9")
        self.assertEqual(body_after, source_server.generate(10, 0, 5000))
        self.assertNotEqual(body_before, body_after)
        self.assertNotEqual(before.getheader("ETag"), after.getheader("ETag"))
        self.assertNotEqual(before.getheader("Last-Modified"), after.getheader("Last-Modified"))
        status, _, body = self.get("/gen/5000/9", {"Range": "bytes=0-9", "If-Range": before.getheader("ETag")})
        self.assertEqual((status, len(body)), (200, 5000))
        self.client.json("POST", "/_reset")
        self.assertEqual(self.get("/gen/5000/9")[2], body_before)

    def test_validators_can_be_overridden_or_omitted(self):
        _, response, _ = self.get("/gen/10/1?etag=abc&last_modified=0")
        self.assertEqual(response.getheader("ETag"), '"abc"')
        self.assertEqual(response.getheader("Last-Modified"), "Thu, 01 Jan 1970 00:00:00 GMT")
        _, response, _ = self.get("/gen/10/1?no_validators=1")
        self.assertIsNone(response.getheader("ETag"))
        self.assertIsNone(response.getheader("Last-Modified"))

    # -- faults ------------------------------------------------------------------------------------

    def test_fail_answers_the_first_n_requests_per_method_then_succeeds(self):
        target = "/gen/1000/1?fail=503&times=2&retry_after=1"
        statuses = [self.get(target)[0] for _ in range(3)]
        self.assertEqual(statuses, [503, 503, 200])
        self.assertEqual(self.client.request("HEAD", target)[0], 503)  # HEAD has its own counter
        _, response, _ = self.get("/gen/1000/1?fail=503&times=1&retry_after=2")
        self.assertEqual(response.getheader("Retry-After"), "2")
        self.assertEqual([self.get("/gen/1000/1?fail=500")[0] for _ in range(2)], [500, 200])  # times=1 by default
        self.assertEqual([self.get("/gen/1000/1?fail=429&times=all")[0] for _ in range(3)], [429] * 3)

    def test_head_status_refuses_head_only(self):
        self.assertEqual([self.client.request("HEAD", "/gen/10/1?head_status=403")[0] for _ in range(2)], [403, 403])
        self.assertEqual(self.get("/gen/10/1?head_status=403")[0], 200)

    def test_status_is_permanent(self):
        for code in (404, 403, 410, 500):
            self.assertEqual([self.get(f"/gen/1000/1?status={code}")[0] for _ in range(3)], [code] * 3)

    def test_reset_at_resets_the_connection_after_that_many_body_bytes_once(self):
        head, body, ending = raw_get(self.port, "/gen/3000000/1?reset_at=1000000")
        self.assertIn(b"Content-Length: 3000000", head)
        self.assertEqual(ending, "reset")
        self.assertLessEqual(len(body), 1_000_000)
        self.assertEqual(body, source_server.generate(1, 0, len(body)))
        status, _, body = self.get("/gen/3000000/1?reset_at=1000000")
        self.assertEqual((status, len(body)), (200, 3_000_000))
        stats = self.client.json("GET", "/_stats")[1]
        self.assertEqual(stats["paths"]["/gen/3000000/1"]["bytes"], 4_000_000)

    def test_reset_at_applies_to_a_range_response_relative_to_its_body(self):
        head, body, ending = raw_get(self.port, "/gen/3000000/1?reset_at=10&times=all")
        self.assertEqual(ending, "reset")
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(b"GET /gen/3000000/1?reset_at=10&times=all HTTP/1.1\r\nHost: x\r\nRange: bytes=100-\r\n\r\n")
            data = bytearray()
            with self.assertRaises(ConnectionResetError):
                while chunk := sock.recv(65536):
                    data.extend(chunk)
                raise AssertionError("closed without a reset")
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        self.assertIn(b"206", head.split(b"\r\n")[0])
        self.assertEqual(body, source_server.generate(1, 100, 10))

    def test_truncate_at_declares_the_full_length_and_closes_early(self):
        head, body, ending = raw_get(self.port, "/gen/3000000/1?truncate_at=1500000")
        self.assertIn(b"Content-Length: 3000000", head)
        self.assertEqual((ending, len(body)), ("eof", 1_500_000))
        with self.assertRaises(http.client.IncompleteRead):
            self.client.request("GET", "/gen/3000000/1?truncate_at=10&times=all")

    def test_wrong_length_declares_that_length_and_sends_the_real_body(self):
        head, body, _ = raw_get(self.port, "/gen/3000/1?wrong_length=5000")
        self.assertIn(b"Content-Length: 5000", head)
        self.assertEqual(body, source_server.generate(1, 0, 3000))
        head, body, _ = raw_get(self.port, "/gen/3000/1?wrong_length=100&times=2")
        self.assertIn(b"Content-Length: 100", head)
        self.assertEqual(len(body), 3000)
        _, response, _ = self.client.request("HEAD", "/gen/3000/1?wrong_length=100&times=2")
        self.assertEqual(response.getheader("Content-Length"), "100")

    def test_stall_pauses_the_body_then_completes(self):
        started = time.monotonic()
        status, _, body = self.get("/gen/2000000/1?stall_at=1000&stall_s=1")
        self.assertGreaterEqual(time.monotonic() - started, 1.0)
        self.assertEqual((status, body), (200, source_server.generate(1, 0, 2_000_000)))
        started = time.monotonic()
        self.get("/gen/2000000/1?stall_at=1000&stall_s=1")
        self.assertLess(time.monotonic() - started, 0.9)  # the first request only

    def test_norange_ignores_range(self):
        status, response, body = self.get("/gen/5000/1?norange=1", {"Range": "bytes=10-19"})
        self.assertEqual((status, len(body)), (200, 5000))
        self.assertEqual(response.getheader("Accept-Ranges"), "none")

    def test_slow_bps_limits_the_rate(self):
        started = time.monotonic()
        self.get("/gen/100000/1?slow_bps=200000")
        self.assertGreaterEqual(time.monotonic() - started, 0.4)

    # -- chunked, redirects, static --------------------------------------------------------------

    def test_chunked_has_no_length_and_the_same_content(self):
        status, response, body = self.get("/chunked/3000000/7")
        self.assertEqual(status, 200)
        self.assertIsNone(response.getheader("Content-Length"))
        self.assertEqual(response.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(body, source_server.generate(7, 0, 3_000_000))
        status, _, body = self.get("/chunked/3000/7", {"Range": "bytes=0-9"})
        self.assertEqual((status, len(body)), (200, 3000))

    def test_chunked_truncation_ends_without_the_last_chunk(self):
        with self.assertRaises(http.client.IncompleteRead):
            self.get("/chunked/3000000/7?truncate_at=100000")

    def test_redirects(self):
        status, response, _ = self.get("/redirect?to=http://169.254.169.254/latest/meta-data/")
        self.assertEqual(status, 302)
        self.assertEqual(response.getheader("Location"), "http://169.254.169.254/latest/meta-data/")
        self.assertEqual(self.get("/redirect?to=/gen/1/1&code=307")[0], 307)
        status, response, _ = self.get("/hops/2/gen/10/1?fail=503")
        self.assertEqual(response.getheader("Location"), "/hops/1/gen/10/1?fail=503")
        status, response, _ = self.get("/hops/1/gen/10/1")
        self.assertEqual(response.getheader("Location"), "/gen/10/1")

    def test_static_files_with_range(self):
        status, _, body = self.get("/static/file.bin")
        self.assertEqual((status, body), (200, source_server.generate(3, 0, 2 * MiB + 7)))
        status, _, body = self.get("/static/file.bin", {"Range": "bytes=1048575-1048584"})
        self.assertEqual((status, body), (206, source_server.generate(3, MiB - 1, 10)))
        self.assertEqual(self.get("/static/../test_fixtures.py")[0], 404)

    # -- control -----------------------------------------------------------------------------------

    def test_stats_count_bytes_requests_and_connections_and_reset_zeroes_them(self):
        self.get("/gen/1000/1")
        self.get("/gen/1000/1", {"Range": "bytes=0-99"})
        self.client.request("HEAD", "/gen/1000/1")
        stats = self.client.json("GET", "/_stats")[1]
        path = stats["paths"]["/gen/1000/1"]
        self.assertEqual(path["bytes"], 1100)
        self.assertEqual(path["methods"], {"GET": 2, "HEAD": 1})
        self.assertEqual(path["statuses"], {"200": 2, "206": 1})
        self.assertEqual(path["ranges"], ["bytes=0-99"])
        self.assertEqual(stats["bytes_sent"], 1100)
        self.assertEqual(stats["connections"], 0)  # this keep-alive connection predates the reset
        self.client.json("POST", "/_reset")
        stats = self.client.json("GET", "/_stats")[1]
        self.assertEqual((stats["bytes_sent"], stats["requests"], stats["paths"]), (0, 0, {}))


# ---------------------------------------------------------------------------------------------


class EchoUpstream:
    """A stand-in S3 that records each request exactly as received and answers with a JSON summary."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
                    body = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body.extend(self.rfile.read(size))
                        self.rfile.readline()
                    body = bytes(body)
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = {"method": self.command, "target": self.path, "headers": list(self.headers.items()),
                          "length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
                outer.requests.append(record)
                if self.command == "GET" and self.path.startswith("/big"):
                    payload = source_server.generate(5, 0, 2 * MiB)
                else:
                    payload = json.dumps(record).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                if self.path.startswith("/drop"):
                    self.close_connection = True  # as an idle timeout would, without saying so

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the proxy drops upstream connections mid-response on purpose

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FaultProxyTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = EchoUpstream()
        cls.process, cls.port = start("s3_fault_proxy.py", "--upstream", f"http://127.0.0.1:{cls.upstream.port}")

    @classmethod
    def tearDownClass(cls):
        stop(cls.process)
        cls.upstream.close()

    def setUp(self):
        self.client = Client(self.port)
        self.client.json("DELETE", "/_faults")
        self.client.json("POST", "/_reset")
        self.upstream.requests.clear()

    def tearDown(self):
        self.client.close()

    def program(self, **fault):
        status, answer = self.client.json("POST", "/_faults", fault)
        self.assertEqual(status, 200, answer)
        return answer

    def test_requests_pass_through_unchanged(self):
        body = os.urandom(3 * MiB + 11)
        headers = {"Host": "bucket.s3.example:9000", "X-Amz-Meta-Mixed-Case": "Value", "Content-Type": "a/b"}
        status, _, data = self.client.request("PUT", "/bucket/key?partNumber=2&uploadId=xyz", body=body,
                                              headers=headers)
        self.assertEqual(status, 200)
        seen = json.loads(data)
        self.assertEqual(seen["target"], "/bucket/key?partNumber=2&uploadId=xyz")
        self.assertEqual((seen["length"], seen["sha256"]), (len(body), hashlib.sha256(body).hexdigest()))
        self.assertIn(["Host", "bucket.s3.example:9000"], seen["headers"])
        self.assertIn(["X-Amz-Meta-Mixed-Case", "Value"], seen["headers"])
        self.assertEqual(self.client.json("GET", "/_stats")[1]["log"][-1]["content_type"], "a/b")

    def test_max_in_flight_counts_requests_forwarded_at_once(self):
        self.assertEqual(self.client.json("GET", "/_stats")[1]["max_in_flight"], 0)
        for _ in range(2):
            self.assertEqual(self.client.request("PUT", "/bucket/key", body=b"x")[0], 200)
        self.assertEqual(self.client.json("GET", "/_stats")[1]["max_in_flight"], 1)  # one after the other
        self.program(match={"method": "PUT"}, action="stall", seconds=0.5, times=3)
        at_once(self.port, 3, "PUT", "/bucket/stalled", body=b"y")
        self.assertEqual(self.client.json("GET", "/_stats")[1]["max_in_flight"], 3)

    def test_chunked_uploads_and_expect_continue_pass_through(self):
        body = os.urandom(2 * MiB + 3)

        def chunks():
            for i in range(0, len(body), 700_000):
                yield body[i : i + 700_000]

        status, _, data = self.client.request("PUT", "/bucket/chunked", body=chunks(),
                                              headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        seen = json.loads(data)
        self.assertEqual((status, seen["length"], seen["sha256"]), (200, len(body), hashlib.sha256(body).hexdigest()))
        # Expect: 100-continue is answered by the proxy and not forwarded.
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(b"PUT /bucket/e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            self.assertEqual(sock.recv(100), b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"hello")
            reply = b""
            while b"}" not in reply:
                reply += sock.recv(65536)
        self.assertNotIn("expect", [name.lower() for name, _ in self.upstream.requests[-1]["headers"]])
        self.assertEqual(self.upstream.requests[-1]["length"], 5)
        # The log still says what the client asked for, and which content type it sent (none here).
        log = {entry["path"]: entry for entry in self.client.json("GET", "/_stats")[1]["log"]}
        self.assertEqual((log["/bucket/e"]["expect"], log["/bucket/e"]["content_type"]), ("100-continue", None))
        self.assertIsNone(log["/bucket/chunked"]["expect"])

    def test_an_upstream_connection_closed_while_idle_is_replaced(self):
        self.assertEqual(self.client.request("GET", "/drop/1")[0], 200)
        time.sleep(0.2)
        status, _, data = self.client.request("PUT", "/bucket/after", body=b"still here")
        self.assertEqual((status, json.loads(data)["length"]), (200, 10))

    def test_large_downloads_pass_through(self):
        status, _, data = self.client.request("GET", "/big/object")
        self.assertEqual((status, data), (200, source_server.generate(5, 0, 2 * MiB)))

    def test_slowdown_matches_method_and_query_and_fires_times(self):
        self.program(match={"method": "PUT", "query_contains": "partNumber=2"}, action="503_slowdown", times=2)
        results = []
        for part in (1, 2, 2, 2):
            status, _, data = self.client.request("PUT", f"/b/k?partNumber={part}&uploadId=u", body=b"x" * 1000)
            results.append(status)
            if status == 503:
                self.assertIn(b"<Code>SlowDown</Code>", data)
        self.assertEqual(results, [200, 503, 503, 200])
        self.assertEqual(len(self.upstream.requests), 2)
        stats = self.client.json("GET", "/_stats")[1]
        self.assertEqual(stats["faults_fired"], 2)
        self.assertEqual(stats["methods"]["PUT"], {"requests": 4, "request_bytes": 4000, "response_bytes": stats["methods"]["PUT"]["response_bytes"]})
        self.assertEqual([entry["fault"] for entry in stats["log"]], [None, "503_slowdown", "503_slowdown", None])

    def test_query_params_match_exact_values(self):
        self.program(match={"method": "PUT", "query_params": {"partNumber": "2"}}, action="500", times="all")
        statuses = [self.client.request("PUT", f"/b/k?uploadId=u&partNumber={n}", body=b"x")[0] for n in (2, 20, 12)]
        self.assertEqual(statuses, [500, 200, 200])

    def test_skip_500_and_custom_errors(self):
        self.program(match={"method": "GET"}, action="500", skip=1)
        self.program(match={"method": "DELETE"}, action="error", status=400, code="RequestTimeout", times="all")
        self.assertEqual([self.client.request("GET", "/b/k")[0] for _ in range(3)], [200, 500, 200])
        status, _, data = self.client.request("DELETE", "/b/k?uploadId=u")
        self.assertEqual(status, 400)
        self.assertIn(b"<Code>RequestTimeout</Code>", data)

    def test_reset_mid_body_reads_part_of_the_body_then_resets_and_forwards_nothing(self):
        self.program(match={"method": "PUT"}, action="reset_mid_body", bytes=100_000)
        with self.assertRaises((ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
            self.client.request("PUT", "/b/k?partNumber=1", body=os.urandom(4 * MiB))
        self.assertEqual(self.upstream.requests, [])
        status, _, _ = self.client.request("PUT", "/b/k?partNumber=1", body=b"ok")
        self.assertEqual(status, 200)
        log = self.client.json("GET", "/_stats")[1]["log"]
        self.assertEqual(log[0]["status"], "reset")
        self.assertGreaterEqual(log[0]["request_bytes"], 100_000)

    def test_stall_delays_forwarding(self):
        self.program(match={"method": "PUT"}, action="stall", seconds=1)
        started = time.monotonic()
        status, _, _ = self.client.request("PUT", "/b/k", body=b"abc")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(time.monotonic() - started, 1.0)
        self.program(match={"method": "GET"}, action="stall", seconds=1, phase="response")
        started = time.monotonic()
        self.assertEqual(self.client.request("GET", "/b/k")[0], 200)
        self.assertGreaterEqual(time.monotonic() - started, 1.0)
        self.assertEqual(len(self.upstream.requests), 2)

    def test_complete_200_error_is_not_forwarded_unless_asked(self):
        self.program(match={"method": "POST", "query_contains": "uploadId="}, action="complete_200_error")
        status, _, data = self.client.request("POST", "/b/k?uploadId=u", body=b"<CompleteMultipartUpload/>")
        self.assertEqual(status, 200)
        self.assertIn(b"<Error><Code>InternalError</Code>", data)
        self.assertEqual(self.upstream.requests, [])
        self.program(match={"method": "POST", "query_contains": "uploadId="}, action="complete_200_error", forward=True)
        status, _, data = self.client.request("POST", "/b/k?uploadId=u", body=b"<CompleteMultipartUpload/>")
        self.assertEqual(status, 200)
        self.assertIn(b"<Code>InternalError</Code>", data)
        self.assertEqual(len(self.upstream.requests), 1)
        self.assertEqual(self.client.request("POST", "/b/k?uploads", body=b"")[0], 200)

    def test_reset_mid_response(self):
        self.program(match={"method": "GET"}, action="reset_mid_response", bytes=500_000)
        with self.assertRaises((ConnectionResetError, http.client.IncompleteRead)):
            self.client.request("GET", "/big/object")
        self.assertEqual(self.client.request("GET", "/big/object")[0], 200)

    def test_bad_fault_programs_are_refused_with_a_reason(self):
        status, answer = self.client.json("POST", "/_faults", {"match": {}, "action": "explode"})
        self.assertEqual(status, 400)
        self.assertIn("explode", answer["error"])
        status, answer = self.client.json("GET", "/_faults")
        self.assertEqual((status, answer), (200, []))

    def test_unreachable_upstream_is_502(self):
        process, port = start("s3_fault_proxy.py", "--upstream", "http://127.0.0.1:9")
        try:
            client = Client(port)
            self.assertEqual(client.request("GET", "/b/k")[0], 502)
            client.close()
        finally:
            stop(process)


# ---------------------------------------------------------------------------------------------

import s3_fault_proxy  # noqa: E402


class SigV4VerifierTests(unittest.TestCase):
    """The proxy's signature check against the worked examples in AWS's S3 documentation
    ("Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk")."""

    # The documentation's own example secret key (not a credential of anyone's), in two pieces so that
    # secret scanners do not take it for one. The access key id is not part of what is signed.
    SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    def headers(self, signed: str, signature: str, **extra: str) -> list[tuple[str, str]]:
        authorization = ("AWS4-HMAC-SHA256 Credential=EXAMPLE-KEY-ID/20130524/us-east-1/s3/aws4_request,"
                         f"SignedHeaders={signed},Signature={signature}")
        values = {"host": "examplebucket.s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
                  "x-amz-content-sha256": self.EMPTY, **extra}
        return [("authorization", authorization)] + list(values.items())

    def verdict(self, method: str, target: str, headers) -> str:
        return s3_fault_proxy.sigv4_verdict(method, target, headers, self.SECRET)[0]

    def test_get_object_with_range(self):
        headers = self.headers("host;range;x-amz-content-sha256;x-amz-date",
                               "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", range="bytes=0-9")
        self.assertEqual(self.verdict("GET", "/test.txt", headers), "ok")
        self.assertEqual(self.verdict("GET", "/test.txt?x=1", headers), "mismatch")
        self.assertEqual(self.verdict("HEAD", "/test.txt", headers), "mismatch")

    def test_put_object_key_with_a_dollar_sent_either_way(self):
        headers = self.headers(
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            date="Fri, 24 May 2013 00:00:00 GMT", **{
                "x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                "x-amz-storage-class": "REDUCED_REDUNDANCY"})
        for target in ("/test$file.text", "/test%24file.text"):
            self.assertEqual(self.verdict("PUT", target, headers), "ok", target)
        _, canonical = s3_fault_proxy.sigv4_verdict("PUT", "/test$file.text", headers, self.SECRET)
        self.assertEqual(canonical.split("\n")[1], "/test%24file.text")

    def test_query_without_a_value_and_sorted_parameters(self):
        lifecycle = self.headers("host;x-amz-content-sha256;x-amz-date",
                                 "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
        self.assertEqual(self.verdict("GET", "/?lifecycle", lifecycle), "ok")
        listing = self.headers("host;x-amz-content-sha256;x-amz-date",
                               "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
        self.assertEqual(self.verdict("GET", "/?max-keys=2&prefix=J", listing), "ok")
        self.assertEqual(self.verdict("GET", "/?prefix=J&max-keys=2", listing), "ok", "S3 sorts the query itself")
        self.assertEqual(self.verdict("GET", "/?max-keys=2&prefix=K", listing), "mismatch")

    def test_unsigned_amz_headers_missing_and_malformed_authorization(self):
        headers = self.headers("host;range;x-amz-content-sha256;x-amz-date",
                               "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", range="bytes=0-9")
        self.assertEqual(self.verdict("GET", "/test.txt", headers + [("x-amz-meta-a", "1")]), "unsigned-headers")
        self.assertEqual(self.verdict("GET", "/test.txt", [h for h in headers if h[0] != "range"]), "signed-absent")
        self.assertEqual(self.verdict("GET", "/test.txt", headers[1:]), "missing")
        self.assertEqual(self.verdict("GET", "/test.txt", [("authorization", "AWS4-HMAC-SHA256 nonsense")]
                                      + headers[1:]), "malformed")

    def test_region_and_clock_checked_when_asked(self):
        headers = self.headers("host;range;x-amz-content-sha256;x-amz-date",
                               "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", range="bytes=0-9")
        signed_at = calendar.timegm((2013, 5, 24, 0, 0, 0))

        def verdict(region=None, now=None):
            return s3_fault_proxy.sigv4_verdict("GET", "/test.txt", headers, self.SECRET, region, now)

        self.assertEqual(verdict("us-east-1", signed_at + 899)[0], "ok")
        self.assertEqual(verdict("eu-west-1"), ("wrong-region", "us-east-1"))
        self.assertEqual(verdict(now=signed_at + 901), ("skewed", "20130524T000000Z"))
        self.assertEqual(verdict(now=signed_at - 901)[0], "skewed", "a request from the future too")
        undated = [(name, "20130524Tnoon") if name == "x-amz-date" else (name, value) for name, value in headers]
        self.assertEqual(s3_fault_proxy.sigv4_verdict("GET", "/test.txt", undated, self.SECRET, None, signed_at)[0],
                         "malformed")

    def test_dot_segments_are_part_of_the_key(self):
        _, canonical = s3_fault_proxy.sigv4_verdict(
            "GET", "/b/a/../c%20d+e", self.headers("host;x-amz-content-sha256;x-amz-date", "0" * 64), self.SECRET)
        self.assertEqual(canonical.split("\n")[1], "/b/a/../c%20d%2Be")


# ---------------------------------------------------------------------------------------------


def moto_endpoint() -> str | None:
    endpoint = os.environ.get("SQUALL_S3_ENDPOINT") or "http://127.0.0.1:29000"
    parts = urlsplit(endpoint)
    try:
        socket.create_connection((parts.hostname, parts.port or 80), timeout=2).close()
        return endpoint
    except OSError:
        if os.environ.get("SQUALL_REQUIRE_SERVICES") == "1":
            raise
        return None


class MotoThroughProxyTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.endpoint = moto_endpoint()
        if cls.endpoint is None:
            raise unittest.SkipTest("the S3 emulator is not reachable (scripts/services up)")
        cls.process, cls.port = start("s3_fault_proxy.py", "--upstream", cls.endpoint)
        cls.bucket = f"squall-fixtures-{uuid.uuid4().hex[:12]}"

    @classmethod
    def tearDownClass(cls):
        stop(cls.process)

    def setUp(self):
        # moto checks no signature but refuses anonymous reads: any SigV4-shaped Authorization will do.
        self.client = Client(self.port, timeout=60, headers={"Authorization": (
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00")})
        self.client.request("PUT", f"/{self.bucket}")
        self.client.json("POST", "/_reset")

    def tearDown(self):
        status, _, data = self.client.request("GET", f"/{self.bucket}")
        for key in re.findall(rb"<Key>([^<]+)</Key>", data):
            self.client.request("DELETE", f"/{self.bucket}/{key.decode()}")
        self.client.request("DELETE", f"/{self.bucket}")
        self.client.close()

    def test_put_and_get_round_trip_byte_exact(self):
        body = source_server.generate(11, 0, 6 * MiB + 5)
        status, _, _ = self.client.request("PUT", f"/{self.bucket}/object", body=body)
        self.assertEqual(status, 200)
        status, _, data = self.client.request("GET", f"/{self.bucket}/object")
        self.assertEqual((status, hashlib.sha256(data).hexdigest()), (200, hashlib.sha256(body).hexdigest()))
        stats = self.client.json("GET", "/_stats")[1]
        self.assertEqual(stats["methods"]["PUT"]["request_bytes"], len(body))
        self.assertEqual(stats["methods"]["GET"]["response_bytes"] >= len(body), True)

    def test_multipart_complete_answered_with_200_error_can_be_completed_again(self):
        key = f"/{self.bucket}/multi"
        status, _, data = self.client.request("POST", f"{key}?uploads")
        self.assertEqual(status, 200, data)
        upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", data).group(1).decode()
        parts = [source_server.generate(12, 0, 5 * MiB), source_server.generate(13, 0, MiB)]
        etags = []
        for number, part in enumerate(parts, start=1):
            status, response, _ = self.client.request("PUT", f"{key}?partNumber={number}&uploadId={upload_id}",
                                                      body=part)
            self.assertEqual(status, 200)
            etags.append(response.getheader("ETag"))
        complete = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, start=1)
        ) + "</CompleteMultipartUpload>"
        self.client.json("POST", "/_faults", {"match": {"method": "POST", "query_contains": "uploadId="},
                                              "action": "complete_200_error"})
        status, _, data = self.client.request("POST", f"{key}?uploadId={upload_id}", body=complete.encode())
        self.assertEqual(status, 200)
        self.assertIn(b"<Code>InternalError</Code>", data)
        self.assertEqual(self.client.request("HEAD", key)[0], 404)  # not completed
        status, _, data = self.client.request("POST", f"{key}?uploadId={upload_id}", body=complete.encode())
        self.assertEqual(status, 200)
        self.assertNotIn(b"<Error>", data)
        status, _, data = self.client.request("GET", key)
        self.assertEqual(data, parts[0] + parts[1])


if __name__ == "__main__":
    unittest.main()
