"""`embed` checks its input as `predict` does: one line, nothing written, before any model loads."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.errors import InputError
from virnucpro_core.validate import EmbedInput, check_embed_input

PROTEIN = "MKVLEFQWPLLIIRRSTTAAGGHHKKLLMMNNPP"
DNA = "ATGGCGTTTAAACCCGGGTTTAAACCCGGGATGGCG"


def embed(*args) -> object:
    return CliRunner().invoke(cli, ["embed", *map(str, args)])


def refused(result, tmp_path: Path, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fa"]  # no output, no parts, no lock


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_an_empty_input_is_refused(tmp_path, text):
    (tmp_path / "in.fa").write_text(text)
    refused(embed(tmp_path / "in.fa", "--backend", "kmer", "-o", tmp_path / "k.h5"), tmp_path,
            f"{tmp_path / 'in.fa'} has no records; give a FASTA file with at least one sequence to embed")


def test_a_duplicated_id_is_refused(tmp_path):
    (tmp_path / "in.fa").write_text(f">a one\n{DNA}\n>b\n{DNA}\n>a two\n{DNA}\n")
    refused(embed(tmp_path / "in.fa", "--backend", "kmer", "-o", tmp_path / "k.h5"), tmp_path,
            f"{tmp_path / 'in.fa'}: record ID 'a' occurs twice (records 1 and 3); embeddings are looked up by ID, "
            "so make the IDs unique (e.g. `seqkit rename`) and run again")


def test_proteins_given_to_a_nucleotide_backend_are_refused(tmp_path):
    (tmp_path / "in.fa").write_text(f">n1\n{DNA}\n>p1\n{PROTEIN}\n")
    refused(embed(tmp_path / "in.fa", "--backend", "kmer", "-o", tmp_path / "k.h5"), tmp_path,
            f"{tmp_path / 'in.fa'}: record 'p1' has 'L' at position 4, which is not a nucleotide code, but kmer=v1 embeds "
            "nucleotides (is this a protein FASTA?); give nucleotide sequences (prepare's *_identified_nucleotide.fa) "
            "or choose a protein backend")


def test_dna_given_to_a_protein_backend_is_refused(tmp_path):
    pytest.importorskip("virnucpro_esm2_v1")
    with gzip.open(Path(__file__).parent / "data" / "genomes" / "lambda_NC_001416.fa.gz", "rt") as handle:
        (tmp_path / "in.fa").write_text(handle.read())
    refused(embed(tmp_path / "in.fa", "--backend", "esm2=v1", "-o", tmp_path / "p.h5"), tmp_path,
            f"{tmp_path / 'in.fa'}: every record looks like DNA (only A, C, G, T/U, N; e.g. 'gi|9626243|ref|NC_001416.1|'), "
            "but esm2=v1 embeds proteins; give protein sequences (prepare's *_identified_protein.faa) or choose a "
            "nucleotide backend")


def test_a_few_dna_like_records_among_proteins_are_only_counted(tmp_path):
    """ACGT are also amino acids: a short or lone such record is no proof; short records are not counted."""
    (tmp_path / "in.fa").write_text(f">p1\n{PROTEIN}\n>odd\n{DNA}\n>short\nACGT\n")
    assert check_embed_input(tmp_path / "in.fa", "protein", "esm2=v1") == EmbedInput(records=3, nucleotide_like=1)
    (tmp_path / "short.fa").write_text(">s\nACGTAC\n")
    assert check_embed_input(tmp_path / "short.fa", "protein", "esm2=v1") == EmbedInput(records=1)
    with pytest.raises(InputError, match="every record looks like DNA"):
        check_embed_input(_write(tmp_path / "dna.fa", f">d\n{DNA.lower()}\n>r\n{DNA.replace('T', 'U')}\n"), "protein", "esm2=v1")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_embed_warns_about_dna_like_records_and_still_embeds(tmp_path, tiny_models):
    pytest.importorskip("virnucpro_esm2_v1")
    (tmp_path / "in.fa").write_text(f">p1\n{PROTEIN}\n>odd\n{DNA}\n")
    result = embed(tmp_path / "in.fa", "--backend", "esm2=v1", "--models-dir", tiny_models, "-o", tmp_path / "p.h5")
    assert result.exit_code == 0, result.output
    assert (f"{tmp_path / 'in.fa'}: 1 of 2 records look like DNA (only A, C, G, T/U, N), but esm2=v1 embeds proteins; "
            "check that this is the protein file") in result.output
    assert (tmp_path / "p.h5").is_file()
