"""The plugin registry: the only module that touches pluggy's ``pm.hook``.

Entry points in the group ``virnucpro`` are loaded one at a time. A plugin that fails
to import, declares a misspelt hook, or raises inside a hook is reported and skipped;
the others still load. ``VIRNUCPRO_STRICT_PLUGINS=1`` turns every such report into an
error, for plugin authors. Built-in formats are ordinary hookimpls registered first.

Everything the rest of the code needs is exposed through typed methods of
:class:`Registry` (``list_backends``, ``get_backend``, ``get_format`` ...), because
pluggy cannot type ``pm.hook.*`` calls.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pluggy

from virnucpro_core import hookspecs
from virnucpro_core.backends import Backend, version_sort_key
from virnucpro_core.errors import BackendError, VirnucproError
from virnucpro_core.formats.base import EmbeddingFormat

log = logging.getLogger(__name__)

STRICT_ENV = "VIRNUCPRO_STRICT_PLUGINS"
#: comma-separated importable module names registered as plugins without packaging (plugin
#: development and tests); read in every process, so spawned workers and torchrun ranks see them too
PLUGINS_ENV = "VIRNUCPRO_PLUGINS"

#: First-party distributions, so an error can say what to install.
KNOWN_PACKAGES: dict[tuple[str, str], str] = {
    ("esm2", "v1"): "virnucpro-esm2-v1",
    ("dnabert", "v1"): "virnucpro-dnabert-v1",
    ("dnabert", "v2"): "virnucpro-dnabert-v2",
}


class PluginLoadError(VirnucproError):
    """A plugin could not be loaded (raised only in strict mode)."""


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin and the distribution it came from."""

    name: str
    package: str
    package_version: str


