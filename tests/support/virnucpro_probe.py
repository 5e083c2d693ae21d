"""A throwaway backend for the engine's process tests: ``probe=v1``, registered through
``$VIRNUCPRO_PLUGINS=virnucpro_probe`` (with this folder on ``PYTHONPATH``), so worker
processes and torchrun ranks, which re-resolve the backend key through the registry,
find it exactly as they find an installed plugin.

Rows are simple exact features of each sequence (length and base counts). Behaviour for
the tests comes from the environment, which every child process inherits:

- ``PROBE_DELAY``: seconds to sleep per part, so a test can act while a run is under way
- ``PROBE_FAIL``: raise ``RuntimeError`` on a part holding a sequence that contains this text
- ``PROBE_FAIL_LOAD``: raise in the factory, as a model that cannot be loaded does
- ``PROBE_PID_DIR``: each process that loads the probe leaves a file named by its pid there
- ``PROBE_DEVICE_DIR``: each process that loads the probe leaves ``<pid>.json`` there with
  the device it was given and, on CUDA, the process's current device at load time
  (so the engine's binding of devices is tested, also under the simulated CUDA device)
- ``PROBE_CLOSE_DELAY``: seconds ``close`` takes (a backend slow to release its device), so a
  test can signal again while a stopped run is still cleaning up
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np

from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend, EmbedderOptions

DIM = 6


class ProbeEmbedder:
    model_id = "probe"
    dim = DIM

    def embed(self, sequences: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        time.sleep(float(os.environ.get("PROBE_DELAY", "0")))
        marker = os.environ.get("PROBE_FAIL")
        if marker:
            for seq in sequences:
                if marker in seq:
                    raise RuntimeError(f"probe refuses sequences containing {marker}")
        rows = np.array([[len(s), s.count("A"), s.count("C"), s.count("G"), s.count("T"), len(s) % 7] for s in sequences],
                        dtype=np.float32).reshape(len(sequences), DIM)
        if progress is not None:
            progress(len(sequences))
        return rows

    def close(self) -> None:
        time.sleep(float(os.environ.get("PROBE_CLOSE_DELAY", "0")))


def make_probe(options: EmbedderOptions) -> ProbeEmbedder:
    if os.environ.get("PROBE_FAIL_LOAD"):
        raise RuntimeError(os.environ["PROBE_FAIL_LOAD"])
    if os.environ.get("PROBE_DEVICE_DIR"):
        import json

        import torch

        current = torch.cuda.current_device() if options.device.startswith("cuda") else None
        with open(os.path.join(os.environ["PROBE_DEVICE_DIR"], f"{os.getpid()}.json"), "w") as out:
            json.dump({"device": options.device, "current": current}, out)
    if os.environ.get("PROBE_PID_DIR"):
        with open(os.path.join(os.environ["PROBE_PID_DIR"], str(os.getpid())), "w"):
            pass
    return ProbeEmbedder()


PROBE_V1 = Backend(family="probe", version="v1", modality="nucleotide", dim=DIM, factory=make_probe,
                   description="test-only backend of the engine tests", default_model="probe")


@hookimpl
def register_backends(register):
    register(PROBE_V1)
