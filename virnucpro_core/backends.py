"""Value types of the embedding-backend contract.

A backend is data (:class:`Backend`): its name as ``family=version``, the modality it
embeds, its output width and a *lazy* factory. Nothing heavy is imported until the
factory runs, so listing backends stays fast. The factory receives
:class:`EmbedderOptions` and returns an object following the :class:`Embedder`
protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

Modality = Literal["protein", "nucleotide"]
MODALITIES: tuple[str, ...] = ("protein", "nucleotide")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class EmbedderOptions:
    """What the core asks of a backend when it builds an embedder.

    ``model`` is a model name the backend knows or a local path; ``None`` means the
    backend's ``default_model``. ``device`` is already resolved (``cpu``, ``cuda:1``),
    never ``auto``. ``batch_tokens``/``batch_size`` of ``None`` mean the backend's own
    default. ``max_length`` bounds how many residues/bases are pooled (``None``: the
    backend's documented default). ``extra`` holds the ``--backend-option KEY=VALUE``
    pairs routed to this backend: only keys it declares in ``Backend.options``, their
    values already checked against the declared choices.
    """

    model: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    batch_tokens: int | None = None
    batch_size: int | None = None
    revision: str | None = None
    max_length: int | None = None
    show_progress: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Embedder(Protocol):
    """A loaded model that turns sequences into fixed-width vectors.

    ``embed`` returns a float32 array of shape ``(len(sequences), dim)`` whose row
    ``i`` belongs to ``sequences[i]``, whatever order the backend batches in.
    ``dim`` is the width of the loaded model (``Backend.dim`` is that of the default
    model; a smaller ESM-2 gives fewer columns). ``model_id`` names what was loaded
    (a model name or a path) for manifests and file attributes.
    ``progress(n)`` may be called with the number of sequences finished since the last
    call, so the core can drive one progress bar over the whole input.
    An embedder may also have ``attributes`` (a ``Mapping[str, str]``, optional): how it
    ran (say ``{"attention": "sdpa_bucketed"}``); the core stores them in the output
    file's ``extra`` attributes.
    """

    model_id: str
    dim: int

    def embed(
        self, sequences: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> "np.ndarray": ...

    def close(self) -> None: ...


_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(precision: str, backend: str = "this backend"):
    """``fp32|bf16|fp16`` → the torch dtype (torch imported here, not at start-up).

    Anything else is a :class:`~virnucpro_core.errors.ConfigError` naming ``backend``.
    """
    from virnucpro_core.errors import ConfigError

    if precision not in _TORCH_DTYPES:
        raise ConfigError(f"precision {precision!r} is not supported by {backend}; choose one of {', '.join(PRECISIONS)}")
    import torch

    return getattr(torch, _TORCH_DTYPES[precision])


def positive_setting(backend: str, name: str, value: int | None) -> int | None:
    """``value`` unchanged if ``None`` or positive, else a ConfigError naming ``backend`` and ``name``."""
    from virnucpro_core.errors import ConfigError

    if value is not None and value <= 0:
        raise ConfigError(f"{backend}: {name} must be a positive number, got {value}")
    return value


def require_strings(backend: str, sequences: Sequence[object]) -> None:
    """An InputError naming the first item of ``sequences`` that is not a ``str`` (1-based)."""
    from virnucpro_core.errors import InputError

    for position, seq in enumerate(sequences):
        if not isinstance(seq, str):
            raise InputError(f"{backend}: sequence {position + 1} is a {type(seq).__name__}, not a string")


def always_available() -> str | None:
    """Availability check of a backend that runs anywhere (CPU included)."""
    return None


def fp32_everywhere(device: str) -> str:
    """Default precision of a backend that runs in fp32 unless told otherwise."""
    return "fp32"


@dataclass(frozen=True)
class BackendOption:
    """One ``--backend-option`` key a backend reads, declared on its :class:`Backend`.

    The core routes options by these declarations without importing the backend's
    code (``--backend-option attention=sdpa`` goes to every backend of the run that
    declares ``attention``; ``esm2:attention=...`` to the esm2 backend only), and
    refuses a value outside ``choices`` before any stage runs. ``choices`` empty means
    any string; the backend's ``preflight`` then checks the value.
    """

    key: str
    help: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.key):
            raise ValueError(f"backend option {self.key!r}: use lower-case letters, digits, _ and -")

    def describe(self) -> str:
        """``attention=auto|flash|sdpa: attention path`` (``k=VALUE: ...`` without choices), for listings."""
        return f"{self.key}={'|'.join(self.choices) or 'VALUE'}" + (f": {self.help}" if self.help else "")


@dataclass(frozen=True)
class Backend:
    """One installable embedding backend, keyed by ``(family, version)``.

    ``check_available`` returns ``None`` when the backend can run here, else a short
    reason ("needs CUDA", "pip install flash-attn") shown by ``virnucpro backends``.
    ``default_precision(device)`` is the precision used when the user gives none
    (``esm2=v2``: fp16 on CUDA, fp32 on a CPU); the core resolves it before the run,
    so manifests and checkpoints record the precision that really ran.
    ``package``/``package_version`` are filled in by the registry from the entry
    point that registered the backend; plugins leave them empty.

    ``options`` declares the ``--backend-option`` keys the backend reads (an undeclared
    key never reaches it). ``preflight(options)`` is the cheap check the core runs
    before the first stage of ``predict`` and before ``embed`` writes anything: resolve
    the model (local file, cache, or one short probe of where a download would come
    from) and check the options, *without loading weights*; raise a one-line
    :class:`~virnucpro_core.errors.VirnucproError` (``ModelError``, ``ConfigError``)
    saying what to do, and return the embedding width of the model the options name when
    it is known without loading it (a ``config.json``, a checkpoint's config), else ``None``.
    """

    family: str
    version: str
    modality: Modality
    dim: int
    factory: Callable[[EmbedderOptions], Embedder]
    description: str = ""
    default_model: str | None = None
    requires: tuple[str, ...] = ()
    check_available: Callable[[], str | None] = always_available
    default_precision: Callable[[str], str] = fp32_everywhere
    options: tuple[BackendOption, ...] = ()
    preflight: Callable[[EmbedderOptions], int | None] | None = None
    package: str = ""
    package_version: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.family):
            raise ValueError(f"backend family {self.family!r}: use lower-case letters, digits and _")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.version):
            raise ValueError(f"backend version {self.version!r}: use e.g. 'v1'")
        if self.modality not in MODALITIES:
            raise ValueError(f"backend {self.family}={self.version}: modality must be one of {MODALITIES}")
        if self.dim <= 0:
            raise ValueError(f"backend {self.family}={self.version}: dim must be positive")
        keys = [option.key for option in self.options]
        if len(set(keys)) != len(keys):
            raise ValueError(f"backend {self.family}={self.version}: an option key is declared twice ({', '.join(keys)})")

    @property
    def key(self) -> str:
        return f"{self.family}={self.version}"

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None``; a crashing check is a reason too."""
        try:
            return self.check_available()
        except Exception as exc:  # a plugin's check must not take the listing down
            return f"availability check failed: {exc}"

    def option(self, key: str) -> BackendOption | None:
        """The declared option ``key``, or ``None``."""
        return next((option for option in self.options if option.key == key), None)

    def describe(self) -> str:
        """``esm2=v1 (virnucpro-esm2-v1 0.1.0)``, as logged and written to manifests."""
        pkg = f"{self.package} {self.package_version}".strip()
        return f"{self.key} ({pkg})" if pkg else self.key


def version_sort_key(version: str) -> tuple:
    """Order ``v1 < v2 < v10``; non-numeric versions sort before numeric ones."""
    parts = re.findall(r"\d+|[a-z]+", version.lower())
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts if p != "v")
