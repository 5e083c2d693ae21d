"""Shared fixtures of the core suite: the tiny model set is built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from virnucpro_core.testing.simcuda.fixture import simcuda  # noqa: F401  (the simulated CUDA device fixture)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    from virnucpro_core.testing import write_tiny_model_set

    return write_tiny_model_set(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


SUPPORT = Path(__file__).parent / "support"


class Cli:
    """``python -m virnucpro_core`` in a real subprocess, with the test-only ``probe=v1``
    backend (``tests/support/virnucpro_probe.py``) visible through ``$VIRNUCPRO_PLUGINS``,
    so worker processes and torchrun ranks find it as they find an installed plugin."""

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        import os

        out = dict(os.environ)
        out["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), *filter(None, [out.get("PYTHONPATH")])])
        out["VIRNUCPRO_PLUGINS"] = "virnucpro_probe"
        out.update(extra)
        return out

    def run(self, *args: str, **extra: str):
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-m", "virnucpro_core", *args], capture_output=True, text=True,
                              env=self.env(**extra), timeout=600)

    def start(self, *args: str, **extra: str):
        import subprocess
        import sys

        return subprocess.Popen([sys.executable, "-m", "virnucpro_core", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(**extra))

    def torchrun(self, *args: str, ranks: int = 2, **extra: str):
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                               "-m", "virnucpro_core", *args], capture_output=True, text=True, env=self.env(**extra), timeout=600)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


def write_reads(path: Path, count: int, *, marked: int, seed: int) -> Path:
    """``count`` random DNA records ``read1..``; record ``marked`` holds ``NNNNNN``, which
    the probe backend refuses when ``PROBE_FAIL=NNNNNN``."""
    import random

    rng = random.Random(seed)
    with open(path, "w") as out:
        for i in range(1, count + 1):
            seq = "ACGTNNNNNNACGT" if i == marked else "".join(rng.choice("ACGT") for _ in range(rng.randint(30, 300)))
            out.write(f">read{i} sample\n{seq}\n")
    return path


@pytest.fixture(scope="session")
def reads_factory():
    return write_reads
