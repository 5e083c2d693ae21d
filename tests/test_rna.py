"""RNA input: a record with U and no T is read as DNA (U as T), with one warning.

The outputs of an RNA file equal those of the same file with T, which are checked
against the original tool's own outputs on that DNA; a record mixing T and U is refused,
naming it, also when its T and U are far apart (in different blocks of the reader).
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core import seqio
from virnucpro_core.cli import cli
from virnucpro_core.errors import InputError
from virnucpro_core.prepare import prepare_file
from virnucpro_core.validate import validate_file

DATA = Path(__file__).parent / "data"
ORIGINAL = DATA / "original_lambda"


def lambda_dna() -> str:
    return gzip.open(DATA / "genomes" / "lambda_NC_001416.fa.gz", "rt").read()


def as_rna(text: str, lower: bool = False) -> str:
    """Every sequence line with T as U (headers kept)."""
    return "".join(line if line.startswith(">") else line.replace("T", "U").replace("t", "u")
                   for line in text.splitlines(keepends=True))


def prepared(path: Path, out: Path, size: int = 300) -> list[bytes]:
    result = prepare_file(path, out, size)
    return [p.read_bytes() for p in (result.chunked, result.nucleotide, result.protein, result.sequences_tsv)]


@pytest.mark.parametrize("block_chars", [None, 4096])
def test_rna_lambda_gives_the_original_tools_outputs_on_its_dna(tmp_path, monkeypatch, caplog, block_chars):
    if block_chars:  # a record spread over many blocks of the reader
        monkeypatch.setattr(seqio, "BLOCK_CHARS", block_chars)
    (tmp_path / "dna.fa").write_text(lambda_dna())
    (tmp_path / "rna.fa").write_text(as_rna(lambda_dna()))
    assert "T" not in "".join(as_rna(lambda_dna()).splitlines()[1:])
    with caplog.at_level(logging.WARNING):
        rna = prepared(tmp_path / "rna.fa", tmp_path / "r")
    assert rna[0] == (ORIGINAL / "lambda_chunked300.fa").read_bytes()  # the input itself, as DNA
    assert rna[1] == (ORIGINAL / "lambda_300_identified_nucleotide.fa").read_bytes()
    assert rna[2] == (ORIGINAL / "lambda_300_identified_protein.faa").read_bytes()
    assert rna[:3] == prepared(tmp_path / "dna.fa", tmp_path / "d")[:3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{tmp_path / 'rna.fa'}: 1 record(s) hold U and no T (RNA); U is read as T, so they give the results of their DNA"]


def test_lower_case_rna_and_fastq_keep_case_and_count_records(tmp_path, caplog):
    (tmp_path / "x.fq").write_text("@r1\nauggcguuuaaacccggguga\n+\nIIIIIIIIIIIIIIIIIIIII\n"
                                   "@r2\nATGGCGTTTAAACCCGGGTGA\n+\nIIIIIIIIIIIIIIIIIIIII\n"
                                   "@r3\nAUGGCGUUUAAACCCGGGUGA\n+\nIIIIIIIIIIIIIIIIIIIII\n")
    with caplog.at_level(logging.WARNING):
        result = prepare_file(tmp_path / "x.fq", tmp_path / "out", 500)
    assert result.rna_records == 2
    assert result.chunked.read_text() == (">r1_chunk_1\natggcgtttaaacccgggtga\n>r2_chunk_1\nATGGCGTTTAAACCCGGGTGA\n"
                                          ">r3_chunk_1\nATGGCGTTTAAACCCGGGTGA\n")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{tmp_path / 'x.fq'}: 2 record(s) hold U and no T (RNA); U is read as T, so they give the results of their DNA"]


@pytest.mark.parametrize("block_chars", [None, 64])
def test_a_record_with_t_and_u_is_refused_by_name(tmp_path, monkeypatch, block_chars):
    if block_chars:  # the T in one block, the U many blocks later
        monkeypatch.setattr(seqio, "BLOCK_CHARS", block_chars)
    seq = "ACGT" + "ACGA" * 100 + "ACGU"
    (tmp_path / "x.fa").write_text(f">rna1\nACGU\n>mixed desc\n{seq}\n>dna1\nACGT\n")
    with pytest.raises(InputError) as err:
        prepare_file(tmp_path / "x.fa", tmp_path / "out", 500)
    assert str(err.value) == (f"{tmp_path / 'x.fa'}: record 'mixed' holds both T and U; U is read as T only in a record without T (RNA): "
                              "fix that record (e.g. replace its U with T) and run again")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_u_record_after_a_t_record_across_a_block_boundary_is_fine(tmp_path, monkeypatch):
    monkeypatch.setattr(seqio, "BLOCK_CHARS", 64)
    (tmp_path / "x.fa").write_text(">dna\n" + "ACGT" * 40 + "\n>rna\n" + "ACGU" * 40 + "\n")
    result = prepare_file(tmp_path / "x.fa", tmp_path / "out", 500)
    assert result.rna_records == 1
    lines = "\n".join(["ACGT" * 15, "ACGT" * 15, "ACGT" * 10])
    assert result.chunked.read_text() == f">dna_chunk_1\n{lines}\n>rna_chunk_1\n{lines}\n"


def test_validate_reports_rna_as_a_warning_and_mixed_records_as_a_problem(tmp_path):
    (tmp_path / "ok.fa").write_text(">a\nACGU\n>b\nACGT\n")
    report = validate_file(tmp_path / "ok.fa")
    assert report.usable and report.ambiguous_bases == 0
    assert report.warnings[0] == "1 record(s) hold U and no T (RNA); U is read as T, so they give the results of their DNA"
    (tmp_path / "bad.fa").write_text(">a\nACGU\n>b\nACGTU\n")
    report = validate_file(tmp_path / "bad.fa")
    assert not report.usable and report.problems == [
        "record 'b' holds both T and U; U is read as T only in a record without T (RNA): fix that record "
        "(e.g. replace its U with T) and run again"]


def test_predict_on_rna_equals_predict_on_its_dna_and_run_json_says_so(tmp_path, tiny_models):
    dna = ">phage1\n" + lambda_dna().split("\n", 1)[1].replace("\n", "")[:2000] + "\n>host1\nATGAAACGCATTAGCACCACCATTACCACCACCATCACCATTACCACAGGT\n"
    (tmp_path / "dna.fa").write_text(dna)
    (tmp_path / "rna.fa").write_text(as_rna(dna))
    runs = {}
    for name in ("dna", "rna"):
        result = CliRunner().invoke(cli, ["predict", str(tmp_path / f"{name}.fa"), "-o", str(tmp_path / name),
                                          "--models-dir", str(tiny_models), "--model-type", "300"])
        assert result.exit_code == 0, result.output
        runs[name] = tmp_path / name
    assert "2 record(s) hold U and no T (RNA)" in result.output
    for output in ("prediction_results.txt", "prediction_results_highestscore.csv", "sequence_summary.tsv"):
        assert (runs["rna"] / output).read_bytes() == (runs["dna"] / output).read_bytes()
    chunks = (runs["rna"] / "prepare" / "rna_chunked300.fa").read_text()
    assert "U" not in chunks and chunks == (runs["dna"] / "prepare" / "dna_chunked300.fa").read_text()
    assert "".join(line for line in chunks.splitlines()[:8] if not line.startswith(">"))[:300] == dna.splitlines()[1][:300]
    manifest = json.loads((runs["rna"] / "run.json").read_text())
    assert manifest["stages"]["prepare"]["counts"]["rna_records"] == 2
    assert "rna_records" not in json.loads((runs["dna"] / "run.json").read_text())["stages"]["prepare"]["counts"]
