"""Per-part scoring without models: raw part files finalised in order give the bytes of the
staged classify (the MLP's numbers depend on which rows share a batch), whatever the part size,
the order parts finish in, or where a run is cut off; and the scratch never holds more than
one batch of edge rows beyond the parts in flight."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from virnucpro_core.classifier import MLPClassifier, score
from virnucpro_core.partscore import (SCORE_BATCH, Finaliser, Layout, plan_score_parts, raw_part, raw_path, read_raw,
                                      scores_path, write_predictions, write_raw)
from virnucpro_core.report import PREDICTIONS_HEADER, prediction_lines

DIM = 64


@pytest.fixture(scope="module")
def mlp() -> MLPClassifier:
    torch.manual_seed(0)
    model = MLPClassifier(DIM, 32, 2).eval()
    with torch.no_grad():
        model.bn1.running_mean.normal_()
        model.bn1.running_var.uniform_(0.5, 2.0)
    return model


def staged_lines(model: MLPClassifier, ids: list[str], features: np.ndarray) -> str:
    """What classify writes: merger batches of 4096 rows, each scored 256 rows at a time."""
    out = ["\t".join(PREDICTIONS_HEADER) + "\n"]
    for start in range(0, len(ids), 4096):
        out.append(prediction_lines(ids[start : start + 4096], score(model, features[start : start + 4096])))
    return "".join(out)


def prepared(folder: Path, total: int) -> tuple[Path, Path, list[str]]:
    ids = [f"read{i}_chunk_1F{i % 3 + 1}" for i in range(total)]
    nucleotide, protein = folder / "n.fa", folder / "p.faa"
    nucleotide.write_text("".join(f">{i}\nACGT\n" for i in ids))
    protein.write_text("".join(f">{i}\nMK\n" for i in ids))
    return nucleotide, protein, ids


def edge_rows(parts_dir: Path) -> int:
    """Feature rows held on disk by raw part files (the embeddings a run keeps)."""
    total = 0
    for path in parts_dir.glob("part-*.h5"):
        raw = read_raw(path)
        total += len(raw.head) + len(raw.tail)
    return total


def test_layout_cuts_rows_into_interiors_edges_and_score_files_that_tile_the_input():
    for total, size in [(700, 100), (700, 30), (513, 7), (256, 256), (1, 5), (1000, 300)]:
        layout = Layout(total, size)
        covered = []
        for p in range(layout.parts):
            start, end = layout.span(p)
            a, b = layout.interior(p)
            assert start <= a <= b <= end
            assert a - start < SCORE_BATCH and end - b < SCORE_BATCH or a == b == end  # edges: under a batch each
            lo, hi = layout.covers(p)
            covered.extend(range(lo, hi))
        assert covered == list(range(total))


@pytest.mark.parametrize("total, size", [(700, 100), (513, 7), (600, 256), (300, 1000), (1, 5)])
def test_parts_finished_in_any_order_and_resumed_give_the_staged_bytes(tmp_path, mlp, total, size):
    nucleotide, protein, ids = prepared(tmp_path, total)
    features = np.random.default_rng(total + size).normal(size=(total, DIM)).astype(np.float32)
    parts_dir = tmp_path / "score"
    parts_dir.mkdir()
    layout = Layout(total, size)
    order = list(range(layout.parts))
    random.Random(size).shuffle(order)
    widths = {"nucleotide": [32, "n"], "protein": [32, "p"]}
    plan = plan_score_parts(nucleotide, protein, parts_dir, size)
    assert plan.todo == tuple(range(layout.parts)) and plan.finalised == 0
    finaliser = Finaliser(parts_dir, plan, mlp, "cpu")
    for n, p in enumerate(order):
        start, end = layout.span(p)
        write_raw(raw_path(parts_dir, p), raw_part(start, tuple(ids[start:end]), features[start:end], layout.interior(p), mlp,
                                                   "cpu", widths))
        # on disk: the edges of parts finished ahead of the first missing one, and the raw files of
        # finalised parts whose last rows wait for their batch (under a batch of waiting rows, plus
        # under a batch before them in the same file)
        ahead = [q for q in order[: n + 1] if q >= finaliser.next]
        assert edge_rows(parts_dir) <= 2 * SCORE_BATCH - 2 + sum(min(len(range(*layout.span(q))), 2 * SCORE_BATCH - 2) for q in ahead)
        if n == len(order) // 2:  # killed here: a new process plans from the files alone
            plan = plan_score_parts(nucleotide, protein, parts_dir, size)
            assert set(plan.reused) == set(order[: n + 1]) and set(plan.todo) == set(range(layout.parts)) - set(order[: n + 1])
            finaliser = Finaliser(parts_dir, plan, mlp, "cpu")
        finaliser.advance()
    assert finaliser.next == layout.parts
    out = tmp_path / "prediction_results.txt"
    assert write_predictions(parts_dir, layout, out)[0] == total
    assert out.read_text() == staged_lines(mlp, ids, features)
    assert sorted(p.name for p in parts_dir.iterdir()) == sorted(
        [scores_path(parts_dir, p).name for p in range(layout.parts)] + ["widths.json"])  # no raw file is left


def test_the_staged_bytes_need_the_batches_counted_from_the_first_frame(mlp):
    """The reason for the finaliser: scoring each part on its own changes the numbers."""
    features = np.random.default_rng(1).normal(size=(700, DIM)).astype(np.float32)
    whole = score(mlp, features)
    per_part = np.concatenate([score(mlp, features[i : i + 7]) for i in range(0, 700, 7)])
    assert (whole.view(np.uint32) != per_part.view(np.uint32)).any()


def test_a_score_file_that_does_not_match_the_frames_is_recomputed(tmp_path, mlp):
    nucleotide, protein, ids = prepared(tmp_path, 300)
    parts_dir = tmp_path / "score"
    parts_dir.mkdir()
    scores_path(parts_dir, 0).write_text("other\tvirus\t0.1\t0.9\n" * 256)
    plan = plan_score_parts(nucleotide, protein, parts_dir, 100)
    assert plan.finalised == 0 and plan.todo == (0, 1, 2) and not scores_path(parts_dir, 0).exists()


def test_prepared_files_whose_frames_differ_are_refused(tmp_path):
    from virnucpro_core.errors import VirnucproError

    nucleotide, protein, _ = prepared(tmp_path, 10)
    protein.write_text(protein.read_text().replace(">read3_", ">readX_"))
    with pytest.raises(VirnucproError, match=r"count check failed: frame 4 is read3_chunk_1F1 in .*, readX_chunk_1F1 in"):
        plan_score_parts(nucleotide, protein, tmp_path / "s", 4)


def test_a_raw_part_whose_middle_ids_differ_is_recomputed(tmp_path, mlp):
    """Same first and last id, same count: only a full comparison sees the other frames."""
    nucleotide, protein, ids = prepared(tmp_path, 300)
    parts_dir = tmp_path / "score"
    parts_dir.mkdir()
    layout = Layout(300, 100)
    features = np.random.default_rng(3).normal(size=(300, DIM)).astype(np.float32)
    widths = {"nucleotide": [32, "n"], "protein": [32, "p"]}
    for p in (0, 1):
        start, end = layout.span(p)
        part_ids = list(ids[start:end])
        if p == 1:
            part_ids[50] = "other_chunk_1F1"
        write_raw(raw_path(parts_dir, p), raw_part(start, tuple(part_ids), features[start:end], layout.interior(p), mlp, "cpu", widths))
    plan = plan_score_parts(nucleotide, protein, parts_dir, 100)
    assert plan.reused == (0,) and plan.todo == (1, 2)


def test_a_score_file_whose_middle_ids_differ_ends_the_finalised_prefix(tmp_path, mlp):
    nucleotide, protein, ids = prepared(tmp_path, 1000)
    parts_dir = tmp_path / "score"
    parts_dir.mkdir()
    layout = Layout(1000, 300)
    for p in range(layout.parts):
        lo, hi = layout.covers(p)
        covered = list(ids[lo:hi])
        if p == 1:
            covered[100] = "other_chunk_1F1"
        scores_path(parts_dir, p).write_text("".join(f"{i}\tvirus\t0.1\t0.9\n" for i in covered))
    plan = plan_score_parts(nucleotide, protein, parts_dir, 300)
    assert plan.finalised == 1 and plan.reused == (0,) and plan.todo == (1, 2, 3)
    assert [scores_path(parts_dir, p).exists() for p in range(layout.parts)] == [True, False, False, False]
