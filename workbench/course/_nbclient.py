"""A Jupyter kernel client for headless notebook runs that never sleeps through a message.

Measured here (jupyter_client 8.10, pyzmq, nbclient 0.11, ipykernel 7.4 and 6.31 alike): in about 1 of
10 headless runs of 00_quickstart, a cell's execute_reply reached the client's socket at once (the
kernel stamped it a tenth of a second after the request) but the client's ``poll`` never woke for it,
so papermill waited out the whole per-cell timeout before a later call found it. A ZMQ socket signals
readiness on an edge, and an edge consumed by another operation on the same socket is not signalled
again. Waiting in short slices, each a fresh ``poll`` that reads the socket's state anew, finds such
a message within a second. This module is imported only by ``workbench.course.notebooks.run_notebook``.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type

SLICE_SECONDS = 1.0  # how late a message whose wake-up was lost can be picked up


class SlicedChannel(AsyncZMQSocketChannel):
    """``get_msg`` that polls in slices of ``SLICE_SECONDS`` up to the caller's timeout."""

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = SLICE_SECONDS if deadline is None else max(0.0, min(SLICE_SECONDS, deadline - time.monotonic()))
            try:
                return await super().get_msg(timeout=wait)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise


class SlicedClient(AsyncKernelClient):
    shell_channel_class = Type(SlicedChannel)
    iopub_channel_class = Type(SlicedChannel)


class SlicedKernelManager(AsyncKernelManager):
    """The kernel manager nbclient (under papermill) starts: its clients wait with ``SlicedChannel``."""

    client_class = DottedObjectName("workbench.course._nbclient.SlicedClient")
    client_factory = Type(klass="workbench.course._nbclient.SlicedClient")
