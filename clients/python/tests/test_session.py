"""Session consistency: a read right after the client's own command reflects
it, first time, with the runs read model held back."""

from __future__ import annotations

import unittest

import runledger

from .harness import business, client, control, runledger_threads, served, wait_for


def status(c: runledger.Client, b: str, run_id: str) -> str:
    try:
        return str(c.get_run(b, run_id)["status"])
    except runledger.APIError as err:
        if err.code == "not_found":  # not projected yet (eventual reads)
            return ""
        raise


class SessionTest(unittest.TestCase):
    def setUp(self) -> None:
        served()

    def tearDown(self) -> None:
        control("POST", "/release")
        self.assertEqual(runledger_threads(), [])

    def read_after_complete(self, eventual: bool) -> str:
        b = business()
        c = client(b, via_proxy=True, eventual_reads=eventual)
        with c.run(b, total_calls=2) as run:
            run.progress(2, 0)
            wait_for("the run projected", lambda: status(c, b, run.run_id) == "running")
            # Hold the runs group back before the complete is appended.
            control("POST", "/hold?group=runs")
        self.assertGreaterEqual(c.position, run.info["position"])
        # Released a moment after the read reaches the proxy: a read that
        # waits for its position sees the complete, one that does not has
        # answered at once.
        control("POST", "/release-on-read?business=" + b)
        return str(c.get_run(b, run.run_id)["status"])

    def test_read_after_own_complete_sees_it(self) -> None:
        self.assertEqual(self.read_after_complete(eventual=False), "completed")

    def test_eventual_reads_answer_at_once_with_the_older_state(self) -> None:
        # The control: the group really was behind.
        self.assertEqual(self.read_after_complete(eventual=True), "running")

    def test_read_after_own_cancel_sees_it(self) -> None:
        b = business()
        worker, user = client(b), client(b, "user", via_proxy=True)
        with worker.run(b, total_calls=10) as run:
            wait_for("the run projected", lambda: user.get_active(b) is not None)
            control("POST", "/hold?group=active_runs")
            control("POST", "/hold?group=runs")
            user.cancel_run(b, run.run_id, "stop")
            control("POST", "/release-on-read?business=" + b)
            active = user.get_active(b)
            self.assertIsNotNone(active)
            self.assertTrue(active["cancel_requested"], "the user's own cancel was not reflected")
            run.cancelled.wait(5)


if __name__ == "__main__":
    unittest.main()
