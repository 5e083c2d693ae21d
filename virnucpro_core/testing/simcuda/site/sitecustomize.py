"""Installs the simulated CUDA runtime in every Python process started under it.

``python -m virnucpro_core.testing.simcuda`` (and the ``simcuda`` pytest fixture) put
this folder first on ``PYTHONPATH`` and set ``VIRNUCPRO_SIMCUDA``; Python imports
``sitecustomize`` at start-up, so spawned workers and torchrun ranks are simulated too.
"""

import os

if os.environ.get("VIRNUCPRO_SIMCUDA"):
    from virnucpro_core.testing.simcuda import install_from_env

    install_from_env()
