"""The plugin module named in the ``virnucpro`` entry point.

It only describes the backend and hands the CLI one extra command; ``embedder.py`` is
imported when the backend is selected and ``commands.py`` when the CLI starts, so
``virnucpro --help`` and ``virnucpro backends`` never pay for model code. (numpy is
cheap and the core imports it anyway; a torch-based backend must follow the same
pattern, because torch costs seconds.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend, BackendOption, Embedder, EmbedderOptions

if TYPE_CHECKING:
    import click

K = 4  # the registered dim is that of the default k; other k are an option (see embedder.py)


def make_embedder(options: EmbedderOptions) -> Embedder:
    """The lazy factory: runs only when a user selects ``--backend kmer=v1``."""
    from virnucpro_kmer.embedder import embedder_from_options

    return embedder_from_options(options)


def preflight(options: EmbedderOptions) -> int:
    """Checked before any stage runs: the options (k, no model file); the width is 4**k."""
    from virnucpro_kmer.embedder import kmer_length

    return 4 ** kmer_length(options)


KMER_V1 = Backend(
    family="kmer",
    version="v1",
    modality="nucleotide",
    dim=4**K,
    factory=make_embedder,
    description="normalised 4-mer frequencies, a fast baseline",
    default_model=f"kmer-{K}",
    options=(BackendOption("k", "k-mer length, 1 to 8 (default 4); the width is 4**k"),),
    preflight=preflight,
)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(KMER_V1)


@hookimpl
def register_commands(cli: "click.Group") -> None:
    """Add ``virnucpro kmer-top`` (optional hook; most backends add no commands)."""
    from virnucpro_kmer.commands import kmer_top

    cli.add_command(kmer_top)
