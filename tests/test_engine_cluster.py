"""Identity across ways of running: 1 process, 2 CPU workers, torchrun with 2 CPU ranks, and
2 array-job shards joined by ``virnucpro aggregate`` give the same bytes (every result file, and
the embedding files with ``--keep-embeddings``), with every input frame scored exactly once.
Real processes throughout; tiny random models in the real on-disk formats.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from virnucpro_core.registry import load_registry

DATA = Path(__file__).parent / "data"
RESULTS = ("prediction_results.txt", "prediction_results_highestscore.csv", "sequence_summary.tsv", "viral_sequences.fa")
EMBEDDINGS = ("embeddings/nucleotide.h5", "embeddings/protein.h5")
_installed = {b.key for b in load_registry().list_backends()}
needs_plugins = pytest.mark.skipif(not {"esm2=v1", "dnabert=v1", "kmer=v1"} <= _installed,
                                   reason="needs the first-party plugins and virnucpro-kmer (pip install -r requirements-dev.txt)")
pytestmark = needs_plugins


def assert_same_results(run: Path, reference: Path, *, kept: bool = False) -> None:
    """The bytes of ``reference``, and against the input: every prepared frame scored exactly once, in order."""
    for name in RESULTS + (EMBEDDINGS if kept else ()):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    assert kept == (run / "embeddings").exists()
    frames = [line[1:].split()[0] for line in next((run / "prepare").glob("*_identified_protein.faa")).read_text().splitlines()
              if line.startswith(">")]
    scored = [line.split("\t")[0] for line in (run / "prediction_results.txt").read_text().splitlines()[1:]]
    assert scored == frames and len(set(frames)) == len(frames) == FRAMES


#: 400 reads give 317 frames: 6 parts of 60, with MLP batches (256 rows) across part boundaries
PREDICT = ("--checkpoint-every", "60", "--threads", "1", "-q")
FRAMES = 317
PARTS = 6


@pytest.fixture(scope="module")
def predict_input(tmp_path_factory, reads_factory) -> Path:
    return reads_factory(tmp_path_factory.mktemp("predict") / "reads.fa", 400, marked=0, seed=3)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_models, predict_input, cli) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    result = cli.run("predict", str(predict_input), "-o", str(out), "--models-dir", str(tiny_models), "--device", "cpu", *PREDICT)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def single_kept(tmp_path_factory, tiny_models, predict_input, single, cli) -> Path:
    out = tmp_path_factory.mktemp("kept") / "run"
    result = cli.run("predict", str(predict_input), "-o", str(out), "--models-dir", str(tiny_models), "--device", "cpu",
                     "--keep-embeddings", *PREDICT)
    assert result.returncode == 0, result.stderr
    for name in RESULTS:  # keeping the embeddings changes no result
        assert (out / name).read_bytes() == (single / name).read_bytes(), name
    return out


def test_predict_on_two_cpu_workers_is_identical_to_one_process(single, tiny_models, predict_input, tmp_path, cli):
    out = tmp_path / "workers"
    result = cli.run("predict", str(predict_input), "-o", str(out), "--models-dir", str(tiny_models), "--devices", "cpu,cpu", *PREDICT)
    assert result.returncode == 0, result.stderr
    assert_same_results(out, single)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["info"]["runtime"]["devices"] == ["cpu", "cpu"]
    workers = manifest["counts"]["classify"]["workers"]
    assert sum(w["sequences"] for w in workers.values()) == manifest["counts"]["prepare"]["frames"] == FRAMES


def test_predict_under_torchrun_with_two_cpu_ranks_is_identical(single_kept, tiny_models, predict_input, tmp_path, cli):
    out = tmp_path / "ranks"
    result = cli.torchrun("predict", str(predict_input), "-o", str(out), "--models-dir", str(tiny_models), "--device", "cpu",
                          "--keep-embeddings", *PREDICT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_results(out, single_kept, kept=True)
    assert result.stdout.count("frames scored") == 1  # rank 0 reports; the other rank exits quietly
    assert json.loads((out / "run.json").read_text())["status"] == "done"


@pytest.mark.parametrize("keep", [(), ("--keep-embeddings",)], ids=["default", "keeping-embeddings"])
def test_predict_shards_and_aggregate_give_the_single_run(single, single_kept, tiny_models, predict_input, tmp_path, cli, keep):
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, shard in enumerate(shards):
        result = cli.run("predict", str(predict_input), "-o", str(shard), "--models-dir", str(tiny_models), "--device", "cpu",
                         "--shard", f"{i}/2", *keep, *PREDICT)
        assert result.returncode == 0, result.stderr
        assert not (shard / "prediction_results.txt").exists()
        stages = json.loads((shard / "shard.json").read_text())["stages"]
        assert sorted(stages) == (["embed_nucleotide", "embed_protein", "score"] if keep else ["score"])
        assert all(stage["parts"] == [p for p in range(PARTS) if p % 2 == i] for stage in stages.values())
    out = tmp_path / "joined"
    result = cli.run("aggregate", *map(str, shards), "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert_same_results(out, single_kept if keep else single, kept=bool(keep))
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "done" and manifest["counts"]["classify"]["frames_scored"] == FRAMES


@pytest.fixture(scope="module")
def reads(tmp_path_factory, reads_factory) -> Path:
    """150 records (8 parts of 20); record 95, in part 4, holds the marker PROBE_FAIL looks for."""
    return reads_factory(tmp_path_factory.mktemp("reads") / "reads.fa", 150, marked=95, seed=9)


EMBED = ("--backend", "kmer=v1", "--checkpoint-every", "20", "--threads", "1", "-q", "--device", "cpu")


@pytest.fixture(scope="module")
def single_embed(reads, tmp_path_factory, cli) -> Path:
    out = tmp_path_factory.mktemp("embed") / "one.h5"
    result = cli.run("embed", str(reads), "-o", str(out), *EMBED)
    assert result.returncode == 0, result.stderr
    return out


def test_embed_under_torchrun_with_two_cpu_ranks_is_identical(reads, single_embed, tmp_path, cli):
    out = tmp_path / "ranks.h5"
    result = cli.torchrun("embed", str(reads), "-o", str(out), *EMBED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == single_embed.read_bytes()


def test_a_failing_rank_fails_the_job_with_its_error(reads, tmp_path, cli):
    out = tmp_path / "fail.h5"
    result = cli.torchrun("embed", str(reads), "-o", str(out), "--backend", "probe=v1", "--checkpoint-every", "20", "-q",
                      "--device", "cpu", PROBE_FAIL="NNNNNN")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    # records 81-100 are part 4, which is rank 0's (4 % 2); the message names the rank that failed
    assert lines == ["Error: rank 0 (cpu) failed on records 81-100: RuntimeError: probe refuses sequences containing NNNNNN"]
    assert not out.exists()


@pytest.fixture(scope="module")
def embed_shards(reads, tmp_path_factory, cli) -> list[Path]:
    root = tmp_path_factory.mktemp("shards")
    shards = []
    for i in range(3):
        result = cli.run("embed", str(reads), "-o", str(root / f"s{i}"), "--shard", f"{i}/3", *EMBED)
        assert result.returncode == 0, result.stderr
        shards.append(root / f"s{i}")
    return shards


def test_embed_shards_and_aggregate_give_the_single_file(embed_shards, single_embed, tmp_path, cli):
    out = tmp_path / "joined.h5"
    result = cli.run("aggregate", *map(str, reversed(embed_shards)), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == single_embed.read_bytes()
    assert result.stdout.strip() == f"150 sequences from 3 shards -> {out} (hdf5)"


def test_aggregate_refuses_missing_duplicate_and_mismatched_shards(embed_shards, reads, tmp_path, cli):
    s0, s1, s2 = map(str, embed_shards)
    out = tmp_path / "never.h5"
    cases = {
        (s0, s2): "Error: shard(s) 1/3 missing; give every shard of the job (run the missing array tasks first)",
        (s0, s1, s1, s2): f"Error: {s1} and {s1} are both shard 1/3; give each shard once",
    }
    other = tmp_path / "other"
    made = cli.run("embed", str(reads), "-o", str(other), "--shard", "1/3", *EMBED[:-2], "--max-length", "100", "--device", "cpu")
    assert made.returncode == 0, made.stderr
    cases[(s0, str(other), s2)] = f"Error: {other}: shard made with other settings than {s0} (differs: max_length); give the shards of one job"
    cases[(s0, s1, str(tmp_path))] = f"Error: {tmp_path}: not a finished shard (no shard.json; it is still running or failed; rerun that shard with --resume)"
    for args, message in cases.items():
        result = cli.run("aggregate", *args, "-o", str(out))
        assert result.returncode == 1 and result.stderr.strip() == message, result.stderr
        assert not out.exists()
    gone = embed_shards[1] / "parts" / "part-000004.h5"
    moved = gone.with_name("moved.h5")
    gone.rename(moved)
    try:
        result = cli.run("aggregate", s0, s1, s2, "-o", str(out))
        assert result.stderr.strip() == f"Error: {s1}: part 4 of embed is missing; rerun that shard with --resume"
        assert result.returncode == 1 and not out.exists()
    finally:
        moved.rename(gone)


def test_each_torchrun_rank_computes_only_its_share(reads, single_embed, tmp_path, cli):
    """Identity alone would not notice every rank computing every part (the files are the
    same bytes): the ranks' own counts must be their shares, p % 2 == rank."""
    out, log_file = tmp_path / "share.h5", tmp_path / "share.log"
    result = cli.torchrun("embed", str(reads), "-o", str(out), *EMBED, "--log-file", str(log_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == single_embed.read_bytes()
    counts = dict(re.findall(r"rank (\d) \(cpu\): (\d+ part\(s\), \d+ sequences)", log_file.read_text()))
    # 150 records, 8 parts of 20: rank 0 has parts 0 2 4 6 (80 records), rank 1 parts 1 3 5 7 (70)
    assert counts == {"0": "4 part(s), 80 sequences", "1": "4 part(s), 70 sequences"}


def test_a_failure_on_a_rank_other_than_0_fails_the_job_with_its_error(tmp_path, reads_factory, cli):
    """Record 70 is in part 3, which is rank 1's (3 % 2)."""
    reads = reads_factory(tmp_path / "reads.fa", 150, marked=70, seed=9)
    out = tmp_path / "fail1.h5"
    result = cli.torchrun("embed", str(reads), "-o", str(out), "--backend", "probe=v1", "--checkpoint-every", "20", "-q",
                          "--device", "cpu", PROBE_FAIL="NNNNNN")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert lines == ["Error: rank 1 (cpu) failed on records 61-80: RuntimeError: probe refuses sequences containing NNNNNN"]
    assert not out.exists()
