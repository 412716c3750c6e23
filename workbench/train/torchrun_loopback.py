"""``torchrun`` for one machine whose stores listen on 127.0.0.1 only: ``python -m
workbench.train.torchrun_loopback ARGS`` is ``python -m torch.distributed.run ARGS``, except that every
``TCPStore`` server it starts (the rendezvous and the agent's store, which the ranks join) listens on
loopback.

PyTorch's ``TCPStore`` server binds every interface, whatever host it is given, so a single-machine
``--standalone`` launch otherwise opens two ports to the network for as long as it runs: anyone who
reaches them could join or disturb the rendezvous. ``TCPStore`` does take a listening socket made by
the caller (``master_listen_fd``); here that socket is bound to 127.0.0.1 first. Launches that span
machines keep torchrun's own behaviour: their nodes must reach node 0's store.
"""

from __future__ import annotations

import datetime
import socket
import sys

import torch.distributed as dist


class LoopbackTCPStore(dist.TCPStore):
    """A ``TCPStore`` whose server side listens on 127.0.0.1 (clients are unchanged)."""

    def __init__(
        self,
        host_name: str,
        port: int,
        world_size: int | None = None,
        is_master: bool = False,
        timeout: datetime.timedelta = datetime.timedelta(seconds=300),
        wait_for_workers: bool = True,
        multi_tenant: bool = False,
        master_listen_fd: int | None = None,
        use_libuv: bool = True,
    ):
        if is_master and master_listen_fd is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(socket.SOMAXCONN)
            master_listen_fd = listener.detach()  # the store owns and closes it
        super().__init__(
            host_name, port, world_size, is_master, timeout, wait_for_workers, multi_tenant, master_listen_fd, use_libuv
        )


def main(argv: list[str]) -> None:
    dist.TCPStore = LoopbackTCPStore  # before torchrun's modules import the name
    from torch.distributed import run

    run.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
