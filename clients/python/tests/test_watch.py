"""client.watch: the SSE stream as a generator, resumed with Last-Event-ID."""

from __future__ import annotations

import unittest

import runledger

from .harness import Dialer, Worker, business, client, runledger_threads, served, wait_for


class WatchTest(unittest.TestCase):
    def setUp(self) -> None:
        served()

    def tearDown(self) -> None:
        self.assertEqual(runledger_threads(), [])

    def test_follows_the_run_to_its_end_and_resumes_after_an_id(self) -> None:
        b = business()
        user = client(b, "user")
        w = Worker(client(b), b, Dialer(0.05, 30), total_calls=30)
        w.start()
        wait_for("the run active", lambda: user.get_active(b) is not None)
        stream = user.watch(b)
        first = next(stream)
        self.assertEqual((first.type, first.run["run_id"]), ("run", w.run_id))
        self.assertTrue(first.id)
        stream.close()  # closes the connection

        seen = []
        for ev in user.watch(b, last_event_id=first.id):
            seen.append(ev)
        self.assertIsNone(w.result(10))
        self.assertGreater(len(seen), 1)
        self.assertTrue(all(int(ev.id) > int(first.id) for ev in seen if ev.id),
                        "the resumed stream repeated events at or before Last-Event-ID")
        counts = [ev.run["completed_calls"] for ev in seen]
        self.assertEqual(counts, sorted(counts))
        self.assertEqual((seen[-1].type, seen[-1].run["status"], seen[-1].run["completed_calls"]),
                         ("ended", "completed", 30))

    def test_no_active_run(self) -> None:
        b = business()
        with self.assertRaises(runledger.APIError) as caught:
            next(client(b, "user").watch(b))
        self.assertEqual(caught.exception.code, "no_active_run")


if __name__ == "__main__":
    unittest.main()
