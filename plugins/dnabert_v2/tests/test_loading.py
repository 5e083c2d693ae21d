"""Loading: the real folder layout, no code executed, every weight accounted for, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from virnucpro_core.errors import ModelError
from virnucpro_dnabert_v2.embedder import DnabertV2Embedder
from virnucpro_core.checksum import sha256_file
from virnucpro_core.modelset import DNABERT_S_REVISION
from virnucpro_dnabert_v2.loading import PINNED_FILES, load_dnabert

SEQS = ["ACGTAGCTAGCTAGGATCCAGT" * 5, "", "TTAC", "GATTACA" * 40]


def copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def embed(folder: Path) -> np.ndarray:
    return DnabertV2Embedder(load_dnabert(str(folder))).embed(SEQS)


def weights_of(folder: Path) -> dict:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    return torch.load(folder / "pytorch_model.bin", weights_only=True)


def test_every_checkpoint_tensor_is_loaded_unchanged(model_dir):
    loaded = load_dnabert(str(model_dir))
    state = loaded.model.state_dict()
    saved = weights_of(model_dir)
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    assert loaded.set_aside == () and loaded.commit is None and loaded.model_id == str(model_dir)
    assert loaded.config.num_heads in (4, 6)


def test_no_python_file_of_the_folder_is_ever_run(mosaic_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    marker = tmp_path / "executed"
    for name in ("bert_layers.py", "configuration_bert.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit('remote code ran')\n")
    assert embed(folder).shape == (len(SEQS), 32)
    assert not marker.exists()


def test_transformers_is_not_imported_to_load_and_embed(mosaic_dir):
    code = (
        "import sys\n"
        "from virnucpro_dnabert_v2.embedder import DnabertV2Embedder\n"
        "from virnucpro_dnabert_v2.loading import load_dnabert\n"
        f"DnabertV2Embedder(load_dnabert({str(mosaic_dir)!r})).embed(['ACGT', ''])\n"
        "print(sorted(m for m in ('transformers', 'einops') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_safetensors_and_pytorch_bin_give_the_same_numbers(mosaic_dir, tmp_path):
    from safetensors.torch import save_file

    folder = copy(mosaic_dir, tmp_path)
    save_file(torch.load(folder / "pytorch_model.bin", weights_only=True), folder / "model.safetensors")
    (folder / "pytorch_model.bin").unlink()
    assert np.array_equal(embed(folder), embed(mosaic_dir))


def test_masked_lm_checkpoint_keys_load_and_its_head_is_set_aside(mosaic_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    renamed = {f"bert.{k}": v for k, v in state.items() if not k.startswith("pooler.")}
    renamed["bert.pooler.dense.weight"] = state["pooler.dense.weight"]
    renamed["bert.pooler.dense.bias"] = state["pooler.dense.bias"]
    renamed["cls.predictions.bias"] = torch.zeros(128)
    renamed["cls.predictions.transform.dense.weight"] = torch.zeros(32, 32)
    torch.save(renamed, folder / "pytorch_model.bin")
    loaded = load_dnabert(str(folder))
    assert loaded.set_aside == ("cls.predictions.bias", "cls.predictions.transform.dense.weight")
    assert np.array_equal(embed(folder), embed(mosaic_dir))


def test_plain_bert_folder_is_one_line_error_suggesting_v1(bert_dir):
    with pytest.raises(ModelError) as info:
        load_dnabert(str(bert_dir))
    message = str(info.value)
    assert "\n" not in message and "--backend dnabert=v1" in message and "position" in message


def test_plain_bert_weights_behind_a_mosaic_config_are_refused_too(mosaic_dir, bert_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    (folder / "pytorch_model.bin").unlink()
    shutil.copy(bert_dir / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ModelError, match=r"plain BERT .*--backend dnabert=v1"):
        load_dnabert(str(folder))


def _rewrite(folder: Path, edit) -> None:
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    edit(state)
    torch.save(state, folder / "pytorch_model.bin")


def test_missing_and_unexpected_weights_are_named(mosaic_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    _rewrite(folder, lambda s: (s.pop("encoder.layer.1.mlp.wo.bias"), s.__setitem__("encoder.layer.1.mlp.extra", torch.zeros(2))))
    with pytest.raises(ModelError) as info:
        load_dnabert(str(folder))
    message = str(info.value)
    assert "missing encoder.layer.1.mlp.wo.bias" in message and "unexpected encoder.layer.1.mlp.extra" in message
    assert str(folder / "pytorch_model.bin") in message and "\n" not in message


def test_a_weight_of_the_wrong_shape_is_named(mosaic_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    _rewrite(folder, lambda s: s.__setitem__("encoder.layer.0.mlp.gated_layers.weight", torch.zeros(64, 32)))
    with pytest.raises(ModelError, match=r"encoder\.layer\.0\.mlp\.gated_layers\.weight \(64, 32\) \(config says \(128, 32\)\)"):
        load_dnabert(str(folder))


def test_a_config_with_more_layers_than_the_weights_names_the_missing_ones(mosaic_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"missing encoder\.layer\.2\."):
        load_dnabert(str(folder))


def test_a_pickle_with_code_in_it_is_refused(mosaic_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["evil"] = Path("/tmp")  # an arbitrary object: only weights_only=False would rebuild it
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"pytorch_model\.bin: cannot read the weights"):
        load_dnabert(str(folder))


@pytest.mark.parametrize(
    "remove, expected",
    [
        ("pytorch_model.bin", r"no weights \(model\.safetensors or pytorch_model\.bin\)"),
        ("tokenizer.json", r"no tokenizer\.json"),
        ("config.json", r"is not a Hugging Face model folder \(no config\.json\)"),
    ],
)
def test_missing_files_are_one_line_errors(mosaic_dir, tmp_path, remove, expected):
    folder = copy(mosaic_dir, tmp_path)
    (folder / remove).unlink()
    with pytest.raises(ModelError, match=expected):
        load_dnabert(str(folder))


def test_missing_folder_and_bad_config_are_one_line_errors(mosaic_dir, tmp_path):
    with pytest.raises(ModelError, match=r"does not exist"):
        load_dnabert(str(tmp_path / "nowhere"))
    folder = copy(mosaic_dir, tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"config\.json: cannot read the model config"):
        load_dnabert(str(folder))
    config = json.loads((mosaic_dir / "config.json").read_text())
    config["num_attention_heads"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"hidden_size 32 is not a multiple of num_attention_heads 5"):
        load_dnabert(str(folder))


def _fake_hub_cache(root: Path, source: Path, repo: str, commit: str) -> None:
    """The Hugging Face cache layout huggingface_hub reads offline: snapshots/<commit>, refs/main."""
    base = root / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "pytorch_model.bin"):
        shutil.copy(source / name, snapshot / name)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)


def test_hub_id_pinned_to_a_revision_loads_from_the_cache_with_its_commit(mosaic_dir, tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_cache(tmp_path / "hub", mosaic_dir, "zhihan1996/DNABERT-S", commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    pinned = load_dnabert("zhihan1996/DNABERT-S", revision=commit)
    assert (pinned.commit, pinned.model_id) == (commit, f"zhihan1996/DNABERT-S@{commit}")
    out = DnabertV2Embedder(pinned).embed(SEQS)
    assert np.array_equal(out, embed(mosaic_dir))
    with pytest.raises(ModelError, match=f"at revision {DNABERT_S_REVISION} is not in the Hugging Face cache"):
        load_dnabert(None)  # the default is the pinned revision, not whatever refs/main says


def _hub_cache_with_blobs(root: Path, source: Path, commit: str) -> Path:
    """As huggingface_hub writes it: snapshot files are links to content-addressed blobs."""
    base = root / "models--zhihan1996--DNABERT-S"
    (base / "blobs").mkdir(parents=True)
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in PINNED_FILES:
        blob = base / "blobs" / sha256_file(source / name)
        shutil.copy(source / name, blob)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    return snapshot


def test_the_default_hub_id_loads_the_pinned_revision_and_checks_its_files(mosaic_dir, tmp_path, monkeypatch):
    from virnucpro_core import modelset

    snapshot = _hub_cache_with_blobs(tmp_path / "hub", mosaic_dir, DNABERT_S_REVISION)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    pins = {name: modelset.PinnedFile((mosaic_dir / name).stat().st_size, sha256_file(mosaic_dir / name), "the tiny model")
            for name in ("config.json", "pytorch_model.bin")}
    monkeypatch.setattr(modelset, "DNABERT_S_PINS", pins)
    from safetensors.torch import save_file  # unpinned weights beside the pinned .bin are never read

    save_file({k: v + 1 for k, v in weights_of(mosaic_dir).items()}, snapshot / "model.safetensors")
    loaded = load_dnabert(None)
    assert loaded.weights.name == "pytorch_model.bin"
    assert (loaded.commit, loaded.model_id) == (DNABERT_S_REVISION, f"zhihan1996/DNABERT-S@{DNABERT_S_REVISION}")
    assert np.array_equal(DnabertV2Embedder(loaded).embed(SEQS), embed(mosaic_dir))
    # a cached file that is not the published one is refused in one line and removed from the cache
    weights = snapshot / "pytorch_model.bin"
    blob, size = weights.resolve(), weights.stat().st_size
    monkeypatch.setattr(modelset, "DNABERT_S_PINS", {**pins, "pytorch_model.bin": modelset.PinnedFile(
        468_320_053, "f3cfc3d0541859df64759e758cc4bc40fe1d5760799a7d098a9f9f09501c1e5f", "the real pin")})
    with pytest.raises(ModelError) as info:
        load_dnabert("zhihan1996/DNABERT-S")
    assert str(info.value) == (
        f"DNABERT-S model zhihan1996/DNABERT-S@{DNABERT_S_REVISION}: pytorch_model.bin is not the pinned file "
        f"({size:,} bytes, expected 468,320,053; "
        f"pin from the real pin); it was removed from the cache ({snapshot}): check the network proxy or mirror "
        "(HF_ENDPOINT) and load again"
    )
    assert not weights.exists() and not weights.is_symlink() and not blob.exists()
    assert (snapshot / "config.json").is_file()  # the files that match stay


def test_checkpoints_without_a_pooler_load_with_a_log_line(mosaic_dir, tmp_path, caplog):
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    reference = embed(mosaic_dir)
    for layout in ({"pooler": False}, {"masked_lm": True}):
        folder = write_tiny_dnabert(tmp_path / next(iter(layout)), seed=0, **layout)
        caplog.clear()
        with caplog.at_level("INFO", logger="virnucpro_dnabert_v2.loading"):
            loaded = load_dnabert(str(folder))
        assert loaded.model.pooler is None
        assert f"{folder / 'pytorch_model.bin'}: no pooler (pooler.dense.*), as in masked-LM and add_pooling_layer=False " \
               "exports; mean pooling does not use it, so the encoder is built without one" in caplog.messages
        assert np.array_equal(DnabertV2Embedder(loaded).embed(SEQS), reference), layout
    assert len(loaded.set_aside) == 5  # the masked-LM head


def test_half_a_pooler_is_still_named_as_missing(mosaic_dir, tmp_path):
    folder = copy(mosaic_dir, tmp_path)
    _rewrite(folder, lambda state: state.pop("pooler.dense.bias"))
    with pytest.raises(ModelError, match=r"missing pooler\.dense\.bias\)"):
        load_dnabert(str(folder))


def test_hub_id_not_in_the_cache_offline_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ModelError) as info:
        load_dnabert("zhihan1996/DNABERT-S", revision="abc123")
    message = str(info.value)
    assert "'zhihan1996/DNABERT-S' at revision abc123 is not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_preflight_checks_the_files_load_reads_and_gives_the_width_without_loading(mosaic_dir, odd_dir, tmp_path, monkeypatch):
    """What the core runs before any stage: the same one-line errors as loading, from file checks only."""
    from virnucpro_dnabert_v2 import loading

    monkeypatch.setattr(loading, "read_checkpoint", lambda folder: pytest.fail("the preflight read the weights"))
    assert loading.preflight(str(mosaic_dir)) == 32
    assert loading.preflight(str(odd_dir)) == 24
    for remove, expected in (("pytorch_model.bin", r"no weights \(model\.safetensors or pytorch_model\.bin\)"),
                             ("tokenizer.json", r"no tokenizer\.json"),
                             ("config.json", r"is not a Hugging Face model folder \(no config\.json\)")):
        folder = copy(mosaic_dir, tmp_path / remove)
        (folder / remove).unlink()
        with pytest.raises(ModelError, match=expected):
            loading.preflight(str(folder))
    with pytest.raises(ModelError, match=r"does not exist"):
        loading.preflight(str(tmp_path / "nowhere"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_cache(tmp_path / "hub", mosaic_dir, "zhihan1996/DNABERT-S", commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert loading.preflight("zhihan1996/DNABERT-S", revision=commit) == 32
    with pytest.raises(ModelError, match=r"'zhihan1996/DNABERT-S' at revision abc123 is not in the Hugging Face cache"):
        loading.preflight("zhihan1996/DNABERT-S", revision="abc123")
