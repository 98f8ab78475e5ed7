"""The worker SDK against a real server: cancel, fencing, liveness, the
retried complete, failures, pause, and no thread left behind."""

from __future__ import annotations

import os
import signal
import threading
import time
import unittest
import uuid
from typing import Any, Dict, List, Optional, Tuple

import runledger
from runledger._time import parse_time

from .harness import (INTERVAL, PROXY_URL, SERVER_PID, TTL, URL, Dialer, Worker, business, client, control, count,
                      events, heartbeats, proxied, runledger_threads, served, token, wait_for)


class HeartbeatLog(runledger.Client):
    """A worker's client that logs each heartbeat: whether it was sent after
    cancel_answered was set, whether handle (the run) had the cancel then,
    and whether its answer carried the cancel."""

    def __init__(self, business_id: str) -> None:
        super().__init__(URL, token(business_id, "worker"), timeout=5.0, worker_id="py-test-worker")
        self.cancel_answered = threading.Event()
        self.handle: Optional[runledger.Run] = None
        self.beats: List[Tuple[bool, bool, Optional[bool]]] = []

    def heartbeat(self, *args: Any, **kw: Any) -> Dict[str, Any]:
        sent_after = self.cancel_answered.is_set()
        had = self.handle is not None and self.handle.cancelled.is_set()
        try:
            answer = super().heartbeat(*args, **kw)
        except runledger.Error:
            self.beats.append((sent_after, had, None))
            raise
        self.beats.append((sent_after, had, bool(answer.get("cancel_requested"))))
        return answer


