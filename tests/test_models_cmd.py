"""`virnucpro models`: import-mlp, init-tiny, download (offline here: downloads are faked), list."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from virnucpro_core.classifier import load_mlp, score
from virnucpro_core.cli import cli
from virnucpro_core.modelset import ESM2_REGRESSION_URL, ESM2_URL, MODELS_ENV, resolve_model_set, sha256_file
from virnucpro_core.testing.mlp import OriginalMLP, write_original_mlps

MLP_300_URL = "https://raw.githubusercontent.com/Li-Jing-1997/VirNucPro/main/300_model.pth"
MLP_500_URL = "https://raw.githubusercontent.com/Li-Jing-1997/VirNucPro/main/500_model.pth"


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("original")
    spec = OriginalMLP(root / "500_model.pth", input_dim=64, hidden_dim=16, seed=5, reference=root / "ref.npz")
    write_original_mlps([spec])
    return {"mlp": spec.path, "ref": spec.reference}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --------------------------------------------------------------------------- import-mlp


def test_import_mlp_writes_safetensors_and_json_that_score_identically(original, tmp_path):
    source = tmp_path / "500_model.pth"
    shutil.copy(original["mlp"], source)
    result = run("models", "import-mlp", str(source))
    assert result.exit_code == 0, result.output
    weights, config = tmp_path / "500_model.safetensors", tmp_path / "500_model.json"
    assert result.output == f"wrote {weights} and {config} (input 64, hidden 16, classes 2)\n"
    assert json.loads(config.read_text())["source"] == {"file": "500_model.pth", "sha256": sha256_file(source)}
    reference = np.load(original["ref"])
    np.testing.assert_array_equal(score(load_mlp(weights), reference["inputs"]), reference["probabilities"])


def test_import_mlp_to_a_chosen_name(original, tmp_path):
    result = run("models", "import-mlp", str(original["mlp"]), "-o", str(tmp_path / "out" / "five"))
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path / "out") == ["five.json", "five.safetensors"]


def test_import_mlp_refuses_a_crafted_pickle_without_running_it(tmp_path):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    source = tmp_path / "500_model.pth"
    torch.save(Payload(), source)
    result = run("models", "import-mlp", str(source))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: refusing to load MLP file {source}: it references posix.system, ")
    assert result.output.count("\n") == 1
    assert not marker.exists()
    assert files_under(tmp_path) == ["500_model.pth"]


# --------------------------------------------------------------------------- download (faked network)


def offline(url, dst, hash_prefix=None, progress=True):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_download_offline_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = tmp_path / "models"
    result = run("models", "download", "--dir", str(target), "-q")
    assert result.exit_code == 1
    dest = target / "esm2" / "esm2_t36_3B_UR50D.pt"
    assert result.stderr == (
        f"Error: could not download {ESM2_URL} to {dest}: <urlopen error [Errno -3] Temporary failure in name "
        f"resolution>; check network access, or fetch the file another way and place it at {dest}\n"
    )
    assert not target.exists()  # it did not exist before: no empty folders left behind


def test_download_mlp_only_offline_names_the_mlp_url(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = tmp_path / "models"
    target.mkdir()
    result = run("models", "download", "--dir", str(target), "--skip-esm", "--skip-dnabert", "--model-type", "300")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: could not download {MLP_300_URL} to {target / 'mlp' / '300_model.pth'}: ")
    assert target.is_dir() and list(target.iterdir()) == []  # the user's folder stays, empty


def test_an_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    def half(url, dst, hash_prefix=None, progress=True):
        Path(dst).write_bytes(b"\0" * 1000)  # as far as it got
        raise ConnectionResetError("Connection reset by peer")

    monkeypatch.setattr(torch.hub, "download_url_to_file", half)
    target = tmp_path / "models"
    result = run("models", "download", "--dir", str(target), "--skip-dnabert")
    assert result.exit_code == 1
    assert "Connection reset by peer; check network access" in result.stderr
    assert files_under(tmp_path) == []


@pytest.fixture
def fake_network(original, monkeypatch):
    """Serve every URL from local bytes; record what was fetched."""
    fetched: list[str] = []
    payloads = {ESM2_URL: b"esm2 weights", ESM2_REGRESSION_URL: b"regression weights",
                MLP_300_URL: original["mlp"].read_bytes(), MLP_500_URL: original["mlp"].read_bytes()}

    def download(url, dst, hash_prefix=None, progress=True):
        fetched.append(url)
        Path(dst).write_bytes(payloads[url])

    def snapshot_download(repo_id, revision=None, local_dir=None, **kwargs):
        fetched.append(repo_id)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / "config.json").write_text('{"hidden_size": 768}')
        (Path(local_dir) / "bert_layers.py").write_text("# remote code\n")
        return local_dir

    import huggingface_hub

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return payloads, fetched


def test_download_lays_out_the_set_records_checksums_and_resumes(tmp_path, fake_network):
    payloads, fetched = fake_network
    target = tmp_path / "models"
    result = run("models", "download", "--dir", str(target), "-q")
    assert result.exit_code == 0, result.output
    assert files_under(target) == [
        "dnabert/DNABERT-S/bert_layers.py",
        "dnabert/DNABERT-S/config.json",
        "esm2/esm2_t36_3B_UR50D-contact-regression.pt",
        "esm2/esm2_t36_3B_UR50D.pt",
        "mlp/300_model.pth",
        "mlp/500_model.pth",
        "models.json",
    ]
    doc = json.loads((target / "models.json").read_text())
    assert doc["kind"] == "real"
    assert (doc["esm2"], doc["dnabert"]) == ("esm2/esm2_t36_3B_UR50D.pt", "dnabert/DNABERT-S")
    assert doc["mlp"] == {"300": "mlp/300_model.pth", "500": "mlp/500_model.pth"}
    assert doc["sha256"] == {rel: sha256_file(target / rel) for rel in files_under(target) if rel != "models.json"}
    assert doc["sources"]["mlp/500_model.pth"] == MLP_500_URL
    models = resolve_model_set(500, models_dir=target)
    assert (models.esm2, models.mlp, models.tiny) == (str(target / "esm2" / "esm2_t36_3B_UR50D.pt"), target / "mlp" / "500_model.pth", False)

    fetched.clear()
    again = run("models", "download", "--dir", str(target), "-q")
    assert again.exit_code == 0
    assert fetched == []  # everything was already there
    assert "MLP 500: " + str(target / "mlp" / "500_model.pth") + " already present" in again.output
    assert json.loads((target / "models.json").read_text()) == doc

    listing = run("models", "list", "--models-dir", str(target), "--verify")
    assert listing.exit_code == 0, listing.output
    assert listing.output.count("ok (SHA-256 verified)") == 5  # esm2, regression, mlp 300/500 and dnabert's config
    (target / "mlp" / "300_model.pth").write_bytes(b"corrupted")
    (target / "dnabert" / "DNABERT-S" / "bert_layers.py").write_text("# edited\n")
    listing = run("models", "list", "--models-dir", str(target), "--verify")
    assert listing.exit_code == 1
    assert listing.stderr == (
        f"Error: {target}: dnabert/DNABERT-S (SHA-256 mismatch), mlp/300_model.pth (SHA-256 mismatch); "
        f"re-run `virnucpro models download --dir {target}`\n"
    )


def test_download_skip_esm_leaves_esm_to_the_hub(tmp_path, fake_network, monkeypatch):
    payloads, fetched = fake_network
    target = tmp_path / "models"
    monkeypatch.setenv(MODELS_ENV, str(target))
    result = run("models", "download", "--skip-esm", "--skip-dnabert", "--model-type", "500")
    assert result.exit_code == 0, result.output
    assert fetched == [MLP_500_URL]
    assert resolve_model_set(500).esm2 == "esm2_t36_3B_UR50D"


def test_a_downloaded_mlp_that_is_not_a_model_is_removed(tmp_path, fake_network):
    payloads, fetched = fake_network
    payloads[MLP_500_URL] = b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"
    target = tmp_path / "models"
    result = run("models", "download", "--dir", str(target), "--skip-esm", "--skip-dnabert")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: the downloaded 500_model.pth is not a usable MLP and was removed: MLP file {target / 'mlp' / '500_model.pth'} "
        "is a Git LFS pointer, not the model"
    )
    assert not (target / "mlp" / "500_model.pth").exists()
    assert not (target / "models.json").exists()


def test_download_needs_a_directory_and_refuses_a_tiny_one(tmp_path):
    result = run("models", "download")
    assert (result.exit_code, result.stderr) == (2, f"Error: no models directory: pass --dir DIR or set {MODELS_ENV}\n")
    (tmp_path / "models.json").write_text('{"kind": "tiny"}')
    result = run("models", "download", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"Error: {tmp_path} holds a tiny random model set: download the real models to another --dir\n"


def test_download_without_huggingface_hub_says_what_to_install(tmp_path, fake_network, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    result = run("models", "download", "--dir", str(tmp_path / "m"), "--skip-esm", "--skip-mlp")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: huggingface_hub is not installed, so DNABERT-S cannot be fetched: pip install huggingface_hub "
        "(or 'virnucpro[download]'), or pass --skip-dnabert\n"
    )


# --------------------------------------------------------------------------- init-tiny and list


def test_init_tiny_writes_a_consistent_set_and_warns_loudly(tmp_path):
    target = tmp_path / "tiny"
    result = run("models", "init-tiny", str(target))
    assert result.exit_code == 0, result.output
    assert "RANDOM TINY models" in result.stderr and "not biologically meaningful" in result.stderr
    models = resolve_model_set(300, models_dir=target)
    assert models.tiny and models.root == target
    # the MLP fits the embeddings: DNABERT hidden size + ESM-2 width
    esm_cfg = torch.load(models.esm2, map_location="cpu", weights_only=False)["cfg"]["model"]
    dnabert_hidden = json.loads((Path(models.dnabert) / "config.json").read_text())["hidden_size"]
    for model_type in (300, 500):
        mlp = load_mlp(resolve_model_set(model_type, models_dir=target).mlp)
        assert mlp.config.input_dim == dnabert_hidden + esm_cfg.encoder_embed_dim == 64
    listing = run("models", "list", "--models-dir", str(target), "--verify")
    assert listing.exit_code == 0, listing.output
    assert "(tiny; models.json)" in listing.output and "RANDOM TINY" in listing.output
    again = run("models", "init-tiny", str(target))
    assert (again.exit_code, again.stderr) == (
        2, f"Error: {target / 'models.json'} already exists: choose another directory or pass --force\n")


def test_list_shows_what_is_missing(tmp_path):
    (tmp_path / "mlp").mkdir()
    (tmp_path / "mlp" / "500_model.pth").write_bytes(b"x")
    result = run("models", "list", "--models-dir", str(tmp_path), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert (doc["kind"], doc["models_json"]) == ("real", False)
    assert {f["role"]: f["present"] for f in doc["files"]} == {
        "esm2": False, "esm2 contact regression": False, "dnabert": False, "mlp 300": False, "mlp 500": True}
    text = run("models", "list", "--models-dir", str(tmp_path)).output
    assert "MISSING" in text and "mlp/500_model.pth" in text
