"""The tiny-model label survives every path: array jobs (`aggregate`) and MLP conversion (`import-mlp`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.formats.base import EmbeddingMeta
from virnucpro_core.formats.hdf5 import read_warning
from virnucpro_core.pipeline import TINY_WARNING
from virnucpro_core.testing.models import TINY_DNABERT_DIM, TINY_ESM2_DIM

PROTEINS = ["MKVLEFQWPLLIIRRSTTAAGG", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "MAHHHHHHVDDDDK", "MKKLLPTAAAGLLLLAAQPAMA", "MGSSHHHHHHSSG"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_aggregate_keeps_the_warning_and_equals_a_single_embed_byte_for_byte(tmp_path, tiny_models):
    pytest.importorskip("virnucpro_esm2_v1")
    fasta = tmp_path / "p.faa"
    fasta.write_text("".join(f">p{i}\n{seq}\n" for i, seq in enumerate(PROTEINS)))
    common = ["--backend", "esm2=v1", "--models-dir", tiny_models, "--checkpoint-every", "2", "-q"]
    assert invoke("embed", fasta, "-o", tmp_path / "single.h5", *common).exit_code == 0
    for index in (0, 1):
        result = invoke("embed", fasta, "-o", tmp_path / f"s{index}", "--shard", f"{index}/2", *common)
        assert result.exit_code == 0, result.output
    result = invoke("aggregate", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "joined.h5", "-q")
    assert result.exit_code == 0, result.output
    assert read_warning(tmp_path / "single.h5") == TINY_WARNING
    assert read_warning(tmp_path / "joined.h5") == TINY_WARNING
    assert (tmp_path / "joined.h5").read_bytes() == (tmp_path / "single.h5").read_bytes()
    import h5py

    with h5py.File(tmp_path / "joined.h5", "r") as f:  # and against the input itself
        assert [x.decode() for x in f["ids"][:]] == [f"p{i}" for i in range(len(PROTEINS))]


def _plain_embeddings(path: Path, modality: str, dim: int, ids: list[str]) -> Path:
    """An embeddings file with no tiny label (as a user's real models would write)."""
    from virnucpro_core.registry import get_registry

    with get_registry().get_format("hdf5").open_writer(path, EmbeddingMeta(dim=dim, modality=modality)) as writer:
        writer.write(ids, np.random.default_rng(0).standard_normal((len(ids), dim)).astype(np.float32))
    return path


def test_import_mlp_of_a_tiny_mlp_keeps_the_label_and_classify_warns(tmp_path, tiny_models):
    source = tiny_models / "mlp" / "500_model.pth"
    out = tmp_path / "converted.safetensors"
    result = invoke("models", "import-mlp", source, "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".json").read_text())["warning"] == TINY_WARNING
    assert result.stderr == f"WARNING: {TINY_WARNING}\n"
    ids = ["s1_chunk_1F1", "s1_chunk_1R2"]
    nuc = _plain_embeddings(tmp_path / "n.h5", "nucleotide", TINY_DNABERT_DIM, ids)
    prot = _plain_embeddings(tmp_path / "p.h5", "protein", TINY_ESM2_DIM, ids)
    result = invoke("classify", "--nucleotide", nuc, "--protein", prot, "--mlp", out, "-o", tmp_path / "res", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"WARNING: {TINY_WARNING}"


def test_import_mlp_of_a_real_mlp_has_no_label(tmp_path, tiny_models):
    source = tmp_path / "500_model.pth"
    shutil.copy(tiny_models / "mlp" / "500_model.pth", source)  # outside a tiny set: nothing says it is tiny
    result = invoke("models", "import-mlp", source)
    assert result.exit_code == 0, result.output
    assert "warning" not in json.loads((tmp_path / "500_model.json").read_text()) and result.stderr == ""
