"""`virnucpro_core.logs`: library warnings and progress bars stay off the console unless -v."""

from __future__ import annotations

import logging

import pytest

from virnucpro_core.logs import NOISY_LOGGERS, QUIET_LIBRARY_ENV, setup_logging


@pytest.fixture(autouse=True)
def restore_loggers(monkeypatch):
    for name in QUIET_LIBRARY_ENV:
        monkeypatch.delenv(name, raising=False)
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    setup_logging(0, True)
    logging.captureWarnings(False)


@pytest.mark.parametrize("quiet", [False, True])
def test_without_verbose_libraries_are_quiet_and_their_bars_off(quiet):
    import os

    setup_logging(0, quiet)
    assert {name: os.environ.get(name) for name in QUIET_LIBRARY_ENV} == QUIET_LIBRARY_ENV
    assert all(logging.getLogger(name).level == logging.ERROR for name in ("transformers", "huggingface_hub", "urllib3"))


def test_a_setting_of_the_user_is_kept(monkeypatch):
    import os

    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    setup_logging(0, False)
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"


def test_verbose_shows_the_libraries():
    import os

    setup_logging(1, False)
    assert not any(name in os.environ for name in QUIET_LIBRARY_ENV)
    assert logging.getLogger("transformers").level == logging.INFO


def test_python_warnings_of_libraries_stay_off_the_console_unless_verbose(capsys):
    import warnings

    setup_logging(0, False)
    warnings.warn("some library deprecation", FutureWarning)
    assert "some library deprecation" not in capsys.readouterr().err
    setup_logging(1, False)
    warnings.warn("shown with -v", FutureWarning)
    assert "shown with -v" in capsys.readouterr().err
