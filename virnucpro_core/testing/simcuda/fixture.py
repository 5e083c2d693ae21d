"""The ``simcuda`` pytest fixture. Import it into your ``conftest.py`` to use it::

    from virnucpro_core.testing.simcuda.fixture import simcuda  # noqa: F401

(It is deliberately not a ``pytest11`` entry point: pytest would then rewrite the
assertions of every module of the core, ``virnucpro_core.testing.contract`` included.)
Then::

    def test_on_the_second_gpu(simcuda):
        sim = simcuda(devices=2, flash_attn="ok")   # this process and every child it starts
        embedder = backend.factory(EmbedderOptions(device="cuda:1", precision="fp16", ...))

The fixture installs :func:`~virnucpro_core.testing.simcuda.install` in the test's
process and exports the configuration to child processes (``subprocess``, spawned
workers, torchrun); both are undone after the test.
"""

from __future__ import annotations

import os

import pytest

from virnucpro_core.testing import simcuda as _simcuda


@pytest.fixture
def simcuda(monkeypatch):
    """Call it with :class:`~virnucpro_core.testing.simcuda.SimConfig` fields; returns the simulator."""

    def start(**fields) -> _simcuda.Simulator:
        if "memory_gib" in fields and not isinstance(fields["memory_gib"], tuple):
            value = fields["memory_gib"]
            fields["memory_gib"] = tuple(value) if isinstance(value, (list, tuple)) else (float(value),)
        config = _simcuda.SimConfig(**fields)
        env = _simcuda.child_environment(config, dict(os.environ))
        monkeypatch.setenv(_simcuda.ENV, env[_simcuda.ENV])
        monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
        return _simcuda.install(config)

    yield start
    _simcuda.uninstall()
