"""Discovery through the installed entry point, exactly as users get it.

These need the package installed: pip install -e examples/virnucpro-kmer
"""

import importlib.util
import json
import subprocess
import sys
from importlib import metadata

import pytest

import virnucpro_kmer
from virnucpro_core.backends import EmbedderOptions
from virnucpro_core.registry import load_registry

NOT_INSTALLED = "virnucpro-kmer is not installed; run: pip install -e examples/virnucpro-kmer"


def test_entry_point_is_declared_in_group_virnucpro():
    eps = [ep for ep in metadata.entry_points(group="virnucpro") if ep.name == "kmer"]
    assert eps, NOT_INSTALLED
    assert eps[0].value == "virnucpro_kmer.plugin"
    assert eps[0].dist.metadata["Name"] == "virnucpro-kmer"


def test_registry_finds_the_backend_and_names_its_package():
    registry = load_registry()
    assert [p for p in registry.problems if p.package == "virnucpro-kmer"] == []
    backend = registry.get_backend("kmer", "v1")
    assert backend.package == "virnucpro-kmer", NOT_INSTALLED
    assert backend.package_version == virnucpro_kmer.__version__ == metadata.version("virnucpro-kmer")
    assert (backend.modality, backend.dim, backend.unavailable_reason()) == ("nucleotide", 256, None)
    assert backend.describe() == f"kmer=v1 (virnucpro-kmer {virnucpro_kmer.__version__})"
    # with no version, the best available kmer backend is this one
    assert registry.get_backend("kmer") == backend

    embedder = backend.factory(EmbedderOptions())
    try:
        assert (embedder.model_id, embedder.dim) == ("kmer-4", backend.dim)
        assert embedder.embed(["AAAAA"])[0, 0] == 1.0
    finally:
        embedder.close()


def test_plugin_loads_in_strict_mode():
    # strict mode turns any problem with this plugin into an error
    registry = load_registry(strict=True, entry_points=[ep for ep in metadata.entry_points(group="virnucpro") if ep.name == "kmer"])
    assert registry.get_backend("kmer", "v1").package == "virnucpro-kmer", NOT_INSTALLED


def test_importing_the_plugin_does_not_import_the_embedder():
    probe = "import sys, virnucpro_kmer.plugin; print('virnucpro_kmer.embedder' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(
    importlib.util.find_spec("virnucpro_core.commands.backends") is None,
    reason="the core's `virnucpro backends` command (virnucpro_core.commands.backends) is not written yet",
)
def test_virnucpro_backends_json_lists_it():
    proc = subprocess.run(
        [sys.executable, "-m", "virnucpro_core", "backends", "--json"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    rows = [row for row in json.loads(proc.stdout) if row["family"] == "kmer"]
    assert len(rows) == 1, rows
    expected = {
        "family": "kmer",
        "version": "v1",
        "modality": "nucleotide",
        "dim": 256,
        "package": "virnucpro-kmer",
        "package_version": virnucpro_kmer.__version__,
        "available": True,
        "reason": None,
        "description": "normalised 4-mer frequencies, a fast baseline",
    }
    # the documented keys with these values; the core may add more keys
    assert {key: rows[0].get(key) for key in expected} == expected


def test_the_plugin_adds_the_kmer_top_command(tmp_path):
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a first record\nACGTAC\nGT\n>b\nGATTACA\n>short\nAC\n")
    proc = subprocess.run(
        [sys.executable, "-m", "virnucpro_core", "kmer-top", str(fasta), "-n", "2"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    # ACGTACGT: ACGT 2/5 then CGTA, GTAC, TACG 1/5 each (ties in column order); GATTACA: 4 k-mers at 1/4
    assert proc.stdout == "a\tACGT:0.4000\tCGTA:0.2000\nb\tATTA:0.2500\tGATT:0.2500\nshort\n"
    listed = subprocess.run([sys.executable, "-m", "virnucpro_core", "--help"], capture_output=True, text=True, check=True)
    assert "kmer-top   [plugin virnucpro-kmer] Print the TOP most frequent" in listed.stdout


def test_kmer_top_reads_compressed_input_and_refuses_binary_in_one_line(tmp_path):
    import gzip

    with gzip.open(tmp_path / "x.fa.gz", "wt") as handle:
        handle.write(">b\nGATTACA\n")
    run = [sys.executable, "-m", "virnucpro_core", "kmer-top"]
    proc = subprocess.run([*run, str(tmp_path / "x.fa.gz"), "-n", "2"], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, "b\tATTA:0.2500\tGATT:0.2500\n"), proc.stderr
    (tmp_path / "x.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" * 8)
    proc = subprocess.run([*run, str(tmp_path / "x.bin")], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"Error: {tmp_path / 'x.bin'} contains binary data, not FASTA/FASTQ text; "
                           "give a FASTA or FASTQ file (plain, .gz, .bz2 or .xz)\n")


def test_the_preflight_gives_the_width_of_the_asked_k_and_refuses_bad_options():
    """Run by the core before any stage: 4**k columns, or the one-line error the factory would give."""
    from virnucpro_core.errors import BackendError
    from virnucpro_core.preflight import check_backend

    from virnucpro_kmer.plugin import KMER_V1

    assert check_backend(KMER_V1, EmbedderOptions()) == 256
    assert check_backend(KMER_V1, EmbedderOptions(extra={"k": "3"})) == 64
    with pytest.raises(BackendError, match=r"^kmer=v1: k must be a whole number from 1 to 8, got '9'$"):
        check_backend(KMER_V1, EmbedderOptions(extra={"k": "9"}))
    with pytest.raises(BackendError, match="has no model files"):
        check_backend(KMER_V1, EmbedderOptions(model="/models/esm2.pt"))
