"""Backend selection: ``--backend esm2=v2 --backend dnabert=v1`` and ``--v1-fallback``.

Selection is plain data: a family maps to a version, or to ``None`` for "the newest
version that can run here". ``--v1-fallback`` is only an alias for ``--backend esm2=v1``,
kept for users of the predecessor's CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from virnucpro_core.backends import Backend
from virnucpro_core.errors import BackendError, ConfigError
from virnucpro_core.registry import Registry

#: The published method: which family embeds each modality unless told otherwise.
DEFAULT_FAMILIES: dict[str, str] = {"protein": "esm2", "nucleotide": "dnabert"}

_SPEC = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(?:=\s*([a-z0-9][a-z0-9._-]*))?\s*$")


def parse_backend_options(values: Sequence[str], *, v1_fallback: bool = False) -> dict[str, str | None]:
    """``["esm2=v2", "dnabert"]`` → ``{"esm2": "v2", "dnabert": None}``.

    A family given twice with different versions is an error, as is a malformed item.
    """
    chosen: dict[str, str | None] = {}
    items = list(values)
    if v1_fallback:
        items.append("esm2=v1")
    for item in items:
        match = _SPEC.match(item.lower())
        if not match:
            raise ConfigError(f"--backend {item!r}: expected FAMILY=VERSION, e.g. --backend esm2=v1 (see `virnucpro backends`)")
        family, version = match.group(1), match.group(2)
        if family in chosen and chosen[family] != version:
            raise ConfigError(
                f"--backend asks for {family}={chosen[family] or 'best'} and {family}={version or 'best'}; give one"
                + (" (--v1-fallback means esm2=v1)" if v1_fallback and family == "esm2" else "")
            )
        chosen[family] = version
    return chosen


@dataclass(frozen=True)
class ResolvedBackends:
    """The backend that embeds each modality in this run."""

    by_modality: Mapping[str, Backend]

    def __getitem__(self, modality: str) -> Backend:
        return self.by_modality[modality]

    def architecture(self) -> str:
        """``esm2=v2 (virnucpro-esm2-v2 0.1.0), dnabert=v1 (virnucpro-dnabert-v1 0.1.0)``, logged by every run."""
        return ", ".join(self.by_modality[m].describe() for m in sorted(self.by_modality, reverse=True))

    def manifest(self) -> dict[str, dict[str, object]]:
        return {
            modality: {
                "family": b.family,
                "version": b.version,
                "package": b.package,
                "package_version": b.package_version,
                "dim": b.dim,
            }
            for modality, b in self.by_modality.items()
        }


def resolve_backends(
    registry: Registry,
    requested: Mapping[str, str | None],
    modalities: Sequence[str] = ("protein", "nucleotide"),
) -> ResolvedBackends:
    """Pick one backend per modality: the requested family (and version) or the default family.

    Raises :class:`BackendError` for unknown families or versions (naming what is
    installed), for a requested backend that cannot run here (with its reason), and for
    two requested families embedding the same modality.
    """
    chosen: dict[str, Backend] = {}
    for family, version in requested.items():
        backend = registry.get_backend(family, version)
        if version is not None:
            reason = backend.unavailable_reason()
            if reason:
                raise BackendError(f"backend {backend.describe()} cannot run here: {reason}; choose another with --backend (see `virnucpro backends`)")
        if backend.modality not in modalities:
            raise BackendError(f"backend {backend.key} embeds {backend.modality} sequences, which this command does not use")
        if backend.modality in chosen:
            raise BackendError(
                f"--backend {chosen[backend.modality].key} and --backend {backend.key} both embed {backend.modality} sequences; give one"
            )
        chosen[backend.modality] = backend
    for modality in modalities:
        if modality not in chosen:
            chosen[modality] = registry.get_backend(DEFAULT_FAMILIES[modality], None)
    return ResolvedBackends({m: chosen[m] for m in modalities})
