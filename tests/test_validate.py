"""``validate`` tells the user, before a long run, whether ``prepare`` will accept a file."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.validate import validate_file

DATA = Path(__file__).parent / "data"


def test_lambda_is_usable(tmp_path):
    shutil.copy(DATA / "genomes" / "lambda_NC_001416.fa.gz", tmp_path / "lambda.fa.gz")
    report = validate_file(tmp_path / "lambda.fa.gz")
    assert report.usable and report.problems == [] and report.warnings == []
    assert (report.format, report.compression, report.records, report.total_bases) == ("fasta", "gzip", 1, 48502)
    assert (report.min_length, report.max_length, report.mean_length) == (48502, 48502, 48502.0)
    assert report.ambiguous_bases == 0 and report.duplicate_ids == [] and report.empty_records == []


def test_statistics_and_warnings(tmp_path):
    (tmp_path / "x.fq").write_text(
        "@r1\nACGTNNNNNN\n+\nIIIIIIIIII\n@r2\nacgu\n+\nIIII\n@r3\n\n+\n\n"
    )
    report = validate_file(tmp_path / "x.fq")
    assert report.usable and report.format == "fastq"
    assert (report.records, report.total_bases, report.min_length, report.max_length, report.mean_length) == (3, 14, 4, 10, 7.0)
    assert report.ambiguous_bases == 6 and report.ambiguous_fraction == 6 / 14  # u of the RNA read r2 is read as t
    assert report.lowercase_fraction == 4 / 14
    assert report.empty_records == ["r3"] and report.empty_count == 1
    assert report.short_records == 2
    text = "\n".join(report.warnings)
    assert "1 record(s) hold U and no T (RNA); U is read as T" in text
    assert "1 empty record(s), e.g. 'r3': prepare skips them" in text
    assert "42.9% of bases are not A/C/G/T" in text
    assert "2 sequence(s) shorter than 300 bp become one short chunk each" in text


def test_protein_and_duplicates_are_problems(tmp_path):
    (tmp_path / "p.faa").write_text(">p1\nMKVLAAGIVG\n>p2\nACGT\n>p2\nACGT\n")
    report = validate_file(tmp_path / "p.faa")
    assert not report.usable
    assert report.non_nucleotide_records == ["p1"] and report.duplicate_ids == ["p2"]
    assert report.problems == [
        "1 duplicate record ID(s), e.g. 'p2': chunk IDs would be ambiguous; make IDs unique",
        "1 record(s) are not nucleotide sequences (record 'p1' has 'L' at position 4 (not an IUPAC nucleotide code)); "
        "VirNucPro needs DNA (is this a protein FASTA?)",
    ]


def test_duplicate_list_is_capped_but_counted(tmp_path):
    (tmp_path / "d.fa").write_text("".join(f">s{i % 30}\nACGT\n" for i in range(100)))
    report = validate_file(tmp_path / "d.fa")
    assert report.duplicate_count == 70 and len(report.duplicate_ids) == 20


def test_unreadable_inputs_are_reported_not_raised(tmp_path):
    (tmp_path / "e.fa").write_bytes(gzip.compress(b""))
    assert validate_file(tmp_path / "e.fa").problems == [f"{tmp_path / 'e.fa'} is empty"]
    (tmp_path / "t.txt").write_text("just text\n")
    assert "is neither FASTA nor FASTQ" in validate_file(tmp_path / "t.txt").problems[0]
    missing = validate_file(tmp_path / "nope.fa")
    assert not missing.usable and "no such file" in missing.problems[0]


def test_cli_exit_status_and_json(tmp_path):
    (tmp_path / "ok.fa").write_text(">a\nACGT\n")
    (tmp_path / "bad.fa").write_text(">a\nMKLE\n")
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", str(tmp_path / "ok.fa")])
    assert ok.exit_code == 0 and f"{tmp_path / 'ok.fa'}: usable" in ok.output
    bad = runner.invoke(cli, ["validate", str(tmp_path / "bad.fa")])
    assert bad.exit_code == 1 and "NOT usable" in bad.output and "Problems:" in bad.output
    as_json = runner.invoke(cli, ["validate", "--json", str(tmp_path / "bad.fa")])
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data["usable"] is False and data["non_nucleotide_records"] == ["a"]


def test_cli_reads_stdin_and_help_teaches():
    runner = CliRunner()
    result = runner.invoke(cli, ["validate", "-"], input=">a\nACGTN\n")
    assert result.exit_code == 0 and result.output.startswith("stdin: usable")
    help_text = runner.invoke(cli, ["validate", "--help"]).output
    assert "zcat reads.fq.gz | virnucpro validate -" in help_text and "--json" in help_text
