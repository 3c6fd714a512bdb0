"""The child process of a sharded simulation (:func:`seawall.surge.sim.simulate` with ``shards``).

Reads one pickled shard job on stdin, runs it and writes the pickled :class:`SimResult` on stdout.
A fresh interpreter rather than :mod:`multiprocessing`: "spawn" would import the caller's main
script again (and fail in one without a ``__main__`` guard), "fork" copies whatever threads and
locks the caller holds. The pipe carries only what the parent itself produced.
"""

from __future__ import annotations

import pickle
import sys

from seawall.surge.sim import run_shard


def main() -> None:
    job = pickle.load(sys.stdin.buffer)
    result = run_shard(job)
    pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
