"""End to end: `virnucpro predict` with the installed first-party plugins and tiny models.

The default backends are the newest installed (esm2=v2 and dnabert=v2 here), as for a user;
dnabert=v1 must give the same nucleotide embeddings on the same tiny set.

Needs at least esm2=v1, dnabert=v1 and dnabert=v2 installed (requirements-dev.txt does that);
the tests are skipped, with the reason, where they are not. The ESM-2 backend is whatever the
default resolves to (esm2=v2 where installed).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.registry import load_registry

DATA = Path(__file__).parent / "data"

_installed = {b.key for b in load_registry().list_backends()}
pytestmark = pytest.mark.skipif(
    not {"esm2=v1", "dnabert=v1", "dnabert=v2"} <= _installed,
    reason="needs virnucpro-esm2-v1, virnucpro-dnabert-v1 and virnucpro-dnabert-v2 installed (pip install -r requirements-dev.txt)",
)


_ESM2 = load_registry().get_backend("esm2") if "esm2=v1" in _installed else None
#: The embedder class a default run uses, for the test that interrupts it.
_ESM2_EMBEDDER = {"v1": ("virnucpro_esm2_v1.embedder", "Esm2V1Embedder"),
                  "v2": ("virnucpro_esm2_v2.embedder", "Esm2V2Embedder")}.get(_ESM2.version if _ESM2 else "v1")


def h5_ids(path: Path) -> list[str]:
    import h5py

    with h5py.File(path, "r") as f:
        return [x.decode() if isinstance(x, bytes) else x for x in f["ids"][:]]


def fasta_ids(path: Path) -> list[str]:
    return [line[1:].split()[0] for line in path.read_text().splitlines() if line.startswith(">")]


@pytest.fixture(scope="module")
def two_genomes(tmp_path_factory) -> Path:
    """Phage lambda (a virus) and 60 kb of H. pylori (a host), in one FASTA."""
    path = tmp_path_factory.mktemp("input") / "mixed.fa"
    with open(path, "w") as out:
        for name in ("lambda_NC_001416.fa.gz", "hpylori_G27_first60kb.fa.gz"):
            out.write(gzip.open(DATA / "genomes" / name, "rt").read())
        out.write(">tiny_no_frames short read, a stop codon in all six frames\nCCTAGTTTAGCTTAA\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, two_genomes, tiny_models) -> tuple[Path, object]:
    outdir = tmp_path_factory.mktemp("run") / "out"
    result = CliRunner().invoke(cli, ["predict", str(two_genomes), "-o", str(outdir), "--models-dir", str(tiny_models),
                                      "--device", "cpu", "-q", "--checkpoint-every", "100", "--keep-embeddings"])
    return outdir, result


def test_predict_writes_every_output_with_consistent_counts(run, two_genomes):
    outdir, result = run
    assert result.exit_code == 0, result.output
    prep = outdir / "prepare"
    frames = fasta_ids(prep / "mixed_identified_protein.faa")
    assert fasta_ids(prep / "mixed_identified_nucleotide.fa") == frames
    assert len(frames) == len(set(frames)) > 100
    # every frame exactly once, in order, in both embedding files and in the per-frame results
    assert h5_ids(outdir / "embeddings" / "nucleotide.h5") == frames
    assert h5_ids(outdir / "embeddings" / "protein.h5") == frames
    lines = (outdir / "prediction_results.txt").read_text().splitlines()
    assert lines[0] == "Sequence_ID\tPrediction\tscore1\tscore2"
    assert [line.split("\t")[0] for line in lines[1:]] == frames
    chunks = sorted({f[:-2] for f in frames})
    consensus = (outdir / "prediction_results_highestscore.csv").read_text().splitlines()
    assert consensus[0] == "Modified_ID\tIs_Virus"
    assert [line.split("\t")[0] for line in consensus[1:]] == chunks
    summary = [line.split("\t") for line in (outdir / "sequence_summary.tsv").read_text().splitlines()]
    assert [row[0] for row in summary[1:]] == ["gi|9626243|ref|NC_001416.1|", "gi|208433976|ref|NC_011333.1|_1-60000", "tiny_no_frames"]
    by_id = {row[0]: dict(zip(summary[0], row)) for row in summary[1:]}
    assert by_id["tiny_no_frames"]["call"] == "no_frames"
    assert int(by_id["gi|9626243|ref|NC_001416.1|"]["chunks"]) == 98
    assert sum(int(r["frames_scored"]) for r in by_id.values()) == len(frames)
    manifest = json.loads((outdir / "run.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["info"]["architecture"] == f"{_ESM2.describe()}, dnabert=v2 (virnucpro-dnabert-v2 0.1.0)"
    counts = manifest["counts"]
    assert counts["prepare"]["sequences"] == 3 and counts["prepare"]["frames"] == len(frames)
    assert counts["classify"]["parts_computed"] == -(-len(frames) // 100)
    assert counts["classify"]["nucleotide"]["dim"] == counts["classify"]["protein"]["dim"] == 32
    assert counts["classify"]["frames_scored"] == len(frames) and counts["classify"]["chunks"] == len(chunks)
    assert manifest["warning"].startswith("RANDOM TINY MODELS")
    assert "NOT biologically meaningful" in (outdir / "WARNING_TINY_MODELS.txt").read_text()
    assert not (outdir / "checkpoints").exists()
    viral = fasta_ids(outdir / "viral_sequences.fa")
    assert viral == [row[0] for row in summary[1:] if row[-1] == "virus"]


def h5_embeddings(path: Path):
    import h5py

    with h5py.File(path, "r") as f:
        return f["embeddings"][:], json.loads(f.attrs["extra"]), f.attrs["version"]


def test_default_dnabert_v2_embeddings_equal_dnabert_v1_on_the_init_tiny_set(run, tmp_path, tiny_models):
    """Done-when of the dnabert=v2 issue: same nucleotide embeddings as v1, which runs the folder's remote code."""
    import numpy as np

    outdir, result = run
    assert result.exit_code == 0, result.output
    nucleotide = outdir / "prepare" / "mixed_identified_nucleotide.fa"
    v1_out = tmp_path / "v1.h5"
    folder = tiny_models / json.loads((tiny_models / "models.json").read_text())["dnabert"]
    done = CliRunner().invoke(cli, ["embed", str(nucleotide), "-o", str(v1_out), "--backend", "dnabert=v1",
                                    "--model", str(folder), "--device", "cpu", "-q"])
    assert done.exit_code == 0, done.output
    v2, v2_extra, v2_version = h5_embeddings(outdir / "embeddings" / "nucleotide.h5")
    v1, _, v1_version = h5_embeddings(v1_out)
    assert (v2_version, v1_version) == ("v2", "v1")
    assert v2.shape == v1.shape and v2.shape[0] > 100
    assert np.abs(v2 - v1).max() <= 1e-5
    assert v2_extra == {"attention": "sdpa_bucketed", "precision": "fp32"}  # how v2 ran, in the file


