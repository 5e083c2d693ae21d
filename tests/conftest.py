"""Shared fixtures of the core suite: the tiny model set is built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    from virnucpro_core.testing import write_tiny_model_set

    return write_tiny_model_set(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
