"""``predict`` keeps no embedding files by default, and its results are the bytes of the staged
run (``prepare``, ``embed``, ``embed``, ``classify`` one after the other) and of
``--keep-embeddings``, whose embedding files are the staged ``embed`` files byte for byte.
The scratch disk during a run stays a few parts' worth, however many frames there are.

Tiny random models in the real formats; inputs with several MLP batches (256 frames) that
straddle part boundaries, so the batch alignment matters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.registry import load_registry

_installed = {b.key for b in load_registry().list_backends()}
pytestmark = pytest.mark.skipif(not {"esm2=v1", "dnabert=v1"} <= _installed,
                                reason="needs the first-party plugins (pip install -r requirements-dev.txt)")

RESULTS = ("prediction_results.txt", "prediction_results_highestscore.csv", "sequence_summary.tsv", "viral_sequences.fa")
SETTINGS = ("--checkpoint-every", "100", "--threads", "1", "--device", "cpu", "-q")


def virnucpro(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "virnucpro_core", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def frames_of(run: Path) -> list[str]:
    prepared = next((run / "prepare").glob("*_identified_protein.faa")).read_text().splitlines()
    return [line[1:].split()[0] for line in prepared if line.startswith(">")]


def scored(path: Path) -> list[str]:
    return [line.split("\t")[0] for line in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def reads(tmp_path_factory, reads_factory) -> Path:
    return reads_factory(tmp_path_factory.mktemp("reads") / "reads.fa", 400, marked=0, seed=3)  # 317 frames


def test_default_and_kept_runs_give_the_staged_bytes(reads, tiny_models, tmp_path):
    # today's staged reference: each stage on its own, with the same part size and threads
    staged = tmp_path / "staged"
    virnucpro("prepare", str(reads), "-o", str(staged / "prep"), "-q")
    models = ("--models-dir", str(tiny_models))
    virnucpro("embed", str(staged / "prep" / "reads_identified_nucleotide.fa"), "-o", str(staged / "nucleotide.h5"),
              "--backend", "dnabert", *models, *SETTINGS[:4], "--device", "cpu", "-q")
    virnucpro("embed", str(staged / "prep" / "reads_identified_protein.faa"), "-o", str(staged / "protein.h5"),
              "--backend", "esm2", *models, *SETTINGS[:4], "--device", "cpu", "-q")
    virnucpro("classify", "--nucleotide", str(staged / "nucleotide.h5"), "--protein", str(staged / "protein.h5"),
              "--mlp", str(tiny_models / "mlp" / "500_model.pth"), "-o", str(staged / "out"), "--device", "cpu", "-q")

    default, kept = tmp_path / "default", tmp_path / "kept"
    virnucpro("predict", str(reads), "-o", str(default), *models, *SETTINGS)
    virnucpro("predict", str(reads), "-o", str(kept), *models, *SETTINGS, "--keep-embeddings")

    frames = frames_of(default)
    assert len(frames) == len(set(frames)) == 317  # > 256: batches across parts 2 and 3
    assert scored(default / "prediction_results.txt") == frames  # every frame exactly once, in order
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv"):
        assert (default / name).read_bytes() == (staged / "out" / name).read_bytes(), name
    for name in RESULTS:
        assert (kept / name).read_bytes() == (default / name).read_bytes(), name
    for modality in ("nucleotide", "protein"):
        assert (kept / "embeddings" / f"{modality}.h5").read_bytes() == (staged / f"{modality}.h5").read_bytes(), modality
    assert not (default / "embeddings").exists() and not (default / "checkpoints").exists()
    assert not (kept / "checkpoints").exists()
    manifest = json.loads((default / "run.json").read_text())
    assert list(manifest["stages"]) == ["prepare", "classify", "report"]
    assert manifest["counts"]["classify"]["frames_scored"] == manifest["counts"]["prepare"]["frames"] == 317


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def test_scratch_disk_stays_a_few_parts_while_kept_embeddings_grow_with_the_input(tmp_path, tiny_models, reads_factory,
                                                                                   monkeypatch):
    """The peak size of ``checkpoints/`` is measured each time a part is finished (before the
    driver finalises it: the largest it gets); it must stay under the edges bound, far below
    the embeddings of the input."""
    from virnucpro_core import partscore

    big = reads_factory(tmp_path / "big.fa", 2000, marked=0, seed=4)
    peaks: dict[str, int] = {}
    edge_rows: dict[str, int] = {}
    original = partscore.Finaliser.advance

    def measured(self):
        run = self.parts_dir.parent.parent.name
        peaks[run] = max(peaks.get(run, 0), _folder_bytes(self.parts_dir.parent))
        rows = 0
        for path in self.parts_dir.glob("part-*.h5"):
            raw = partscore.read_raw(path)
            rows += len(raw.head) + len(raw.tail)
        edge_rows[run] = max(edge_rows.get(run, 0), rows)
        return original(self)

    monkeypatch.setattr(partscore.Finaliser, "advance", measured)
    for name, extra in (("default", ()), ("kept", ("--keep-embeddings",))):
        result = CliRunner().invoke(cli, ["predict", str(big), "-o", str(tmp_path / name), "--models-dir", str(tiny_models),
                                          *SETTINGS, *extra])
        assert result.exit_code == 0, result.output
    frames = json.loads((tmp_path / "default" / "run.json").read_text())["counts"]["prepare"]["frames"]
    assert frames > 1200  # over 12 parts of 100
    embeddings = _folder_bytes(tmp_path / "kept" / "embeddings")
    # one part in flight here; before it, under two batches of rows wait for their batch
    assert edge_rows["default"] <= 100 + 2 * partscore.SCORE_BATCH - 2
    assert peaks["default"] < embeddings / 2
    assert peaks["kept"] > embeddings * 0.9  # the kept parts are the input's embeddings: the measure sees them
    assert not (tmp_path / "default" / "embeddings").exists() and not (tmp_path / "default" / "checkpoints").exists()
    assert scored(tmp_path / "default" / "prediction_results.txt") == frames_of(tmp_path / "default")