def test_predict_reports_architecture_and_tiny_warning(run):
    _, result = run
    assert f"architecture: {_ESM2.describe()}, dnabert=v2 (virnucpro-dnabert-v2 0.1.0)" in result.output
    assert "WARNING: RANDOM TINY MODELS" in result.output


def test_prepare_inside_predict_matches_the_original_on_lambda(tmp_path, tiny_models):
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(DATA / "genomes" / "lambda_NC_001416.fa.gz"), "-o", str(outdir),
                                      "--models-dir", str(tiny_models), "--model-type", "300", "-q"])
    assert result.exit_code == 0, result.output
    prep = outdir / "prepare"
    original = DATA / "original_lambda"
    assert (prep / "lambda_NC_001416_chunked300.fa").read_bytes() == (original / "lambda_chunked300.fa").read_bytes()
    assert (prep / "lambda_NC_001416_identified_protein.faa").read_bytes() == (original / "lambda_300_identified_protein.faa").read_bytes()
    # a second run refuses to overwrite; --resume redoes nothing; the fingerprint guards settings
    again = CliRunner().invoke(cli, ["predict", str(DATA / "genomes" / "lambda_NC_001416.fa.gz"), "-o", str(outdir),
                                     "--models-dir", str(tiny_models), "--model-type", "300", "-q"])
    assert again.exit_code == 2 and "already holds a finished predict run; pass --force to replace its outputs" in again.output
    before = (outdir / "prediction_results.txt").stat().st_mtime_ns
    resumed = CliRunner().invoke(cli, ["predict", str(DATA / "genomes" / "lambda_NC_001416.fa.gz"), "-o", str(outdir),
                                       "--models-dir", str(tiny_models), "--model-type", "300", "-q", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert (outdir / "prediction_results.txt").stat().st_mtime_ns == before
    assert json.loads((outdir / "run.json").read_text())["attempts"] == 2
    other = CliRunner().invoke(cli, ["predict", str(DATA / "genomes" / "lambda_NC_001416.fa.gz"), "-o", str(outdir),
                                     "--models-dir", str(tiny_models), "--model-type", "500", "-q", "--resume"])
    assert other.exit_code == 2
    assert "holds a run with different settings (" in other.output and "parameters.chunk_size: 300 -> 500" in other.output


def test_resume_after_an_interrupted_embedding_reuses_finished_parts(tmp_path, tiny_models, two_genomes):
    """Stop the run inside the per-part stage, then --resume: finished parts are reused, nothing is lost."""
    outdir = tmp_path / "out"
    script = f"""
import sys
import {_ESM2_EMBEDDER[0]} as e
calls = {{"n": 0}}
original = e.{_ESM2_EMBEDDER[1]}.embed
def embed(self, seqs, progress=None):
    calls["n"] += 1
    if calls["n"] == 3:
        raise KeyboardInterrupt("simulated interruption")
    return original(self, seqs, progress)
e.{_ESM2_EMBEDDER[1]}.embed = embed
from virnucpro_core.cli import main
sys.argv = ["virnucpro", "predict", {str(two_genomes)!r}, "-o", {str(outdir)!r}, "--models-dir", {str(tiny_models)!r},
            "-q", "--checkpoint-every", "50"]
main()
"""
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert crashed.returncode != 0
    parts = sorted((outdir / "checkpoints" / "score").glob("part-*.h5")) + sorted((outdir / "checkpoints" / "score").glob("scores-*.tsv"))
    assert {p.name.split("-")[1].split(".")[0] for p in parts} == {"000000", "000001"}  # raw or finalised
    assert not (outdir / "checkpoints" / "protein").exists()  # no embedding part without --keep-embeddings
    manifest = json.loads((outdir / "run.json").read_text())
    assert manifest["stages"]["classify"]["status"] == "failed"
    before = json.loads((outdir / "run.json").read_text())["stages"]
    # resumed without repeating --checkpoint-every: the parts' own size is used
    result = CliRunner().invoke(cli, ["predict", str(two_genomes), "-o", str(outdir), "--models-dir", str(tiny_models),
                                      "-q", "--resume"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((outdir / "run.json").read_text())
    counts = manifest["counts"]
    assert counts["classify"]["parts_reused"] == 2
    assert manifest["stages"]["prepare"]["attempt"] == before["prepare"]["attempt"] == 1  # not run again
    frames = fasta_ids(outdir / "prepare" / "mixed_identified_protein.faa")
    lines = (outdir / "prediction_results.txt").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in lines] == frames
    assert not (outdir / "embeddings").exists() and not (outdir / "checkpoints").exists()


def test_stdin_input_and_viral_fasta_rebuilt_from_chunks(tmp_path, tiny_models):
    seq = gzip.open(DATA / "genomes" / "lambda_NC_001416.fa.gz", "rt").read()
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", "-", "-o", str(outdir), "--models-dir", str(tiny_models), "-q",
                                      "--min-viral-fraction", "0"], input=seq)
    assert result.exit_code == 0, result.output
    assert (outdir / "prepare" / "stdin_identified_protein.faa").exists()
    viral = (outdir / "viral_sequences.fa").read_text().split("\n", 1)
    assert viral[0] == ">gi|9626243|ref|NC_001416.1|"
    assert viral[1].replace("\n", "") == "".join(seq.split("\n", 1)[1].split())


def test_bad_input_is_one_line_without_traceback(tmp_path, tiny_models):
    protein = tmp_path / "proteins.fa"
    protein.write_text(">p1\nMKVLAAGIVALLLAAGCSSSEEQPTQWQRFLQ\n")
    result = subprocess.run([sys.executable, "-m", "virnucpro_core", "predict", str(protein), "-o", str(tmp_path / "o"),
                             "--models-dir", str(tiny_models)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(protein) in errors[0] and "p1" in errors[0]


def test_unknown_backend_and_missing_mlp_are_one_line_errors(tmp_path, tiny_models, two_genomes):
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", str(two_genomes), "-o", str(tmp_path / "a"), "--backend", "esm2=v7",
                                 "--models-dir", str(tiny_models)])
    assert result.exit_code == 1
    versions = ", ".join(b.version for b in load_registry().list_backends() if b.family == "esm2")
    assert f"Error: backend esm2=v7 is not installed; installed esm2 versions: {versions}" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["predict", str(two_genomes), "-o", str(tmp_path / "b"), "--models-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "esm2/esm2_t36_3B_UR50D.pt" in result.output and result.output.count("\n") == 1
    tiny = json.loads((tiny_models / "models.json").read_text())
    result = runner.invoke(cli, ["predict", str(two_genomes), "-o", str(tmp_path / "c"), "--models-dir", str(tmp_path / "empty"),
                                 "--esm-model", str(tiny_models / tiny["esm2"]), "--dnabert-model", str(tiny_models / tiny["dnabert"])])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no MLP for --model-type 500: put 500_model.pth in ")
    assert result.output.count("\n") == 1


def test_kmer_backend_cannot_feed_the_published_mlp(tmp_path, tiny_models, two_genomes):
    if "kmer=v1" not in _installed:
        pytest.skip("virnucpro-kmer not installed")
    result = CliRunner().invoke(cli, ["predict", str(two_genomes), "-o", str(tmp_path / "k"), "--backend", "kmer=v1",
                                      "--models-dir", str(tiny_models), "-q"])
    assert result.exit_code == 1
    # kmer=v1 has no model to load and the tiny ESM-2's width is in its checkpoint's config: caught before any stage
    assert (f"the MLP expects 64 features but the embeddings give 256 nucleotide (kmer=v1) + 32 protein ({_ESM2.key}) "
            "= 288") in result.output
    assert not (tmp_path / "k").exists()


def test_widths_of_default_models_are_checked_before_any_embedding_naming_both(tmp_path, two_genomes, monkeypatch):
    """The published-size MLP (3328 inputs) with kmer=v1 (256) and the default ESM-2 3B (2560, known
    without loading it): refused at once, no stage run, both widths named."""
    if "kmer=v1" not in _installed:
        pytest.skip("virnucpro-kmer not installed")
    from virnucpro_core.testing import write_original_mlp

    from virnucpro_core import hub

    monkeypatch.delenv("VIRNUCPRO_MODELS", raising=False)
    monkeypatch.setattr(hub, "url_unreachable_reason", lambda url, timeout=None: None)  # fair-esm's server answers
    mlp = write_original_mlp(tmp_path / "500_model.pth", input_dim=3328, hidden_dim=4, seed=1)
    result = CliRunner().invoke(cli, ["predict", str(two_genomes), "-o", str(tmp_path / "k"), "--backend", "kmer=v1",
                                      "--mlp", str(mlp), "-q"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {mlp}: the MLP expects 3328 features but the embeddings give 256 nucleotide (kmer=v1) + 2560 protein "
        f"({_ESM2.key}) = 2816; use the MLP trained for these models (the published ones need DNABERT-S 768 + ESM-2 3B 2560 "
        "= 3328)\n"
    )
    assert not (tmp_path / "k").exists()


def test_a_width_known_only_after_loading_is_checked_once_the_nucleotide_model_loads(tmp_path, tiny_models, two_genomes,
                                                                                     monkeypatch):
    """A tiny DNABERT (32 wide) whose width the preflight cannot tell (as for a backend without
    one) with an MLP too narrow for it: stopped once the nucleotide model has loaded, before any part."""
    import virnucpro_dnabert_v2.loading

    from virnucpro_core.testing import write_original_mlp

    monkeypatch.setattr(virnucpro_dnabert_v2.loading, "preflight", lambda model, revision=None: None)
    # 40 passes the preflight, which knows only the tiny ESM-2's 32 columns
    mlp = write_original_mlp(tmp_path / "narrow.pth", input_dim=40, hidden_dim=4, seed=1)
    lam = str(DATA / "genomes" / "lambda_NC_001416.fa.gz")
    result = CliRunner().invoke(cli, ["predict", lam, "-o", str(tmp_path / "n"), "--models-dir", str(tiny_models),
                                      "--mlp", str(mlp), "-q"])
    assert result.exit_code == 1
    assert (f"the MLP expects 40 features but the embeddings give 32 nucleotide (dnabert=v2) + 32 protein ({_ESM2.key}) "
            "= 64") in result.output
    stages = json.loads((tmp_path / "n" / "run.json").read_text())["stages"]
    assert stages["prepare"]["status"] == "done" and stages["classify"]["status"] == "failed"
    assert not list((tmp_path / "n").rglob("part-*.h5"))


def test_run_json_records_the_loaded_widths_and_tiny_embeddings_say_so(run, tiny_models):
    import h5py

    from virnucpro_core.pipeline import TINY_WARNING

    outdir, result = run
    manifest = json.loads((outdir / "run.json").read_text())
    # the registered widths (768/2560) are those of the default models, not of the tiny ones that ran
    assert all("dim" not in entry for entry in manifest["identity"]["backends"].values())
    assert {m: e["dim"] for m, e in manifest["backends"].items()} == {"nucleotide": 32, "protein": 32}
    assert manifest["backends"]["protein"]["model"] == str(tiny_models / json.loads((tiny_models / "models.json").read_text())["esm2"])
    for name in ("nucleotide.h5", "protein.h5"):
        with h5py.File(outdir / "embeddings" / name, "r") as f:
            assert f.attrs["warning"] == TINY_WARNING


def test_classify_warns_for_tiny_models(run, tiny_models, tmp_path):
    outdir, _ = run
    emb = outdir / "embeddings"
    result = CliRunner().invoke(cli, ["classify", "--nucleotide", str(emb / "nucleotide.h5"), "--protein", str(emb / "protein.h5"),
                                      "--mlp", str(tiny_models / "mlp" / "500_model.pth"), "-o", str(tmp_path / "c"), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("WARNING: RANDOM TINY MODELS")
    from virnucpro_core.commands.classify import tiny_warning
    from virnucpro_core.testing import write_original_mlp

    plain = write_original_mlp(tmp_path / "500_model.pth", input_dim=64, hidden_dim=4, seed=1)
    assert tiny_warning(plain, emb / "nucleotide.h5").startswith("RANDOM TINY MODELS")  # the file says so
    assert tiny_warning(plain, tmp_path / "x.pt") is None


def test_resume_with_other_batches_is_refused_not_mixed(tmp_path, tiny_models):
    """Parts made with one --batch-tokens are never completed with another."""
    outdir = tmp_path / "out"
    lam = str(DATA / "genomes" / "lambda_NC_001416.fa.gz")
    script = f"""
import sys
import {_ESM2_EMBEDDER[0]} as e
calls = {{"n": 0}}
original = e.{_ESM2_EMBEDDER[1]}.embed
def embed(self, seqs, progress=None):
    calls["n"] += 1
    if calls["n"] == 2:
        raise KeyboardInterrupt("simulated interruption")
    return original(self, seqs, progress)
e.{_ESM2_EMBEDDER[1]}.embed = embed
from virnucpro_core.cli import main
sys.argv = ["virnucpro", "predict", {lam!r}, "-o", {str(outdir)!r}, "--models-dir", {str(tiny_models)!r},
            "-q", "--checkpoint-every", "40"]
main()
"""
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert crashed.returncode != 0
    assert len(list((outdir / "checkpoints" / "score").glob("scores-*.tsv"))) == 1
    args = ["predict", lam, "-o", str(outdir), "--models-dir", str(tiny_models), "-q", "--resume"]
    result = CliRunner().invoke(cli, args + ["--batch-tokens", "1024"])
    assert result.exit_code == 2
    assert "the checkpoints were made with other settings (changed: protein_batch_tokens); use --force-resume" in result.output
    assert CliRunner().invoke(cli, args).exit_code == 0  # the same settings resume


def test_embed_takes_the_models_directory_like_predict(tmp_path, tiny_models, monkeypatch):
    import h5py

    tiny = json.loads((tiny_models / "models.json").read_text())
    faa = tmp_path / "p.faa"
    faa.write_text("".join(f">p{i}\n{'MKV' * (5 + i)}\n" for i in range(3)))
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v1", "-o", str(tmp_path / "a.h5"),
                                      "--models-dir", str(tiny_models), "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f.attrs["model"] == str(tiny_models / tiny["esm2"]) and f.attrs["dim"] == 32
        assert f.attrs["warning"].startswith("RANDOM TINY MODELS")
    monkeypatch.setenv("VIRNUCPRO_MODELS", str(tiny_models))
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v1", "-o", str(tmp_path / "b.h5"), "-q",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert f.attrs["model"] == str(tiny_models / tiny["esm2"])
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v1", "-o", str(tmp_path / "c.h5"),
                                      "--models-dir", str(empty), "-q"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: ESM-2 weights {empty}/esm2/esm2_t36_3B_UR50D.pt are missing: run `virnucpro models download "
        f"--models-dir {empty}` or pass --model NAME|PATH\n"
    )


def test_resume_with_a_relative_outdir_skips_finished_stages(tmp_path, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["predict", str(DATA / "genomes" / "lambda_NC_001416.fa.gz"), "-o", "rel/out", "--models-dir", str(tiny_models), "-q"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    first = json.loads((tmp_path / "rel/out/run.json").read_text())["stages"]
    assert first["prepare"]["outputs"][0] == "prepare/lambda_NC_001416_chunked500.fa"
    result = CliRunner().invoke(cli, args + ["--resume"])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "rel/out/run.json").read_text())["stages"]
    assert all(again[name]["attempt"] == first[name]["attempt"] == 1 for name in first)


def test_resume_redoes_only_the_stages_whose_settings_changed(tmp_path, tiny_models):
    lam = str(DATA / "genomes" / "lambda_NC_001416.fa.gz")
    out = tmp_path / "out"
    base = ["predict", lam, "-o", str(out), "--models-dir", str(tiny_models), "-q"]
    assert CliRunner().invoke(cli, base).exit_code == 0
    first = json.loads((out / "run.json").read_text())["stages"]
    assert CliRunner().invoke(cli, base + ["--resume", "--min-viral-fraction", "0"]).exit_code == 0
    second = json.loads((out / "run.json").read_text())["stages"]
    assert [n for n in first if second[n]["attempt"] != first[n]["attempt"]] == ["report"]
    assert "virus" in (out / "sequence_summary.tsv").read_text().splitlines()[1]
    from virnucpro_core.testing import write_original_mlp

    other = write_original_mlp(tmp_path / "other.pth", input_dim=64, hidden_dim=16, seed=9)
    result = CliRunner().invoke(cli, base + ["--resume", "--min-viral-fraction", "0", "--mlp", str(other)])
    assert result.exit_code == 0, result.output
    third = json.loads((out / "run.json").read_text())["stages"]
    assert [n for n in first if third[n]["attempt"] != second[n]["attempt"]] == ["classify", "report"]


def test_resume_from_stdin_is_refused(tmp_path, tiny_models):
    seq = gzip.open(DATA / "genomes" / "lambda_NC_001416.fa.gz", "rt").read()
    out = tmp_path / "out"
    args = ["predict", "-", "-o", str(out), "--models-dir", str(tiny_models), "-q"]
    assert CliRunner().invoke(cli, args, input=seq).exit_code == 0
    result = CliRunner().invoke(cli, args + ["--resume"], input=seq)
    assert result.exit_code == 2
    assert "INPUT is stdin, which cannot be checked against the previous run" in result.output


def _write_finished_part(parts, ids):
    """One finished checkpoint part: a parts folder without any part holds nothing to
    resume and is discarded, so a refusal test needs a real one."""
    import numpy as np

    from virnucpro_core.formats.base import EmbeddingMeta
    from virnucpro_core.formats.hdf5 import Hdf5Writer

    with Hdf5Writer(parts / "part-000000.h5", EmbeddingMeta(dim=32, modality="protein", model="tiny")) as writer:
        writer.write(list(ids), np.zeros((len(ids), 32), dtype=np.float32))


def test_embed_resume_refuses_checkpoints_of_another_model(tmp_path, tiny_models):
    from virnucpro_core.testing import write_tiny_esm2

    faa = tmp_path / "p.faa"
    faa.write_text("".join(f">p{i}\n{'MKV' * (5 + i % 7)}\n" for i in range(30)))
    other = write_tiny_esm2(tmp_path / "other", seed=5)
    tiny = json.loads((tiny_models / "models.json").read_text())
    out = tmp_path / "p.h5"
    parts = tmp_path / "p.h5.parts"
    parts.mkdir()
    from virnucpro_core.embedding import _check_parts_identity

    # checkpoints left by an interrupted run with the tiny set's model
    from virnucpro_core.rundir import describe_input

    identity = {"input": describe_input(faa), "backend": "esm2=v1", "package_version": "0.1.0",
                "model": str(tiny_models / tiny["esm2"]), "revision": None, "precision": "fp32", "max_length": None}
    _check_parts_identity(parts, identity, 10)
    _write_finished_part(parts, [f"p{i}" for i in range(10)])
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v1", "--model", str(other), "-o", str(out),
                                      "--resume", "-q", "--device", "cpu"])
    assert result.exit_code == 2
    assert "the checkpoints were made with other settings (changed: model); use --force-resume" in result.output
    assert not out.exists()


def test_an_unwritable_output_is_one_line(tmp_path, tiny_models):
    faa = tmp_path / "p.faa"
    faa.write_text(">p1\nMKV\n")
    esm2 = tiny_models / json.loads((tiny_models / "models.json").read_text())["esm2"]  # past the preflight
    result = subprocess.run([sys.executable, "-m", "virnucpro_core", "embed", str(faa), "--backend", "esm2=v1",
                             "--model", str(esm2), "-o", "/proc/nope/x.h5", "-q"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Error: /proc/nope")


def test_an_input_without_any_stop_free_frame_gives_empty_results_not_an_error(tmp_path, tiny_models):
    fasta = tmp_path / "nf.fa"
    fasta.write_text(">nf stops in all six frames\nCCTAGTTTAGCTTAA\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(fasta), "-o", str(out), "--models-dir", str(tiny_models), "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "prediction_results.txt").read_text() == "Sequence_ID\tPrediction\tscore1\tscore2\n"
    assert (out / "prediction_results_highestscore.csv").read_text() == "Modified_ID\tIs_Virus\n"
    rows = (out / "sequence_summary.tsv").read_text().splitlines()
    assert rows[1].split("\t")[0] == "nf" and rows[1].endswith("\tno_frames")
    assert (out / "viral_sequences.fa").read_text() == ""


@pytest.mark.parametrize("suffix", [".fa.gz", ".fq"])
def test_embed_reads_compressed_and_fastq_input(tmp_path, suffix):
    if "kmer=v1" not in _installed:
        pytest.skip("virnucpro-kmer not installed")
    records = [("r1", "ACGTACGTTTGACCA"), ("r2", "GGGCCCAAATTTACG")]
    path = tmp_path / f"in{suffix}"
    if suffix == ".fq":
        path.write_text("".join(f"@{i}\n{s}\n+\n{'I' * len(s)}\n" for i, s in records))
    else:
        with gzip.open(path, "wt") as handle:
            handle.write("".join(f">{i}\n{s}\n" for i, s in records))
    out = tmp_path / "k.h5"
    result = CliRunner().invoke(cli, ["embed", str(path), "--backend", "kmer=v1", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert h5_ids(out) == ["r1", "r2"]
    assert not (tmp_path / "k.h5.parts").exists()


def test_embed_takes_runtime_settings_from_a_config_file(tmp_path, monkeypatch):
    if "kmer=v1" not in _installed:
        pytest.skip("virnucpro-kmer not installed")
    import virnucpro_core.embedding as embedding

    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">r{i}\nACGTACGTTTGACCA{'A' * i}\n" for i in range(5)))
    config = tmp_path / "vnp.toml"
    config.write_text('[runtime]\ndevice = "cpu"\ncheckpoint_every = 2\n')
    part_sizes: list[int] = []
    original = embedding._check_parts_identity
    monkeypatch.setattr(embedding, "_check_parts_identity",
                        lambda parts_dir, identity, every: part_sizes.append(every) or original(parts_dir, identity, every))
    out = tmp_path / "k.h5"
    result = CliRunner().invoke(cli, ["embed", str(fasta), "--backend", "kmer=v1", "-o", str(out), "-q", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert part_sizes == [2]
    assert h5_ids(out) == [f"r{i}" for i in range(5)]


def test_log_file_holds_stages_and_the_summary(tmp_path, tiny_models):
    log_file = tmp_path / "run.log"
    result = CliRunner().invoke(cli, ["predict", str(DATA / "genomes" / "lambda_NC_001416.fa.gz"), "-o", str(tmp_path / "o"),
                                      "--models-dir", str(tiny_models), "--log-file", str(log_file)])
    assert result.exit_code == 0, result.output
    text = log_file.read_text()
    for stage in ("prepare", "classify", "report"):
        assert f"stage {stage}: started" in text and f"stage {stage}: done in" in text
    assert "1 sequences (48502 bp) -> 98 chunks -> 45 stop-free frames" in text
    assert result.output.count("1 sequences (48502 bp)") == 1  # echoed once, not logged to the terminal too


def test_dnabert_by_hub_id_loads_the_pinned_revision_by_default(tmp_path, tiny_models, monkeypatch):
    from virnucpro_core import modelset
    from virnucpro_core.testing import write_original_mlp

    import virnucpro_dnabert_v2.loading

    monkeypatch.setattr(modelset, "DNABERT_S_REVISION", "0123abc")
    # past the preflight (tests/test_preflight.py), to see what the run records and what loading says
    monkeypatch.setattr(virnucpro_dnabert_v2.loading, "preflight", lambda model, revision=None: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("VIRNUCPRO_MODELS", raising=False)
    tiny = json.loads((tiny_models / "models.json").read_text())
    mlp = write_original_mlp(tmp_path / "500_model.pth", input_dim=768 + 32, hidden_dim=4, seed=1)
    lam = str(DATA / "genomes" / "lambda_NC_001416.fa.gz")
    result = CliRunner().invoke(cli, ["predict", lam, "-o", str(tmp_path / "o"), "--esm-model", str(tiny_models / tiny["esm2"]),
                                      "--mlp", str(mlp), "-q"])
    assert result.exit_code == 1
    assert "DNABERT-S model 'zhihan1996/DNABERT-S' at revision 0123abc is not in the Hugging Face cache" in result.output
    identity = json.loads((tmp_path / "o" / "run.json").read_text())["identity"]
    assert identity["models"]["nucleotide"] == {"name": "zhihan1996/DNABERT-S", "revision": "0123abc"}


def test_model_type_cannot_change_on_resume_because_it_sets_the_chunk_size(tmp_path, tiny_models):
    """What the README says: a resume with another --model-type is refused (the chunk size
    changes); with --chunk-size kept, only classify and report are redone."""
    lam = str(DATA / "genomes" / "lambda_NC_001416.fa.gz")
    out = tmp_path / "out"
    base = ["predict", lam, "-o", str(out), "--models-dir", str(tiny_models), "-q"]
    assert CliRunner().invoke(cli, base).exit_code == 0
    first = json.loads((out / "run.json").read_text())["stages"]
    refused = CliRunner().invoke(cli, base + ["--resume", "--model-type", "300"])
    assert refused.exit_code == 2
    assert "holds a run with different settings (parameters.chunk_size: 500 -> 300)" in refused.output
    kept = CliRunner().invoke(cli, base + ["--resume", "--model-type", "300", "--chunk-size", "500"])
    assert kept.exit_code == 0, kept.output
    second = json.loads((out / "run.json").read_text())["stages"]
    assert [n for n in first if second[n]["attempt"] != first[n]["attempt"]] == ["classify", "report"]


def test_embed_resume_with_other_batches_is_refused(tmp_path, tiny_models):
    from virnucpro_core.embedding import _check_parts_identity
    from virnucpro_core.rundir import describe_input

    faa = tmp_path / "p.faa"
    faa.write_text("".join(f">p{i}\n{'MKV' * (5 + i % 7)}\n" for i in range(30)))
    model = str(tiny_models / json.loads((tiny_models / "models.json").read_text())["esm2"])
    parts = tmp_path / "p.h5.parts"
    parts.mkdir()
    # checkpoints left by an interrupted `embed ... --batch-tokens 512`
    identity = {"input": describe_input(faa), "backend": "esm2=v1", "package_version": "0.1.0", "model": model,
                "revision": None, "precision": "fp32", "max_length": None, "batch_tokens": 512, "batch_size": None}
    _check_parts_identity(parts, identity, 10)
    _write_finished_part(parts, [f"p{i}" for i in range(10)])
    args = ["embed", str(faa), "--backend", "esm2=v1", "--model", model, "-o", str(tmp_path / "p.h5"), "--resume", "-q",
            "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "the checkpoints were made with other settings (changed: batch_tokens); use --force-resume" in result.output
    assert CliRunner().invoke(cli, args + ["--batch-tokens", "512"]).exit_code == 0
