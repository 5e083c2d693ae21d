"""The original VirNucPro preprocessing, re-stated plainly: the test oracle and benchmark baseline.

This follows ``split_fasta_chunk`` / ``translate_dna`` / ``identify_seq`` /
``process_record`` of the original ``units.py`` and the writing loop of its
``prediction.py`` step by step, with Biopython objects and a per-codon dictionary,
deliberately slow and literal. :mod:`virnucpro_core.prepare` must produce the same
bytes. Records of length 0 crash the original (division by zero) and crash here too.
"""

from __future__ import annotations

from pathlib import Path

#: The original's codon dictionary: standard code, ``*`` for stops.
_CODONS = {
    "TTT": "F", "TTC": "F", "TTA": "L", "TTG": "L", "CTT": "L", "CTC": "L", "CTA": "L", "CTG": "L",
    "ATT": "I", "ATC": "I", "ATA": "I", "ATG": "M", "GTT": "V", "GTC": "V", "GTA": "V", "GTG": "V",
    "TCT": "S", "TCC": "S", "TCA": "S", "TCG": "S", "CCT": "P", "CCC": "P", "CCA": "P", "CCG": "P",
    "ACT": "T", "ACC": "T", "ACA": "T", "ACG": "T", "GCT": "A", "GCC": "A", "GCA": "A", "GCG": "A",
    "TAT": "Y", "TAC": "Y", "TAA": "*", "TAG": "*", "CAT": "H", "CAC": "H", "CAA": "Q", "CAG": "Q",
    "AAT": "N", "AAC": "N", "AAA": "K", "AAG": "K", "GAT": "D", "GAC": "D", "GAA": "E", "GAG": "E",
    "TGT": "C", "TGC": "C", "TGA": "*", "TGG": "W", "CGT": "R", "CGC": "R", "CGA": "R", "CGG": "R",
    "AGT": "S", "AGC": "S", "AGA": "R", "AGG": "R", "GGT": "G", "GGC": "G", "GGA": "G", "GGG": "G",
}


def _chunk_file(input_fasta: Path, output: Path, size: int) -> None:
    from Bio import SeqIO

    with open(output, "w") as out:
        for record in SeqIO.parse(str(input_fasta), "fasta"):
            length = len(record.seq)
            n = -(-length // size)  # ZeroDivisionError below for length 0, as in the original
            overlap = n * size - length
            low = int(overlap / n)
            extra = overlap - low * (n - 1)
            shifts = [low + 1] * extra + [low] * (n - 1 - extra) + [0]
            moved = 0
            for a, shift in zip(range(0, length, size), shifts):
                piece = record[a - moved : a - moved + size] if a > 1 else record[a : a + size]
                piece.id = f"{record.id}_chunk_{a // size + 1}"
                piece.description = ""
                SeqIO.write(piece, out, "fasta")
                moved += shift


def _revcomp(seq: str) -> str:
    return seq.translate(str.maketrans("ACGTacgt", "TGCAtgca"))[::-1]


def _translate(seq: str) -> list[str]:
    def frame(s: str, start: int) -> str:
        return "".join(_CODONS.get(s[i : i + 3], "") for i in range(start, len(s) - 2, 3))

    rc = _revcomp(seq)
    return [frame(seq, f) for f in range(3)] + [frame(rc, f) for f in range(3)]


def _identify(seqid: str, seq: str) -> list[tuple[str, str, str]]:
    found = []
    for num, protein in enumerate(_translate(seq), start=1):
        if "*" in protein:
            continue
        span = 3 * len(protein)
        if num <= 3:
            nucleotide = seq[num - 1 : num + span]
            name = f"{seqid}F{num}"
        else:
            nucleotide = _revcomp(seq)[num - 4 : num - 3 + span]
            name = f"{seqid}R{num - 3}"
        found.append((name, nucleotide, protein))
    return found


def original_prepare(input_fasta: Path, outdir: Path, chunk_size: int) -> tuple[Path, Path, Path]:
    """Write ``<stem>_chunked<N>.fa``, ``<stem>_identified_nucleotide.fa``, ``<stem>_identified_protein.faa``.

    ``input_fasta`` is an uncompressed FASTA file; the stem is its name without the
    last suffix. Returns the three paths.
    """
    from Bio import SeqIO

    input_fasta, outdir = Path(input_fasta), Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = input_fasta.name.rsplit(".", 1)[0] if "." in input_fasta.name else input_fasta.name
    chunked = outdir / f"{stem}_chunked{chunk_size}.fa"
    nucleotide = outdir / f"{stem}_identified_nucleotide.fa"
    protein = outdir / f"{stem}_identified_protein.faa"
    _chunk_file(input_fasta, chunked, chunk_size)
    with open(nucleotide, "w") as dna_out, open(protein, "w") as protein_out:
        for record in list(SeqIO.parse(str(chunked), "fasta")):
            for name, dna, aa in _identify(record.id, str(record.seq).upper()):
                if aa != "":
                    dna_out.write(f">{name}\n{dna}\n")
                    protein_out.write(f">{name}\n{aa}\n")
    return chunked, nucleotide, protein