@dataclass(frozen=True)
class PluginProblem:
    """Why a plugin (or one of its registrations) was skipped."""

    plugin: str
    package: str
    message: str

    def __str__(self) -> str:
        where = f"{self.plugin} ({self.package})" if self.package else self.plugin
        return f"plugin {where}: {self.message}"


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """Plugins, backends and formats known to this process."""

    def __init__(self, pm: pluggy.PluginManager | None = None, *, strict: bool = False) -> None:
        self.pm = pm or new_plugin_manager()
        self.strict = strict
        self.plugins: dict[str, PluginInfo] = {}
        self.problems: list[PluginProblem] = []
        self._backends: list[Backend] | None = None
        self._conflicts: dict[tuple[str, str], list[Backend]] = {}
        self._formats: list[EmbeddingFormat] | None = None

    # -- loading -----------------------------------------------------------------

    def _problem(self, info: PluginInfo, message: str) -> None:
        problem = PluginProblem(info.name, info.package, message)
        if self.strict:
            raise PluginLoadError(f"{problem} (strict mode: {STRICT_ENV} is set)")
        log.warning("%s; skipped", problem)
        self.problems.append(problem)

    def add_plugin(self, plugin: object, info: PluginInfo) -> bool:
        """Register one plugin object; a plugin with a bad hook is reported and skipped."""
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # pluggy.PluginValidationError, duplicate names ...
            self._problem(info, f"cannot register: {exc}")
            return False
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            self._problem(info, f"unknown hook ({exc}); check the spelling against virnucpro_core.hookspecs")
            return False
        self.plugins[info.name] = info
        self._backends = self._formats = None
        return True

    def load_entry_points(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> None:
        """Import and register every entry point of the group, one by one."""
        if entry_points is None:
            entry_points = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                package=dist.metadata["Name"] if dist is not None else "",
                package_version=dist.version if dist is not None else "",
            )
            if info.name in self.plugins:
                self._problem(info, f"entry-point name {info.name!r} is already used by {self.plugins[info.name].package}")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._problem(info, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
                continue
            self.add_plugin(plugin, info)

    def load_modules(self, names: Iterable[str]) -> None:
        """Import and register plugin modules by name (``$VIRNUCPRO_PLUGINS``), one by one."""
        import importlib

        for name in names:
            info = PluginInfo(name=name, package=f"{PLUGINS_ENV}:{name}", package_version="")
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                self._problem(info, f"failed to import {name} (named in ${PLUGINS_ENV}): {type(exc).__name__}: {exc}")
                continue
            self.add_plugin(module, info)

    # -- calling hooks -------------------------------------------------------------

    def _call_each(self, hook_name: str, make_kwargs: Callable[[list[Any]], dict[str, Any]]) -> list[tuple[PluginInfo, list[Any]]]:
        """Call a hook plugin by plugin, so one failure skips only that plugin.

        Returns what each plugin registered, attributed to its package. Hook
        implementations run in registration order (``get_hookimpls`` order; pluggy's own calls run LIFO).
        """
        caller = getattr(self.pm.hook, hook_name)
        results: list[tuple[PluginInfo, list[Any]]] = []
        for impl in caller.get_hookimpls():
            info = self.plugins.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", ""))
            collected: list[Any] = []
            kwargs = make_kwargs(collected)
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except VirnucproError:
                raise
            except Exception as exc:
                self._problem(info, f"{hook_name} raised {type(exc).__name__}: {exc}")
                continue
            results.append((info, collected))
        return results

    def _collect_backends(self) -> list[Backend]:
        if self._backends is not None:
            return self._backends
        by_key: dict[tuple[str, str], list[Backend]] = {}
        for info, items in self._call_each("register_backends", lambda acc: {"register": acc.append}):
            for item in items:
                if not isinstance(item, Backend):
                    self._problem(info, f"register_backends got {type(item).__name__}, expected virnucpro_core.backends.Backend")
                    continue
                backend = replace(item, package=info.package, package_version=info.package_version)
                by_key.setdefault((backend.family, backend.version), []).append(backend)
        self._conflicts = {}
        backends: list[Backend] = []
        for key, group in by_key.items():
            if len(group) > 1:
                self._conflicts[key] = group
                names = " and ".join(sorted(b.package or "?" for b in group))
                message = f"backend {key[0]}={key[1]} is registered by both {names}; uninstall one of them"
                if self.strict:
                    raise PluginLoadError(message)
                log.warning(message)
                continue
            backends.append(group[0])
        backends.sort(key=lambda b: (b.family, version_sort_key(b.version)))
        self._backends = backends
        return backends

    def _collect_formats(self) -> list[EmbeddingFormat]:
        if self._formats is not None:
            return self._formats
        formats: dict[str, EmbeddingFormat] = {}
        for info, items in self._call_each("register_formats", lambda acc: {"register": acc.append}):
            for item in items:
                if not isinstance(item, EmbeddingFormat):
                    self._problem(info, f"register_formats got {type(item).__name__}, expected EmbeddingFormat")
                    continue
                if item.name in formats:
                    self._problem(info, f"format {item.name!r} is already registered by {formats[item.name].package}")
                    continue
                formats[item.name] = replace(item, package=info.package, package_version=info.package_version)
        self._formats = list(formats.values())
        return self._formats

    def register_commands(self, cli: Any) -> None:
        """Let plugins add subcommands; a name clash keeps the existing command. A plugin's
        command is listed by ``virnucpro --help`` as ``[plugin PACKAGE] ...``."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            info = self.plugins.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", ""))
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                cli.commands.clear()
                cli.commands.update(before)
                self._problem(info, f"register_commands raised {type(exc).__name__}: {exc}")
                continue
            for name, command in before.items():
                if cli.commands.get(name) is not command:
                    cli.commands[name] = command
                    self._problem(info, f"command {name!r} already exists; the plugin's version is ignored")
            for name in set(cli.commands) - set(before):  # `virnucpro --help` says which plugin added it
                command = cli.commands[name]
                command.short_help = f"[plugin {info.package or info.name}] {command.get_short_help_str(limit=45)}"

    # -- typed queries -----------------------------------------------------------

    def list_backends(self) -> list[Backend]:
        """Usable backend registrations (conflicting keys excluded), sorted by key."""
        return list(self._collect_backends())

    def conflicts(self) -> dict[tuple[str, str], list[Backend]]:
        self._collect_backends()
        return dict(self._conflicts)

    def families(self) -> list[str]:
        return sorted({b.family for b in self.list_backends()})

    def installed_summary(self) -> str:
        backends = self.list_backends()
        if not backends:
            return "no backends are installed (pip install virnucpro-esm2-v1 virnucpro-dnabert-v1)"
        return ", ".join(b.describe() for b in backends)

    def get_backend(self, family: str, version: str | None = None) -> Backend:
        """The backend ``family=version``; with ``version=None`` the best available one.

        Raises :class:`BackendError` with a one-line message that lists what is
        installed and, for first-party backends, which package provides the one asked for.
        """
        self._collect_backends()
        if version is not None and (family, version) in self._conflicts:
            names = " and ".join(sorted(b.package or "?" for b in self._conflicts[(family, version)]))
            raise BackendError(f"backend {family}={version} is registered by both {names}; uninstall one of them")
        candidates = [b for b in self.list_backends() if b.family == family]
        if not candidates:
            hint = _install_hint(family, version)
            raise BackendError(f"unknown backend family {family!r}; installed: {self.installed_summary()}{hint}")
        if version is None:
            available = [b for b in candidates if b.unavailable_reason() is None]
            if not available:
                reasons = "; ".join(f"{b.key}: {b.unavailable_reason()}" for b in candidates)
                raise BackendError(f"no {family} backend can run here ({reasons})")
            return max(available, key=lambda b: version_sort_key(b.version))
        for backend in candidates:
            if backend.version == version:
                return backend
        installed = ", ".join(b.version for b in candidates)
        hint = _install_hint(family, version)
        raise BackendError(f"backend {family}={version} is not installed; installed {family} versions: {installed}{hint}")

    def list_formats(self) -> list[EmbeddingFormat]:
        return list(self._collect_formats())

    def get_format(self, name: str) -> EmbeddingFormat:
        for fmt in self._collect_formats():
            if fmt.name == name:
                return fmt
        choices = ", ".join(f.name for f in self._collect_formats()) or "none"
        raise VirnucproError(f"unknown embedding format {name!r}; choose one of: {choices}")

    def format_for_path(self, path: str | Path, name: str | None = None) -> EmbeddingFormat:
        """The format named ``name``, else the one whose suffix ends ``path``."""
        if name:
            return self.get_format(name)
        lower = str(path).lower()
        for fmt in self._collect_formats():
            if any(lower.endswith(sfx) for sfx in fmt.suffixes):
                return fmt
        known = ", ".join(f"{f.name} ({' '.join(f.suffixes)})" for f in self._collect_formats())
        raise VirnucproError(f"{path}: cannot tell the embedding format from the file name; give --format, one of: {known}")


def _install_hint(family: str, version: str | None) -> str:
    packages = [pkg for (fam, ver), pkg in KNOWN_PACKAGES.items() if fam == family and (version is None or ver == version)]
    return f"; install it with: pip install {' '.join(packages)}" if packages else ""


def load_registry(
    *,
    strict: bool | None = None,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    plugins: Sequence[tuple[object, PluginInfo]] = (),
    builtins: bool = True,
) -> Registry:
    """A registry with the built-ins, the installed entry points and ``plugins``.

    Tests pass ``entry_points=[]`` and throwaway ``plugins`` to get a fresh, isolated
    registry; the CLI uses :func:`get_registry`.
    """
    registry = Registry(strict=strict_from_env() if strict is None else strict)
    if builtins:
        from virnucpro_core import builtin_plugins
        from virnucpro_core import __version__

        registry.add_plugin(builtin_plugins, PluginInfo("builtin", "virnucpro", __version__))
    registry.load_entry_points(entry_points)
    if entry_points is None:
        registry.load_modules(m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip())
    for plugin, info in plugins:
        registry.add_plugin(plugin, info)
    return registry


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _default
    if _default is None:
        _default = load_registry()
    return _default


def reset_registry() -> None:
    """Forget the process-wide registry (tests that install plugins at run time)."""
    global _default
    _default = None
