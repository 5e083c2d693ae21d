"""`virnucpro classify` on files made by the original tool with the real models.

The real 500 bp MLP cannot be downloaded here, so a seeded MLP of the same shape, pickled
the way the original saves it, scores the real DNABERT-S and ESM-2 3B embeddings. What is
checked against the original's outputs: the IDs, their order and the file formats; the
scores are checked against an independent forward pass on the original's merged tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.testing import write_original_mlp

REF = Path(__file__).parent / "data" / "original_format" / "reference_vanilla_output"


@pytest.fixture(scope="module")
def mlp_3328(tmp_path_factory) -> Path:
    return write_original_mlp(tmp_path_factory.mktemp("mlp") / "500_model.pth", input_dim=3328, hidden_dim=512, seed=3)


@pytest.mark.parametrize("nucleotide,protein", [
    ("output_1_DNABERT_S.pt", "output_1_ESM.pt"),
    ("nucleotide.h5", "protein.h5"),
])
def test_classify_original_embeddings(tmp_path, mlp_3328, nucleotide, protein):
    runner = CliRunner()
    if nucleotide.endswith(".h5"):  # the same embeddings after conversion to HDF5
        for src, dst in (("output_1_DNABERT_S.pt", nucleotide), ("output_1_ESM.pt", protein)):
            assert runner.invoke(cli, ["convert", str(REF / src), str(tmp_path / dst)]).exit_code == 0
        nuc, prot = tmp_path / nucleotide, tmp_path / protein
    else:
        nuc, prot = REF / nucleotide, REF / protein
    out = tmp_path / "out"
    result = runner.invoke(cli, ["classify", "--nucleotide", str(nuc), "--protein", str(prot), "--mlp", str(mlp_3328),
                                 "-o", str(out), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert "merged 4 of 4 nucleotide and 4 protein embeddings" in result.output

    ours = [line.split("\t") for line in (out / "prediction_results.txt").read_text().splitlines()]
    reference = [line.split("\t") for line in (REF / "prediction_results.txt").read_text().splitlines()]
    assert ours[0] == reference[0]
    assert [row[0] for row in ours] == [row[0] for row in reference]

    merged = torch.load(REF / "output_1_merged.pt", weights_only=True)
    from virnucpro_core.classifier import load_mlp

    with torch.no_grad():
        expected = torch.softmax(load_mlp(mlp_3328).eval()(merged["data"].float()), dim=1).numpy()
    got = np.array([[float(r[2]), float(r[3])] for r in ours[1:]], dtype=np.float32)
    assert np.abs(got - expected).max() <= 1e-6
    assert [r[1] for r in ours[1:]] == ["virus" if p[1] > p[0] else "others" for p in expected]

    consensus = (out / "prediction_results_highestscore.csv").read_text().splitlines()
    ref_consensus = (REF / "prediction_results_highestscore.csv").read_text().splitlines()
    assert [line.split("\t")[0] for line in consensus] == [line.split("\t")[0] for line in ref_consensus]


def test_the_original_result_files_are_reproduced_from_their_scores(tmp_path):
    """Given the original's probabilities, our writers give its two files byte for byte."""
    from virnucpro_core.report import PredictionWriter, write_consensus

    rows = [line.split("\t") for line in (REF / "prediction_results.txt").read_text().splitlines()[1:]]
    with PredictionWriter(tmp_path / "prediction_results.txt") as writer:
        writer.write([r[0] for r in rows], np.array([[float(r[2]), float(r[3])] for r in rows], dtype=np.float32))
    write_consensus(tmp_path / "prediction_results.txt", tmp_path / "prediction_results_highestscore.csv")
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv"):
        assert (tmp_path / name).read_bytes() == (REF / name).read_bytes()


def test_classify_refuses_an_mlp_of_the_wrong_width(tmp_path):
    small = write_original_mlp(tmp_path / "small.pth", input_dim=64, hidden_dim=8)
    result = CliRunner().invoke(cli, ["classify", "--nucleotide", str(REF / "output_1_DNABERT_S.pt"), "--protein",
                                      str(REF / "output_1_ESM.pt"), "--mlp", str(small), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {small}: the MLP expects 64 features but the embeddings give 3328 (768 nucleotide + 2560 protein); "
        "use the MLP trained for these models (the published ones need DNABERT-S 768 + ESM-2 3B 2560)\n"
    )


def test_merge_command_reproduces_the_original_merged_file(tmp_path):
    out = tmp_path / "merged.pt"
    result = CliRunner().invoke(cli, ["merge", str(REF / "output_1_DNABERT_S.pt"), str(REF / "output_1_ESM.pt"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("merged 4 of 4 nucleotide and 4 protein embeddings")
    ours = torch.load(out, weights_only=True)
    original = torch.load(REF / "output_1_merged.pt", weights_only=True)
    assert ours["ids"] == original["ids"]
    assert torch.equal(ours["data"], original["data"])


def test_merge_strict_refuses_unmatched_ids(tmp_path):
    from virnucpro_core.formats.base import EmbeddingMeta
    from virnucpro_core.formats.hdf5 import Hdf5Writer

    for name, modality, ids in (("n.h5", "nucleotide", ["a", "b"]), ("p.h5", "protein", ["a"])):
        with Hdf5Writer(tmp_path / name, EmbeddingMeta(dim=2, modality=modality)) as writer:
            writer.write(ids, np.ones((len(ids), 2), dtype=np.float32))
    result = CliRunner().invoke(cli, ["merge", str(tmp_path / "n.h5"), str(tmp_path / "p.h5"), "-o", str(tmp_path / "m.h5"), "--strict"])
    assert result.exit_code == 1
    assert "do not hold the same IDs: 1 nucleotide IDs have no protein embedding (e.g. b)" in result.output
    assert not (tmp_path / "m.h5").exists()
    result = CliRunner().invoke(cli, ["merge", str(tmp_path / "n.h5"), str(tmp_path / "p.h5"), "-o", str(tmp_path / "m.h5")])
    assert result.exit_code == 0
    assert "merged 1 of 2 nucleotide and 1 protein embeddings; 1 nucleotide IDs have no protein embedding (e.g. b)" in result.output


def test_non_finite_embeddings_are_refused_naming_the_frame(tmp_path, mlp_3328):
    esm = torch.load(REF / "output_1_ESM.pt", weights_only=True)
    esm["data"][1] = esm["data"][1].clone()
    esm["data"][1][7] = float("nan")
    bad = tmp_path / "output_1_ESM.pt"
    torch.save(esm, bad)
    result = CliRunner().invoke(cli, ["classify", "--nucleotide", str(REF / "output_1_DNABERT_S.pt"), "--protein", str(bad),
                                      "--mlp", str(mlp_3328), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 1
    assert f"the embeddings of {esm['proteins'][1]!r} hold NaN or infinite values" in result.output
    assert not (tmp_path / "o" / "prediction_results.txt").exists()
