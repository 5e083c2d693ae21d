"""The published MLP: loaded safely from the original pickles, scored as the original does."""

from __future__ import annotations

import os
import pickle
import pickletools
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from virnucpro_core.classifier import (
    LABELS,
    MLPClassifier,
    MLPConfig,
    build_mlp,
    load_mlp,
    predicted_classes,
    predicted_labels,
    save_mlp,
    score,
)
from virnucpro_core.errors import InputError, ModelError
from virnucpro_core.testing.mlp import OriginalMLP, write_original_mlps
from virnucpro_core.testing.pickles import PAYLOAD_GLOBALS, hostile_payloads

PUBLISHED_KEYS = [
    "hidden_layer.weight",
    "hidden_layer.bias",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "bn1.num_batches_tracked",
    "output_layer.weight",
    "output_layer.bias",
]


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    """Two MLPs saved by a separate ``__main__`` script, as the original saved its own."""
    root = tmp_path_factory.mktemp("original")
    small = OriginalMLP(root / "small_model.pth", input_dim=64, hidden_dim=16, seed=3, reference=root / "small_ref.npz")
    # trained on a GPU like the published files: storages tagged "cuda:0"
    published = OriginalMLP(root / "500_model.pth", seed=7, reference=root / "published_ref.npz", n_reference=300,
                            storage_location="cuda:0")
    write_original_mlps([small, published])
    return {"small": small.path, "small_ref": small.reference, "published": published.path,
            "published_ref": published.reference}


