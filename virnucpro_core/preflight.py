"""The preflight: check every model, option and width before the first stage writes anything.

Without it a missing ESM-2 checkpoint, an unreachable hub or a mistyped backend option
surfaced only when its stage loaded the model: after ``prepare`` and the whole nucleotide
stage, hours into a real run. ``predict`` and ``embed`` call :func:`check_backend` for
every backend of the run before they create their output; each check takes seconds at
most (a file's header, a ``config.json``, one short network probe), never loads weights.

What a model is and how it is found stays in the plugins (``Backend.preflight``); the
core checks what it can tell from the descriptor alone (declared option values) and turns
a crashing plugin check into one line naming the plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from virnucpro_core.backends import Backend, EmbedderOptions
from virnucpro_core.errors import BackendError, ConfigError, VirnucproError

log = logging.getLogger(__name__)


def check_option_values(backend: Backend, extra: Mapping[str, str]) -> None:
    """A ConfigError naming the backend, key and allowed values for a value outside a declared option's choices."""
    for key, value in extra.items():
        option = backend.option(key)
        if option is not None and option.choices and value not in option.choices:
            raise ConfigError(f"--backend-option {backend.family}:{key}={value}: {backend.key} takes {key}="
                              f"{'|'.join(option.choices)}")


def check_backend(backend: Backend, options: EmbedderOptions) -> int | None:
    """Check ``backend`` can run with ``options`` without loading its model; its width when known.

    Raises the plugin's one-line :class:`VirnucproError`; anything else a plugin's check
    raises becomes a :class:`BackendError` naming the backend and its package, so a
    broken check never shows a traceback to the user nor lets the run start blind.
    """
    check_option_values(backend, options.extra)
    if backend.preflight is None:
        return None
    try:
        width = backend.preflight(options)
    except VirnucproError:
        raise
    except Exception as exc:
        from virnucpro_core.hub import first_line

        raise BackendError(f"backend {backend.describe()}: its preflight check failed ({first_line(exc)}); "
                           "this is a bug in the plugin, please report it to its authors") from exc
    if width is not None and (not isinstance(width, int) or width <= 0):
        raise BackendError(f"backend {backend.describe()}: its preflight check returned width {width!r}, not a positive int; "
                           "this is a bug in the plugin, please report it to its authors")
    if width is not None:
        log.debug("preflight %s: model %s, width %d", backend.key, options.model or backend.default_model, width)
    return width