class WorkerTest(unittest.TestCase):
    def setUp(self) -> None:
        served()
        self.b = business()

    def tearDown(self) -> None:
        self.assertEqual(runledger_threads(), [], "a thread of the package is still running after the test")

    def test_completes_with_progress(self) -> None:
        c = client(self.b)
        d = Dialer(0.03, 12)
        with c.run(self.b, total_calls=12, worker_id="dialer-1") as run:
            self.assertEqual(runledger_threads(), ["runledger-heartbeat-" + run.run_id[:8]])
            d.work(run)
        self.assertEqual(runledger_threads(), [], "the heartbeat thread outlived the with block")
        self.assertEqual((run.info["status"], run.info["end_reason"], run.info["completed_calls"]),
                         ("completed", "completed", 12))
        evs = events(self.b, run.run_id)
        self.assertEqual((count(evs, "RunStarted"), count(evs, "RunCompleted")), (1, 1))
        progress = [e["data"].get("completed_calls", 0) for e in evs if e["type"] == "Heartbeat"]
        self.assertTrue(any(0 < n < 12 for n in progress), "no heartbeat carried intermediate progress: %r" % progress)
        self.assertEqual(evs[0]["data"].get("worker_id"), "dialer-1")

    def test_cancel_reaches_work_within_one_interval(self) -> None:
        # Within one interval, counted in heartbeats rather than seconds (a
        # loaded machine stretches seconds): the first heartbeat sent after
        # the cancel was answered carries it, and the run has it from that
        # answer on (every later heartbeat finds it set), so the work's next
        # check stops it.
        c = HeartbeatLog(self.b)
        w = Worker(c, self.b, Dialer())
        w.start()
        self.assertTrue(w.dialer.first_call.wait(10))
        c.handle = w.handle
        time.sleep(3 * INTERVAL)
        answered = client(self.b, "user").cancel_run(self.b, w.run_id, "user pressed cancel")
        c.cancel_answered.set()
        self.assertTrue(answered["cancel_requested"])
        err = w.result(5)
        self.assertIsNone(err, "a cancel must end the block quietly")
        self.assertIsInstance(w.dialer.stopped, runledger.RunCancelled)
        # c.beats is in sending order (one heartbeat at a time). One sent
        # while the cancel was being answered may carry it already.
        carried = [i for i, (_, _, cancel) in enumerate(c.beats) if cancel]
        self.assertTrue(carried, "no heartbeat carried the cancel, yet the work stopped: %r" % c.beats)
        sent_after = [i for i, (after, _, _) in enumerate(c.beats) if after]
        if sent_after:
            self.assertLessEqual(carried[0], sent_after[0],
                                 "the first heartbeat sent after the cancel did not carry it: %r" % c.beats)
        self.assertTrue(all(had for _, had, _ in c.beats[carried[0] + 1:]),
                        "a heartbeat was sent after the cancel's delivery with the run not cancelled: %r" % c.beats)
        self.assertEqual(w.dialer.calls_after(w.dialer.stopped_at), 0)
        self.assertEqual((w.handle.info["status"], w.handle.info["end_reason"]), ("cancelled", "cancelled"))
        self.assertTrue(w.handle.cancelled.is_set())

    def test_reaped_run_fences_the_work(self) -> None:
        # The proxy holds every heartbeat: the run goes silent, the worker
        # fences itself before the TTL, then the reaper ends the run.
        w = Worker(client(self.b, via_proxy=True), self.b, Dialer())
        w.start()
        self.assertTrue(w.dialer.first_call.wait(10))
        time.sleep(3 * INTERVAL)
        control("POST", "/proxy/hold-heartbeats?business=" + self.b)
        try:
            err = w.result(TTL + 5)
        finally:
            control("POST", "/proxy/release-heartbeats?business=" + self.b)
        self.assertIsInstance(err, runledger.LivenessLost)
        self.assertIsInstance(w.dialer.stopped, runledger.LivenessLost)
        user = client(self.b, "user")
        wait_for("the reaper to end the run", lambda: user.get_run(self.b, w.run_id)["status"] == "failed", TTL + 5)
        evs = events(self.b, w.run_id)
        stale = [e for e in evs if e["type"] == "RunStaleFailed"]
        self.assertEqual((len(stale), count(evs, "RunCompleted")), (1, 0), evs)
        reaped = parse_time(stale[0]["recorded_at"]).timestamp()
        print("work fenced %.3fs before the RunStaleFailed was stored" % (reaped - w.dialer.stopped_at))
        self.assertEqual(w.dialer.calls_after(reaped + INTERVAL), 0, "calls placed after the run was reaped")
        self.assertEqual(w.dialer.calls_after(w.dialer.stopped_at), 0, "calls placed after the fence")

    def test_run_ended_elsewhere_fences_on_409(self) -> None:
        # The proxy holds a heartbeat while another worker token ends the run;
        # released, the heartbeat is answered 409 run_ended, which stops the
        # work at once; the block does not end the run again.
        w = Worker(client(self.b, via_proxy=True), self.b, Dialer())
        w.start()
        self.assertTrue(w.dialer.first_call.wait(10))
        time.sleep(3 * INTERVAL)
        control("POST", "/proxy/hold-heartbeats?business=" + self.b)
        time.sleep(2 * INTERVAL)  # a heartbeat is held now
        client(self.b).complete_run(self.b, w.run_id, "completed", w.total_calls, 0)
        self.assertTrue(w.is_alive(), "the work stopped before the 409 could tell it")
        control("POST", "/proxy/release-heartbeats?business=" + self.b)
        err = w.result(5)
        self.assertIsInstance(err, runledger.RunEnded)
        self.assertEqual(err.run["status"], "completed")
        # Counted in heartbeats, not seconds: the held heartbeat, the first
        # answered after the end, was answered 409 and stopped the work; no
        # heartbeat followed it (nor a liveness fence, which would be LivenessLost).
        statuses = [r["status"] for r in proxied(self.b) if r["endpoint"] == "heartbeat"]
        self.assertEqual((statuses[-1], statuses.count(409), set(statuses[:-1])), (409, 1, {200}), statuses)
        self.assertEqual(w.dialer.calls_after(w.dialer.stopped_at), 0)
        self.assertEqual(count(events(self.b, w.run_id), "RunCompleted"), 1)

    def test_server_stopped_raises_liveness_lost_before_the_ttl(self) -> None:
        w = Worker(client(self.b), self.b, Dialer())
        w.start()
        self.assertTrue(w.dialer.first_call.wait(10))
        time.sleep(3 * INTERVAL)
        os.kill(SERVER_PID, signal.SIGSTOP)
        frozen = time.time()
        try:
            err = w.result(TTL + 5)
        finally:
            os.kill(SERVER_PID, signal.SIGCONT)
        self.assertIsInstance(err, runledger.LivenessLost)
        took = w.dialer.stopped_at - frozen
        print("work fenced %.3fs after the server was stopped (TTL %gs)" % (took, TTL))
        self.assertLess(took, TTL, "the work was not fenced before the TTL passed")
        self.assertEqual(w.dialer.calls_after(w.dialer.stopped_at), 0)
        user = client(self.b, "user")
        wait_for("the reaper to end the run",
                 lambda: user.get_run(self.b, w.run_id)["end_reason"] == "stale", TTL + 10)
        run = user.get_run(self.b, w.run_id)
        last = parse_time(run["last_heartbeat_at"]).timestamp()
        self.assertLess(w.dialer.stopped_at, last + TTL, "fenced after the run's stale time")

    def test_complete_whose_answer_is_dropped_is_retried_once(self) -> None:
        control("POST", "/proxy/cut-next-complete?business=" + self.b)
        c = client(self.b, via_proxy=True)
        with c.run(self.b, total_calls=5) as run:
            Dialer(0.01, 5).work(run)
        self.assertEqual(run.info["status"], "completed")
        self.assertEqual(count(events(self.b, run.run_id), "RunCompleted"), 1)
        import json
        completes = [r for r in json.loads(control("GET", "/proxy/requests?business=" + self.b))
                     if r["endpoint"] == "complete"]
        self.assertEqual(len(completes), 2, completes)
        self.assertTrue(completes[0]["key"] and completes[0]["key"] == completes[1]["key"], completes)
        self.assertEqual((completes[0]["status"], completes[1]["status"], completes[1]["replayed"]), (0, 200, True))

    def test_exception_fails_the_run_with_its_message(self) -> None:
        c = client(self.b)
        message = "the SIP trunk refused every call: 503 from carrier"
        with self.assertRaises(ValueError):
            with c.run(self.b, total_calls=3) as run:
                run.progress(1, 1)
                raise ValueError(message)
        got = c.get_run(self.b, run.run_id)  # the worker's session: reflects its own failure
        self.assertEqual((got["status"], got["end_reason"], got["last_error"]), ("failed", "worker_failed", message))
        self.assertEqual((got["completed_calls"], got["failed_calls"]), (1, 1))

    def test_other_exception_after_a_cancel_ends_the_run_cancelled(self) -> None:
        # As the Go SDK: the user asked the run to stop and it stopped, so it
        # ends cancelled even when the block then raised something else
        # (which still propagates).
        c = client(self.b)
        with self.assertRaises(ValueError):
            with c.run(self.b, total_calls=3) as run:
                run.progress(1)
                client(self.b, "user").cancel_run(self.b, run.run_id, "user pressed cancel")
                self.assertTrue(run.cancelled.wait(10), "the cancel never reached the run")
                raise ValueError("hung up while stopping")
        got = c.get_run(self.b, run.run_id)
        self.assertEqual((got["status"], got["end_reason"]), ("cancelled", "cancelled"))
        self.assertEqual(got["completed_calls"], 1)

    def test_exit_aborts_a_heartbeat_in_flight(self) -> None:
        # The proxy holds the heartbeats; the block ends while one is in
        # flight. As the Go SDK, the exit aborts it rather than wait for its
        # timeout (30 s here: the client's, the run's TTL being a minute),
        # and still joins the thread (tearDown checks none is left).
        c = runledger.Client(PROXY_URL, token(self.b, "worker"), timeout=30.0)
        try:
            with c.run(self.b, total_calls=3, stale_after=60) as run:
                run.progress(1)
                wait_for("a heartbeat to pass", lambda: heartbeats(self.b, 200) > 0)
                control("POST", "/proxy/hold-heartbeats?business=" + self.b)
                time.sleep(3 * INTERVAL)  # the next heartbeat is held now
                run.progress(3)
                leaving = time.monotonic()
            took = time.monotonic() - leaving
        finally:
            control("POST", "/proxy/release-heartbeats?business=" + self.b)
        print("the block ended %.3fs after it was left with a heartbeat held" % took)
        # Generous against a loaded machine, and far below the 30 s the
        # held heartbeat would otherwise have been waited for.
        self.assertLess(took, 10.0, "leaving the block waited for the held heartbeat")
        self.assertEqual((run.info["status"], run.info["completed_calls"]), ("completed", 3))
        # The heartbeat was held when the block was left: released, the
        # proxy finds its client gone (502 from its cancelled forward, or 0).
        wait_for("the proxy to log the held heartbeat", lambda: len([
            r for r in proxied(self.b) if r["endpoint"] == "heartbeat" and r["status"] != 200]) == 1)

    def test_paused_run_blocks_wait_if_paused_until_resumed(self) -> None:
        w = Worker(client(self.b), self.b, Dialer())
        w.start()
        self.assertTrue(w.dialer.first_call.wait(10))
        user = client(self.b, "user")
        user.pause_run(self.b, w.run_id, "lunch")
        wait_for("the pause to reach the worker", lambda: w.handle is not None and w.handle.paused, 5)
        time.sleep(INTERVAL)  # a call under way when the pause arrived ends
        placed = len(w.dialer.starts)
        time.sleep(5 * INTERVAL)
        self.assertEqual(len(w.dialer.starts), placed, "calls placed while paused")
        self.assertTrue(w.is_alive())
        user.resume_run(self.b, w.run_id)
        wait_for("calls again after the resume", lambda: len(w.dialer.starts) > placed + 2, 5)
        user.cancel_run(self.b, w.run_id)
        self.assertIsNone(w.result(5))
        self.assertEqual(w.handle.info["status"], "cancelled")

    def test_cancel_of_a_paused_run_ends_the_wait(self) -> None:
        w = Worker(client(self.b), self.b, Dialer())
        w.start()
        self.assertTrue(w.dialer.first_call.wait(10))
        user = client(self.b, "user")
        user.pause_run(self.b, w.run_id)
        wait_for("the pause to reach the worker", lambda: w.handle is not None and w.handle.paused, 5)
        user.cancel_run(self.b, w.run_id)
        self.assertIsNone(w.result(5))
        self.assertIsInstance(w.dialer.stopped, runledger.RunCancelled)
        self.assertEqual(w.handle.info["status"], "cancelled")

    def test_api_errors_carry_the_problem_code(self) -> None:
        c = client(self.b)
        with c.run(self.b, total_calls=1) as first:
            with self.assertRaises(runledger.APIError) as caught:
                with c.run(self.b, total_calls=1):
                    self.fail("a second run of the business started")
            self.assertEqual((caught.exception.status, caught.exception.code, caught.exception.run_id),
                             (409, "active_run_exists", first.run_id))
            self.assertIsInstance(caught.exception, runledger.Error)
            first.progress(1)
        with self.assertRaises(runledger.APIError) as caught:
            c.complete_run(self.b, first.run_id, "completed", 1, 0)
        self.assertEqual(caught.exception.code, "run_ended")
        self.assertEqual(caught.exception.run["status"], "completed")
        with self.assertRaises(runledger.APIError) as caught:
            c.get_run(self.b, str(uuid.uuid4()))
        self.assertEqual((caught.exception.status, caught.exception.code), (404, "not_found"))


if __name__ == "__main__":
    unittest.main()
