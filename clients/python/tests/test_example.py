"""The README's Python worker (examples/outbound_queue.py), run against the
server as a job would run, and checked to be the README's text."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unittest

from .harness import URL, business, client, served, token, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "outbound_queue.py")
README = os.path.join(HERE, "..", "..", "..", "README.md")


class ExampleTest(unittest.TestCase):
    def test_readme_shows_the_example(self) -> None:
        if not os.path.exists(README):
            raise unittest.SkipTest("not in the runledger repository")
        with open(README, encoding="utf-8") as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        with open(EXAMPLE, encoding="utf-8") as f:
            self.assertIn(f.read(), blocks, "README's \"Write a worker in Python\" is not examples/outbound_queue.py")

    def start(self, b: str, leads: int) -> subprocess.Popen:
        env = dict(os.environ, RUNLEDGER_URL=URL, RUNLEDGER_TOKEN=token(b, "worker"), RUNLEDGER_BUSINESS=b,
                   LEADS=str(leads), PYTHONPATH=os.path.join(HERE, ".."))
        return subprocess.Popen([sys.executable, EXAMPLE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def test_runs_to_completion(self) -> None:
        served()
        b = business()
        job = self.start(b, 20)
        out, err = job.communicate(timeout=60)
        self.assertEqual(job.returncode, 0, err)
        run_id, status, completed, failed = out.split()
        self.assertEqual((status, int(completed) + int(failed)), ("completed", 20))
        # Another client's read: it has no session with the job's commands, so
        # it waits for the projection itself.
        user = client(b, "user")
        wait_for("the end projected", lambda: user.get_run(b, run_id)["status"] != "running")
        got = user.get_run(b, run_id)
        self.assertEqual((got["status"], got["completed_calls"], got["failed_calls"]),
                         ("completed", int(completed), int(failed)))

    def test_honours_cancel(self) -> None:
        served()
        b = business()
        job = self.start(b, 2000)
        user = client(b, "user")
        try:
            wait_for("the job's run", lambda: user.get_active(b) is not None, 30)
            run = user.get_active(b)
            assert run is not None
            user.cancel_run(b, run["run_id"], "the agent went home")
            out, err = job.communicate(timeout=30)
        finally:
            if job.poll() is None:
                job.kill()
                job.communicate()
        self.assertEqual(job.returncode, 0, err)
        run_id, status, completed, failed = out.split()
        self.assertEqual((run_id, status), (run["run_id"], "cancelled"))
        self.assertLess(int(completed) + int(failed), 2000)


if __name__ == "__main__":
    unittest.main()
