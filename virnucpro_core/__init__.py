"""VirNucPro core: stage runner, plugin registry, I/O and the published classifier.

Plugin authors import only :data:`virnucpro_core.hookimpl` and the value types in
:mod:`virnucpro_core.backends` and :mod:`virnucpro_core.formats.base`.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from virnucpro_core.hookspecs import hookimpl

try:
    __version__ = _version("virnucpro")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["hookimpl", "__version__"]
