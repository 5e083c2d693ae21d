"""The hooks a VirNucPro plugin may implement.

A plugin is an importable module (or object) with functions decorated by
:data:`hookimpl`, named in its package's entry points under the group ``virnucpro``::

    [project.entry-points.virnucpro]
    my_backend = "my_package.plugin"

Every hook takes a callback and calls it once per thing it provides, in the style of
simonw/llm. Only :mod:`virnucpro_core.registry` calls these hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from virnucpro_core.backends import Backend
    from virnucpro_core.formats.base import EmbeddingFormat

PROJECT_NAME = "virnucpro"
ENTRY_POINT_GROUP = "virnucpro"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backends(register: "Callable[[Backend], None]") -> None:
    """Register embedding backends by calling ``register(Backend(...))``.

    The plugin receives ``register``; it must call it once per backend it ships and
    return nothing. Keep the module cheap to import: load torch and model code inside
    the factory, which runs only when the backend is selected. A complete plugin::

        from virnucpro_core import hookimpl
        from virnucpro_core.backends import Backend

        def _make(options):
            from my_package.model import MyEmbedder   # heavy imports here
            return MyEmbedder(options)               # has .model_id, .embed(), .close()

        @hookimpl
        def register_backends(register):
            register(Backend(family="kmer", version="v1", modality="nucleotide",
                             dim=256, factory=_make, description="4-mer frequencies"))

    Two packages registering the same ``(family, version)`` is an error naming both.
    Optionally declare the ``--backend-option`` keys the backend reads
    (``options=(BackendOption("k", "k-mer length"),)``) and a cheap ``preflight(options)``
    that finds the model without loading it and returns its width (or ``None``); the core
    runs it before any stage (docs/writing-a-backend.md, section 6b).
    """


@hookspec
def register_formats(register: "Callable[[EmbeddingFormat], None]") -> None:
    """Register embedding file formats by calling ``register(EmbeddingFormat(...))``.

    A format is a reader/writer pair (see :mod:`virnucpro_core.formats.base`).
    Converting between formats is "read with one, write with the other", batch by
    batch. A complete plugin::

        from virnucpro_core import hookimpl
        from virnucpro_core.formats.base import EmbeddingFormat

        def _reader(path):
            from my_package.npz_format import NpzReader
            return NpzReader(path)

        def _writer(path, meta):
            from my_package.npz_format import NpzWriter
            return NpzWriter(path, meta)

        @hookimpl
        def register_formats(register):
            register(EmbeddingFormat(name="npz", suffixes=(".npz",),
                                     open_reader=_reader, open_writer=_writer,
                                     description="numpy archive"))
    """


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add subcommands to the ``virnucpro`` command line. Optional.

    The plugin receives the top-level click group and decorates new commands on it::

        import click
        from virnucpro_core import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command(name="kmer-stats")
            @click.argument("fasta")
            def kmer_stats(fasta):
                "Print k-mer statistics of FASTA."
                ...

    A command name already taken by the core or another plugin is reported and skipped.
    """
