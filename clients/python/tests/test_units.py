"""The pure parts, and retries against a local stand-in server: no runledger needed."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import unittest
from typing import Any, List, Tuple

import runledger
from runledger._http import Abort
from runledger._time import parse_duration, parse_time
from runledger.watch import parse_events


class PureTest(unittest.TestCase):
    def test_durations(self) -> None:
        for text, want in [("15m0s", 900.0), ("100ms", 0.1), ("1h2m3.5s", 3723.5), ("0s", 0.0), ("1.5µs", 1.5e-6)]:
            with self.subTest(text=text):
                self.assertAlmostEqual(parse_duration(text), want)
        for bad in ["", "15", "m", "1d"]:
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                parse_duration(bad)

    def test_times(self) -> None:
        t = parse_time("2026-11-30T03:00:00.123456789Z")
        self.assertEqual((t.hour, t.microsecond, t.utcoffset().total_seconds()), (3, 123456, 0))
        self.assertEqual(parse_time("2026-11-30T04:00:00+01:00"), parse_time("2026-11-30T03:00:00Z"))
        with self.assertRaises(ValueError):
            parse_time("yesterday")

    def test_pace(self) -> None:
        for policy, ttl, override, want in [
            (5.0, 900.0, None, (5.0, 90.0)),    # the defaults: every 5s, fenced 90s before the TTL
            (0.1, 3.0, None, (0.1, 0.3)),
            (0.0, 300.0, None, (10.0, 30.0)),  # no minimum interval: ttl/30
            (60.0, 300.0, None, (30.0, 60.0)),  # at most a tenth of the TTL
            (5.0, 900.0, 1.0, (1.0, 90.0)),
            (0.0, 0.1, None, (0.01, 0.02)),     # at least 10ms
        ]:
            with self.subTest(policy=policy, ttl=ttl, override=override):
                got = runledger.pace(policy, ttl, override)
                self.assertAlmostEqual(got[0], want[0])
                self.assertAlmostEqual(got[1], want[1])

    def test_parse_events(self) -> None:
        lines = [": keep-alive", "", "id: 7", "event: run", 'data: {"run_id": "r", "completed_calls": 1}', "",
                 "id: 9", "event: ended", "data: {\"run_id\": \"r\",", "data:  \"status\": \"completed\"}", ""]
        got = list(parse_events(iter(lines)))
        self.assertEqual([(e.id, e.type) for e in got], [("7", "run"), ("9", "ended")])
        self.assertEqual(got[1].run, {"run_id": "r", "status": "completed"})

    def test_errors_share_a_root(self) -> None:
        for cls in (runledger.APIError, runledger.TransportError, runledger.RunCancelled, runledger.RunEnded,
                    runledger.LivenessLost):
            self.assertTrue(issubclass(cls, runledger.Error), cls)
        self.assertEqual(runledger.LivenessLost("x").code, "liveness_lost")


class StandIn(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next of its class's scripted answers."""

    script: List[Tuple[int, dict, Any]] = []
    seen: List[Tuple[float, dict]] = []

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer()

    def answer(self) -> None:
        StandIn.seen.append((time.monotonic(), dict(self.headers)))
        status, headers, body = StandIn.script.pop(0)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


class RetryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
        self.thread = threading.Thread(target=self.srv.serve_forever, name="stand-in", daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        StandIn.seen = []

    def tearDown(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join()

    def test_retry_after_is_honoured_on_503_and_429(self) -> None:
        for status in (503, 429):
            with self.subTest(status=status):
                StandIn.seen = []
                StandIn.script = [(status, {"Retry-After": "1", "Content-Type": "application/problem+json"},
                                   {"code": "read_model_behind", "detail": "later"}),
                                  (200, {"Runledger-Position": "42"}, {"run_id": "r", "status": "running"})]
                c = runledger.Client(self.url, "t", timeout=5, min_backoff=0.01, max_backoff=0.02)
                self.assertEqual(c.get_run("acme", "r")["status"], "running")
                self.assertEqual(len(StandIn.seen), 2)
                waited = StandIn.seen[1][0] - StandIn.seen[0][0]
                self.assertGreaterEqual(waited, 0.95, "Retry-After: 1 was not waited for")

    def test_4xx_is_not_retried_and_carries_its_code(self) -> None:
        StandIn.script = [(422, {"Content-Type": "application/problem+json"},
                           {"code": "idempotency_key_reused", "detail": "another body"})]
        c = runledger.Client(self.url, "t", timeout=5)
        with self.assertRaises(runledger.APIError) as caught:
            c.cancel_run("acme", "r")
        self.assertEqual((caught.exception.status, caught.exception.code), (422, "idempotency_key_reused"))
        self.assertEqual(len(StandIn.seen), 1)

    def test_retries_keep_one_idempotency_key_and_give_up(self) -> None:
        StandIn.script = [(500, {}, {"code": "internal"})] * 3
        c = runledger.Client(self.url, "t", timeout=5, max_attempts=3, min_backoff=0.01, max_backoff=0.02)
        with self.assertRaises(runledger.APIError) as caught:
            c.complete_run("acme", "r", "completed", 1, 0)
        self.assertEqual(caught.exception.status, 500)
        keys = {h.get("Idempotency-Key") for _, h in StandIn.seen}
        self.assertEqual(len(StandIn.seen), 3)
        self.assertEqual(len(keys), 1)
        self.assertTrue(keys.pop())

    def test_reads_send_the_session_position_unless_opted_out(self) -> None:
        for eventual, want in [(False, "17"), (True, None)]:
            with self.subTest(eventual=eventual):
                StandIn.seen = []
                StandIn.script = [(202, {"Runledger-Position": "17"}, {"run_id": "r"}),
                                  (200, {}, {"run_id": "r"})]
                c = runledger.Client(self.url, "t", timeout=5, eventual_reads=eventual)
                c.cancel_run("acme", "r")
                c.get_run("acme", "r")
                self.assertEqual(c.position, 17)
                self.assertIsNone(StandIn.seen[0][1].get("Runledger-Min-Position"))
                self.assertEqual(StandIn.seen[1][1].get("Runledger-Min-Position"), want)

    def test_an_answer_that_is_not_json_is_a_client_error(self) -> None:
        # A 200 that is not JSON (a proxy's page): a runledger.Error, as in the
        # Go SDK, so the heartbeat thread, which goes on after any Error, is not
        # killed by it (and a caller's `except runledger.Error` holds).
        StandIn.script = [(200, {"Content-Type": "text/html"}, b"<html>gateway</html>")]
        c = runledger.Client(self.url, "t", timeout=5, max_attempts=3, min_backoff=0.01, max_backoff=0.02)
        with self.assertRaises(runledger.Error) as caught:
            c.heartbeat("acme", "r", 1, 0)
        self.assertIsInstance(caught.exception, runledger.TransportError)
        self.assertEqual(len(StandIn.seen), 1)

    def test_timeout_bounds_every_call(self) -> None:
        # A server that accepts the connection and never answers (as a
        # stopped process does).
        with socket.socket() as mute:
            mute.bind(("127.0.0.1", 0))
            mute.listen(8)
            c = runledger.Client("http://127.0.0.1:%d" % mute.getsockname()[1], "t", timeout=0.3, max_attempts=2,
                                 min_backoff=0.01, max_backoff=0.02)
            start = time.monotonic()
            with self.assertRaises(runledger.TransportError) as caught:
                c.policy()
            took = time.monotonic() - start
        self.assertEqual(caught.exception.code, "timeout")
        self.assertGreaterEqual(took, 0.6)
        self.assertLess(took, 5)


if __name__ == "__main__":
    unittest.main()


class AbortTest(unittest.TestCase):
    def test_abort_cuts_a_request_in_flight_even_mid_body(self) -> None:
        # A stand-in that sends the head of an answer and then nothing: the
        # request would wait for its 30 s timeout; abort() ends it at once.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        got_request = threading.Event()

        def serve() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            got_request.set()
            while conn.recv(65536):  # until the client's side is shut down
                pass
            conn.close()

        server = threading.Thread(target=serve)
        server.start()
        c = runledger.Client("http://127.0.0.1:%d" % listener.getsockname()[1], "t", timeout=30.0)
        abort = Abort()
        errors: List[BaseException] = []

        def heartbeat() -> None:
            try:
                c.heartbeat("b", "r", 0, 0, abort=abort)
            except BaseException as err:  # noqa: B902 - asserted on below
                errors.append(err)

        hb = threading.Thread(target=heartbeat)
        hb.start()
        self.assertTrue(got_request.wait(10))
        time.sleep(0.05)  # the client is reading the body now (or about to: shut down on connect either way)
        abort.abort()
        hb.join(10)  # far below the 30 s timeout
        self.assertFalse(hb.is_alive(), "the aborted request went on")
        server.join(10)
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], runledger.TransportError)
        with self.assertRaises(runledger.TransportError) as caught:
            c.heartbeat("b", "r", 0, 0, abort=abort)  # nothing is sent once aborted
        self.assertIn("aborted", str(caught.exception))
