"""``virnucpro kmer-top``: a command contributed by this plugin (the ``register_commands`` hook).

It prints the most frequent k-mers of each FASTA record, which is handy to see what
the ``kmer=v1`` backend feeds a classifier. Records are read one at a time with
Biopython's parser, so memory holds one record.
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

    \b
    Example:
      virnucpro kmer-top contigs.fa -n 3
    """
    import numpy as np
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    from virnucpro_kmer.embedder import KmerEmbedder

    embedder = KmerEmbedder(k)
    letters = np.array(list("ACGT"))
    with open(fasta, encoding="utf-8") as handle:
        for title, seq in SimpleFastaParser(handle):
            row = embedder.embed([seq])[0]
            order = np.argsort(-row, kind="stable")[:top]  # ties keep column (alphabetical) order
            cells = [
                "".join(letters[(j // 4 ** np.arange(k - 1, -1, -1)) % 4]) + f":{row[j]:.4f}" for j in order if row[j] > 0
            ]
            click.echo("\t".join([title.split(None, 1)[0] if title.strip() else "", *cells]))