def _pickle_globals(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    return {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


class Payload:
    """Unpickling this runs ``touch MARKER`` (the classic pickle attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _MLPBody(nn.Module):
    """The published layers; ``main_mlp`` gives it the name the original pickles carry."""

    def __init__(self, input_dim: int, hidden_dim: int, num_class: int) -> None:
        super().__init__()
        self.hidden_layer = nn.Linear(input_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, num_class)
        self.dropout = nn.Dropout(0.5)


@pytest.fixture
def main_mlp(monkeypatch):
    """A class registered as ``__main__.MLPClassifier``, so ``torch.save`` names it so: for doctored files."""
    cls = type("MLPClassifier", (_MLPBody,), {"__module__": "__main__", "__qualname__": "MLPClassifier"})
    monkeypatch.setattr(sys.modules["__main__"], "MLPClassifier", cls, raising=False)
    return cls


# --------------------------------------------------------------------------- faithful loading


def test_the_factory_pickles_a_whole_gpu_module_of_class_main_mlpclassifier(originals):
    names = _pickle_globals(originals["published"])
    assert "__main__.MLPClassifier" in names
    assert {"torch.nn.modules.linear.Linear", "torch.nn.modules.batchnorm.BatchNorm1d",
            "torch.nn.modules.dropout.Dropout"} <= names
    with zipfile.ZipFile(originals["published"]) as archive:
        assert b"cuda:0" in archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def test_safe_load_gives_the_logits_the_saving_process_computed(originals):
    reference = np.load(originals["small_ref"])
    model = load_mlp(originals["small"])
    with torch.no_grad():
        logits = model(torch.from_numpy(reference["inputs"])).numpy()
    np.testing.assert_array_equal(logits, reference["logits"])


@pytest.fixture
def torch_threads():
    """Run a test at another torch thread count, restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_score_is_the_original_softmax_in_float32(originals, tmp_path, torch_threads, threads):
    """Bit for bit at any thread count: the reference is the original's forward in its own batches of 256.

    A float32 matmul over the last 44 rows need not give the bits those rows get inside
    one 300-row matmul (AVX-512 at 2 threads), nor the bits of another thread count
    (MKL_CBWR=COMPATIBLE at 3 threads here), so the reference is computed as score()
    computes: 256 + 44 rows, at the thread count of this process.
    """
    path, ref = originals["published"], originals["published_ref"]
    if threads is not None:
        torch_threads(threads)
        path, ref = tmp_path / "500_model.pth", tmp_path / "ref.npz"
        write_original_mlps([OriginalMLP(path, seed=7, reference=ref, n_reference=300, storage_location="cuda:0")])
    reference = np.load(ref)
    model = load_mlp(path)
    probabilities = score(model, reference["inputs"])  # 300 rows: two batches of the original 256
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (300, 2)
    np.testing.assert_array_equal(probabilities, reference["probabilities"])


def test_published_sizes_and_attribute_names(originals):
    model = load_mlp(originals["published"])
    assert model.config == MLPConfig(input_dim=3328, hidden_dim=512, num_class=2)
    assert list(model.state_dict()) == PUBLISHED_KEYS
    assert isinstance(model.bn1, nn.BatchNorm1d) and model.dropout.p == 0.5
    assert not model.training
    assert int(model.bn1.num_batches_tracked) == 3  # the running statistics came across


def test_a_class_saved_from_a_module_loads_the_same(tmp_path, main_mlp, monkeypatch):
    """``from train import MLPClassifier`` pickles ``train.MLPClassifier``: same architecture, same load."""
    model = main_mlp(8, 4, 2)
    fake_module = type(sys)("train")
    monkeypatch.setitem(sys.modules, "train", fake_module)
    monkeypatch.setattr(main_mlp, "__module__", "train")
    fake_module.MLPClassifier = main_mlp
    path = tmp_path / "model.pth"
    torch.save(model, path)
    assert "train.MLPClassifier" in _pickle_globals(path)
    loaded = load_mlp(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_a_plain_state_dict_file_loads_too(originals, tmp_path):
    model = load_mlp(originals["small"])
    path = tmp_path / "state.pth"
    torch.save(model.state_dict(), path)
    again = load_mlp(path)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)


# --------------------------------------------------------------------------- refusing pickles


def _assert_refused(path: Path, marker: Path, what: str) -> None:
    with pytest.raises(ModelError) as caught:
        load_mlp(path)
    message = str(caught.value)
    assert message.startswith(f"refusing to load MLP file {path}: it references {what}, which is not part of an MLPClassifier")
    assert "\n" not in message
    assert not marker.exists(), "the pickle's payload ran"


def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "500_model.pth"
    torch.save(Payload(marker), path)
    _assert_refused(path, marker, "posix.system")
    # The file really is an attack: an ordinary unpickling runs it.
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"], check=False,
                   capture_output=True)
    assert marker.exists()


def test_a_payload_hidden_inside_a_real_looking_mlp_is_refused(tmp_path, main_mlp):
    marker = tmp_path / "PWNED"
    model = main_mlp(8, 4, 2)
    model.bn1.__dict__["eps"] = Payload(marker)
    path = tmp_path / "500_model.pth"
    torch.save(model, path)
    assert "__main__.MLPClassifier" in _pickle_globals(path)
    _assert_refused(path, marker, "posix.system")


@pytest.mark.parametrize("writer", ["legacy torch", "plain pickle"])
def test_crafted_files_of_the_old_formats_are_refused(tmp_path, writer):
    marker = tmp_path / "PWNED"
    path = tmp_path / "300_model.pth"
    if writer == "legacy torch":
        torch.save(Payload(marker), path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    _assert_refused(path, marker, "posix.system")


def _prove_live(path: Path, marker: Path) -> None:
    """The file really is an attack: an ordinary unpickling runs it (and writes the marker)."""
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("name", sorted(hostile_payloads(Path("m"))))
def test_payloads_torch_does_not_block_by_module_are_refused_and_never_run(tmp_path, main_mlp, name):
    """exec/eval/getattr chains are not in torch's module blocklist (os, posix, sys): only our allow-list stops them."""
    marker = tmp_path / "PWNED"
    payload = hostile_payloads(marker)[name]
    whole = tmp_path / "500_model.pth"
    torch.save(payload, whole)
    hidden = tmp_path / "300_model.pth"
    model = main_mlp(8, 4, 2)
    model.bn1.__dict__["eps"] = payload
    torch.save(model, hidden)
    legacy = tmp_path / "legacy_model.pth"
    legacy.write_bytes(pickle.dumps(payload, protocol=2))
    for path in (whole, hidden, legacy):
        with pytest.raises(ModelError) as caught:
            load_mlp(path)
        message = str(caught.value)
        assert message.startswith(f"refusing to load MLP file {path}: it references "), message
        # a zip file is scanned for every global it names; for a plain pickle torch names the first, as it spells it
        cited = PAYLOAD_GLOBALS[name] if path != legacy else (PAYLOAD_GLOBALS[name][0].removeprefix("builtins."),)
        assert all(part in message for part in cited) and "\n" not in message, message
        assert not marker.exists(), f"the {name} payload ran while loading {path.name}"
    for path in (whole, hidden):
        _prove_live(path, marker)
        marker.unlink()
    pickle.loads(legacy.read_bytes())
    assert marker.read_text() == "pwned"


def test_another_class_is_refused_even_without_a_payload(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(nn.Sequential(nn.Linear(4, 2)), path)
    with pytest.raises(ModelError, match=r"it references torch\.nn\.modules\.container\.Sequential, which is not part"):
        load_mlp(path)


def test_a_different_batchnorm_epsilon_is_refused(tmp_path, main_mlp):
    model = main_mlp(8, 4, 2)
    model.bn1.eps = 1e-3
    path = tmp_path / "model.pth"
    torch.save(model, path)
    with pytest.raises(ModelError) as caught:
        load_mlp(path)
    assert str(caught.value) == f"MLP file {path}: bn1.eps is 0.001, but the MLPClassifier uses 1e-05"


def test_shapes_are_checked(tmp_path):
    state = MLPClassifier(8, 4, 2).state_dict()
    state["bn1.running_var"] = torch.ones(5)
    with pytest.raises(ModelError) as caught:
        build_mlp(state, tmp_path / "x.pth")
    assert str(caught.value) == f"MLP file {tmp_path / 'x.pth'}: bn1.running_var has shape (5,), expected (4,)"


def test_extra_keys_are_refused(tmp_path):
    state = dict(MLPClassifier(8, 4, 2).state_dict())
    state["extra_layer.weight"] = torch.ones(2)
    with pytest.raises(ModelError, match=r"unexpected keys \['extra_layer.weight'\] / missing keys \[\]"):
        build_mlp(state, tmp_path / "x.pth")


def test_missing_file_and_lfs_pointer(tmp_path):
    missing = tmp_path / "500_model.pth"
    with pytest.raises(ModelError) as caught:
        load_mlp(missing)
    assert str(caught.value) == f"MLP file {missing} does not exist"
    pointer = tmp_path / "300_model.pth"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 6830000\n")
    with pytest.raises(ModelError, match=r"is a Git LFS pointer, not the model"):
        load_mlp(pointer)


def test_a_file_that_is_not_a_model_gets_one_line(tmp_path):
    junk = tmp_path / "500_model.pth"
    junk.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(ModelError) as caught:
        load_mlp(junk)
    assert str(caught.value) == (
        f"cannot read MLP file {junk}: not a PyTorch pickle the restricted loader accepts (Unsupported operand 60); "
        "is it the published 300_model.pth/500_model.pth?"
    )


# --------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_keeps_every_bit(originals, tmp_path):
    model = load_mlp(originals["small"])
    weights, config = save_mlp(model, tmp_path / "small_model.safetensors", source=originals["small"])
    assert (weights, config) == (tmp_path / "small_model.safetensors", tmp_path / "small_model.json")
    import json

    doc = json.loads(config.read_text())
    assert {k: doc[k] for k in ("format", "input_dim", "hidden_dim", "num_class", "labels")} == {
        "format": "virnucpro-mlp", "input_dim": 64, "hidden_dim": 16, "num_class": 2, "labels": ["others", "virus"]}
    from virnucpro_core.modelset import sha256_file

    assert doc["source"] == {"file": "small_model.pth", "sha256": sha256_file(originals["small"])}
    reference = np.load(originals["small_ref"])
    for path in (weights, config):  # either file names the pair
        np.testing.assert_array_equal(score(load_mlp(path), reference["inputs"]), reference["probabilities"])
    # content, not the suffix, tells a safetensors file apart
    shutil.copy(weights, tmp_path / "renamed.bin")
    shutil.copy(config, tmp_path / "renamed.json")
    np.testing.assert_array_equal(score(load_mlp(tmp_path / "renamed.bin"), reference["inputs"]), reference["probabilities"])


def test_safetensors_needs_its_matching_json(originals, tmp_path):
    weights, config = save_mlp(load_mlp(originals["small"]), tmp_path / "m.safetensors")
    config.unlink()
    with pytest.raises(ModelError) as caught:
        load_mlp(weights)
    assert str(caught.value) == (
        f"MLP config {config} is missing (it must sit beside m.safetensors); "
        "re-create both with `virnucpro models import-mlp`"
    )
    save_mlp(MLPClassifier(64, 16, 2), tmp_path / "other.safetensors")
    shutil.copy(tmp_path / "other.json", config)  # a config belonging to other weights
    with pytest.raises(ModelError, match=r"do not match .*m\.json \(SHA-256 differs\)"):
        load_mlp(weights)


# --------------------------------------------------------------------------- scoring


def test_ties_go_to_class_0_as_torch_max_does():
    probabilities = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    torch_choice = torch.max(torch.from_numpy(probabilities), 1)[1].numpy()
    assert predicted_classes(probabilities).tolist() == torch_choice.tolist() == [0, 1, 0]
    assert predicted_labels(probabilities) == ["others", "virus", "others"]
    assert LABELS == ("others", "virus")


def test_score_checks_the_feature_width_and_handles_no_rows(originals):
    model = load_mlp(originals["small"])
    with pytest.raises(InputError) as caught:
        score(model, np.zeros((3, 65), dtype=np.float32))
    assert str(caught.value).startswith("features have shape (3, 65), but the MLP expects (n, 64)")
    assert score(model, np.zeros((0, 64), dtype=np.float32)).shape == (0, 2)


def test_score_runs_in_eval_mode_whatever_state_it_gets(originals):
    reference = np.load(originals["small_ref"])
    model = load_mlp(originals["small"]).train()  # dropout and batch statistics would change everything
    np.testing.assert_array_equal(score(model, reference["inputs"]), reference["probabilities"])
    with torch.no_grad():
        expected = F.softmax(model.eval()(torch.from_numpy(reference["inputs"])), dim=1).numpy()
    np.testing.assert_array_equal(score(model, reference["inputs"], batch_size=1000), expected)
