"""An outbound-call job on runledger: start the run, place the calls, report
progress, honour pause and cancel, finish. Configured by the environment:
RUNLEDGER_URL, RUNLEDGER_TOKEN (a worker token), RUNLEDGER_BUSINESS, LEADS."""

import os
import random
import sys
import time
from typing import Any, Dict, List

import runledger


def place_call(lead: str) -> bool:
    """Stand-in for the dialer's real call: True when the call connected."""
    time.sleep(0.05)
    return random.random() > 0.1


def run_outbound_queue(client: runledger.Client, business: str, leads: List[str]) -> Dict[str, Any]:
    completed = failed = 0
    with client.run(business, total_calls=len(leads), worker_id="outbound-queue") as run:
        for lead in leads:
            run.wait_if_paused()  # blocks while paused; raises RunCancelled, RunEnded or LivenessLost
            if place_call(lead):
                completed += 1
            else:
                failed += 1
            run.progress(completed, failed)  # cheap: the heartbeat thread sends the latest counts
    # Here the run has ended: completed, or cancelled as a user asked (an
    # exception inside the block fails it with the exception's message).
    return run.info


def main() -> int:
    client = runledger.Client(os.environ["RUNLEDGER_URL"], os.environ["RUNLEDGER_TOKEN"], timeout=10)
    leads = ["lead-%d" % i for i in range(int(os.environ.get("LEADS", "20")))]
    try:
        final = run_outbound_queue(client, os.environ["RUNLEDGER_BUSINESS"], leads)
    except runledger.RunStopped as stop:  # RunEnded, LivenessLost: the run is no longer ours
        print("stopped:", stop.code)
        return 1
    print(final["run_id"], final["status"], final["completed_calls"], final["failed_calls"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
