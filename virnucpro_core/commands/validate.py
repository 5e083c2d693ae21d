"""``virnucpro validate``: check an input file before spending GPU hours on it."""

from __future__ import annotations

import json

import click


@click.command(name="validate")
@click.argument("input_path", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts and pipelines).")
def validate(input_path: str, as_json: bool) -> None:
    """Check that INPUT can be prepared, and summarise it.

    INPUT is FASTA or FASTQ, plain or .gz/.bz2/.xz (detected from the content), or - for
    stdin. The whole file is read once, in constant memory. Exit status 0 means
    `virnucpro prepare`/`predict` will accept it, 1 that it would refuse it.

    \b
    Problems (the file is not usable):
      - empty file, no records, records that are all empty (no sequence at all)
      - a damaged or truncated .gz/.bz2/.xz file, binary data, text that is neither FASTA nor FASTQ
      - malformed FASTQ (quality shorter or longer than the sequence)
      - letters that are not IUPAC nucleotide codes (e.g. a protein FASTA)
      - duplicate record IDs (chunk IDs would be ambiguous)
    Warnings (accepted, but worth knowing):
      - empty records among real ones (skipped), many N/ambiguous bases (codons with them are dropped),
        RNA (U), sequences shorter than 300 bp (one short chunk each)

    \b
    Examples:
      virnucpro validate contigs.fa.gz
      zcat reads.fq.gz | virnucpro validate -
      virnucpro validate contigs.fa --json | jq .usable
    """
    from virnucpro_core.validate import validate_file

    report = validate_file(input_path)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.render())
    if not report.usable:
        raise SystemExit(1)
