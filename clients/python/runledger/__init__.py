"""runledger: the Python client of runledger, standard library only.

A worker that cannot leave a run stuck::

    client = runledger.Client("http://127.0.0.1:8080", token)
    with client.run("acme", total_calls=len(leads), worker_id="dialer-1") as run:
        for i, lead in enumerate(leads):
            run.wait_if_paused()      # raises RunCancelled, RunEnded or LivenessLost
            place_call(lead)
            run.progress(i + 1, 0)

and a watcher of a business's active run: ``for event in client.watch("acme"): …``.
"""

import logging

from .client import Client, Policy, RunInfo
from .errors import APIError, Error, LivenessLost, RunCancelled, RunEnded, RunStopped, TransportError
from .run import Run, pace
from .watch import Event

__all__ = [
    "Client",
    "Policy",
    "RunInfo",
    "Run",
    "Event",
    "pace",
    "Error",
    "APIError",
    "TransportError",
    "RunStopped",
    "RunCancelled",
    "RunEnded",
    "LivenessLost",
]

__version__ = "0.1.0"

# A library logs to its own logger and leaves the handlers to the application.
logging.getLogger("runledger").addHandler(logging.NullHandler())
