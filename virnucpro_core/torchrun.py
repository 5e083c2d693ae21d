"""``virnucpro-torchrun``: torchrun, with the exit status a stopped job should have.

torchrun's agent turns SIGINT/SIGTERM into an exception that it re-raises after stopping
the ranks, so a job stopped by Ctrl-C or ``scancel`` exits 1 with a Python traceback,
whatever the ranks did. This launcher takes exactly torchrun's options and runs
torchrun's own ``main``; only a stop signal ends it differently: exit 130 (SIGINT) or
143 (SIGTERM) without a traceback, after rank 0 printed how far the run got and the
command that continues it::

    virnucpro-torchrun --nproc-per-node 4 -m virnucpro_core predict contigs.fa -o res
    python -m virnucpro_core.torchrun --nproc-per-node 4 -m virnucpro_core predict contigs.fa -o res
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(argv)
    except SignalException as exc:
        sys.exit(128 + int(exc.sigval))


if __name__ == "__main__":
    main()
