"""Installs the simulated CUDA runtime in every Python process started under it.

``python -m virnucpro_core.testing.simcuda`` (and the ``simcuda`` pytest fixture) put
this folder first on ``PYTHONPATH`` and set ``VIRNUCPRO_SIMCUDA``; Python imports
``sitecustomize`` at start-up, so spawned workers and torchrun ranks are simulated too.
A ``sitecustomize`` that this one shadows (a distribution's, a virtual environment's)
still runs, first.
"""

import importlib.util
import os
import sys


def _run_shadowed() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        path = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return


_run_shadowed()
if os.environ.get("VIRNUCPRO_SIMCUDA"):
    from virnucpro_core.testing.simcuda import install_from_env

    install_from_env()
