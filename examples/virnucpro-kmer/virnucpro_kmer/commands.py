"""``virnucpro kmer-top``: a command contributed by this plugin (the ``register_commands`` hook).

It prints the most frequent k-mers of each FASTA record, which is handy to see what
the ``kmer=v1`` backend feeds a classifier. Records are read one at a time with the
core's reader (:class:`virnucpro_core.seqio.RecordStream`), so memory holds one record,
compressed files open as they do for ``predict``, and a file that is not FASTA/FASTQ
text is a one-line error rather than a traceback.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="kmer-top")
@click.argument("fasta", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", type=click.IntRange(1, 8), default=4, show_default=True, help="k-mer length.")
@click.option("-n", "--top", type=click.IntRange(min=1), default=5, show_default=True, help="k-mers shown per record.")
def kmer_top(fasta: Path, k: int, top: int) -> None:
    """Print the TOP most frequent k-mers of every record of FASTA (tab-separated).

    FASTA may be FASTA or FASTQ, plain or .gz/.bz2/.xz.

    \b
    Example:
      virnucpro kmer-top contigs.fa -n 3
    """
    import numpy as np

    from virnucpro_core.errors import InputError
    from virnucpro_core.seqio import RecordStream
    from virnucpro_kmer.embedder import KmerEmbedder

    embedder = KmerEmbedder(k)
    letters = np.array(list("ACGT"))
    with RecordStream(fasta) as stream:
        if stream.empty or stream.format is None:
            raise InputError(f"{fasta} has no records; give a FASTA or FASTQ file")
        for record in stream:
            row = embedder.embed([record.seq])[0]
            order = np.argsort(-row, kind="stable")[:top]  # ties keep column (alphabetical) order
            cells = [
                "".join(letters[(j // 4 ** np.arange(k - 1, -1, -1)) % 4]) + f":{row[j]:.4f}" for j in order if row[j] > 0
            ]
            click.echo("\t".join([record.id, *cells]))
