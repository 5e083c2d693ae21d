"""`virnucpro models`: import-mlp, init-tiny, download (offline here: downloads are faked), list."""

from __future__ import annotations

import fnmatch
import hashlib
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
from virnucpro_core import modelset
from virnucpro_core.checksum import git_blob_sha1
from virnucpro_core.modelset import ESM2_REGRESSION_URL, ESM2_URL, MODELS_ENV, resolve_model_set, sha256_file
from virnucpro_core.testing.mlp import OriginalMLP, write_original_mlps

COMMIT = "0f93f2755a7ea1acd3ff1bcf182892f960ef3326"  # Li-Jing-1997/VirNucPro, 2025-04-01 (git log of the original)
MLP_300_URL = f"https://raw.githubusercontent.com/Li-Jing-1997/VirNucPro/{COMMIT}/300_model.pth"
MLP_500_URL = f"https://raw.githubusercontent.com/Li-Jing-1997/VirNucPro/{COMMIT}/500_model.pth"


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
    result = run("models", "download", "--models-dir", str(target), "-q")
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
    result = run("models", "download", "--models-dir", str(target), "--skip-dnabert")
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

    def snapshot_download(repo_id, revision=None, local_dir=None, ignore_patterns=None, **kwargs):
        fetched.append(repo_id)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for name, data in DNABERT_FILES.items():
            if not any(fnmatch.fnmatch(name, pattern) for pattern in ignore_patterns or ()):
                (Path(local_dir) / name).write_bytes(data)
        return local_dir

    import huggingface_hub

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    # the local stand-ins take the place of the published files, pins included
    blob = git_blob_sha1(original["mlp"])
    monkeypatch.setattr(modelset, "MLP_GIT_BLOBS", {300: blob, 500: blob})
    monkeypatch.setattr(modelset, "ESM2_PINS", {"esm2_t36_3B_UR50D.pt": pin_of(payloads[ESM2_URL]),
                                                "esm2_t36_3B_UR50D-contact-regression.pt": pin_of(payloads[ESM2_REGRESSION_URL])})
    monkeypatch.setattr(modelset, "DNABERT_S_PINS", {name: pin_of(DNABERT_FILES[name]) for name in ("config.json", "pytorch_model.bin")})
    return payloads, fetched


#: What the fake hub serves for DNABERT-S.
DNABERT_FILES = {"config.json": b'{"hidden_size": 768}', "pytorch_model.bin": b"dnabert weights", "bert_layers.py": b"# remote code\n",
                 "model.safetensors": b"unpinned weights"}


def pin_of(data: bytes) -> modelset.PinnedFile:
    return modelset.PinnedFile(len(data), hashlib.sha256(data).hexdigest(), "the test's fake network")


def test_download_lays_out_the_set_records_checksums_and_resumes(tmp_path, fake_network):
    payloads, fetched = fake_network
    target = tmp_path / "models"
    result = run("models", "download", "--models-dir", str(target), "-q")
    assert result.exit_code == 0, result.output
    assert files_under(target) == [
        "dnabert/DNABERT-S/bert_layers.py",
        "dnabert/DNABERT-S/config.json",
        "dnabert/DNABERT-S/pytorch_model.bin",
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
    again = run("models", "download", "--models-dir", str(target), "-q")
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
        f"re-run `virnucpro models download --models-dir {target}`\n"
    )


def test_download_skip_esm_leaves_esm_to_the_hub(tmp_path, fake_network, monkeypatch):
    payloads, fetched = fake_network
    target = tmp_path / "models"
    monkeypatch.setenv(MODELS_ENV, str(target))
    result = run("models", "download", "--skip-esm", "--skip-dnabert", "--model-type", "500")
    assert result.exit_code == 0, result.output
    assert fetched == [MLP_500_URL]
    assert resolve_model_set(500).esm2 == "esm2_t36_3B_UR50D"


def test_a_downloaded_mlp_that_is_not_a_model_is_removed(tmp_path, fake_network, monkeypatch):
    payloads, fetched = fake_network
    payloads[MLP_500_URL] = b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"
    monkeypatch.setattr(modelset, "MLP_GIT_BLOBS", {})  # unpinned, so the content check is what stops it
    target = tmp_path / "models"
    result = run("models", "download", "--models-dir", str(target), "--skip-esm", "--skip-dnabert")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: the downloaded 500_model.pth is not a usable MLP and was removed: MLP file {target / 'mlp' / '500_model.pth'} "
        "is a Git LFS pointer, not the model"
    )
    assert not (target / "mlp" / "500_model.pth").exists()
    assert not (target / "models.json").exists()


def test_the_mlps_come_from_a_fixed_commit_with_the_git_ids_of_its_tree():
    from virnucpro_core.commands.models import download_plan

    plan = {item.relpath: item for item in download_plan((300, 500), esm=False, mlp=True)}
    assert plan["mlp/300_model.pth"].url == MLP_300_URL and plan["mlp/500_model.pth"].url == MLP_500_URL
    # `git ls-tree` of that commit in the original repository
    assert plan["mlp/300_model.pth"].git_blob == "a0b5b85e7c1e44f00cde146d091beb82b2c8e855"
    assert plan["mlp/500_model.pth"].git_blob == "fc35d5ef9f1f4564eea7036f34f4f8ec6000d33d"


def test_git_blob_ids_are_computed_as_git_computes_them(tmp_path):
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object hello`


def test_a_download_that_is_not_the_pinned_file_is_refused_and_nothing_is_kept(tmp_path, fake_network, monkeypatch):
    payloads, fetched = fake_network
    monkeypatch.setattr(modelset, "MLP_GIT_BLOBS", {500: "fc35d5ef9f1f4564eea7036f34f4f8ec6000d33d"})  # the real pin
    target = tmp_path / "models"
    result = run("models", "download", "--models-dir", str(target), "--skip-esm", "--skip-dnabert", "--model-type", "500")
    assert result.exit_code == 1
    got = git_blob_sha1(fake_network_file(tmp_path, payloads[MLP_500_URL]))
    assert result.stderr == (
        f"Error: {MLP_500_URL} did not give the pinned file (git object {got}, expected "
        f"fc35d5ef9f1f4564eea7036f34f4f8ec6000d33d at commit {COMMIT} of Li-Jing-1997/VirNucPro); nothing was kept: "
        "check the URL or network proxy, or fetch the file from that commit yourself\n"
    )
    assert files_under(tmp_path / "models") == []


def test_esm2_and_dnabert_s_are_pinned_to_published_sizes_and_checksums():
    from virnucpro_core.commands.models import download_plan

    plan = {item.relpath: item for item in download_plan((500,), esm=True, mlp=False)}
    esm2 = plan["esm2/esm2_t36_3B_UR50D.pt"].pin
    regression = plan["esm2/esm2_t36_3B_UR50D-contact-regression.pt"].pin
    assert (esm2.size, esm2.sha256) == (5_678_116_398, "7de8b4082ba15891959ab368b77ce3886697af1efb16d3c9e9e7b0c5d3f07500")
    assert (regression.size, regression.sha256) == (6_759, "4da500eab246481dc9c8c95bc7b1d02f2803d761c380b0e95186d4a07d0fc84e")
    assert modelset.DNABERT_S_REVISION == "00e47f96cdea35e4b6f5df89e5419cbe47d490c6"
    pins = modelset.dnabert_pins("zhihan1996/DNABERT-S", modelset.DNABERT_S_REVISION)
    assert (pins["pytorch_model.bin"].size, pins["pytorch_model.bin"].sha256) == (
        468_320_053, "f3cfc3d0541859df64759e758cc4bc40fe1d5760799a7d098a9f9f09501c1e5f")
    # the tests' copy of the published config.json is the pinned file itself
    assert pins["config.json"].mismatch(Path(__file__).parent / "data" / "dnabert_s_config.json") is None
    assert modelset.dnabert_pins("zhihan1996/DNABERT-S", "main") == {}
    assert modelset.dnabert_pins("someone/DNABERT-S-copy", modelset.DNABERT_S_REVISION) == {}


def test_an_esm2_download_that_is_not_the_pinned_file_is_refused_and_nothing_is_kept(tmp_path, fake_network, monkeypatch):
    payloads, fetched = fake_network
    monkeypatch.setattr(modelset, "ESM2_PINS", {**modelset.ESM2_PINS, "esm2_t36_3B_UR50D.pt": pin_of(b"esm2 weights!")})
    target = tmp_path / "models"
    result = run("models", "download", "--models-dir", str(target), "--skip-dnabert", "--skip-mlp", "-q")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {ESM2_URL} gave a file that is not the pinned file (12 bytes, expected 13; pin from the test's fake "
        "network); nothing was kept under esm2/esm2_t36_3B_UR50D.pt: check the URL or network proxy and retry\n"
    )
    assert files_under(tmp_path / "models") == []
    # same size, other bytes: the SHA-256 decides
    monkeypatch.setattr(modelset, "ESM2_PINS", {**modelset.ESM2_PINS, "esm2_t36_3B_UR50D.pt": pin_of(b"esm2 weightz")})
    result = run("models", "download", "--models-dir", str(target), "--skip-dnabert", "--skip-mlp", "-q")
    assert result.exit_code == 1
    assert f"(SHA-256 {hashlib.sha256(b'esm2 weights').hexdigest()}, expected {hashlib.sha256(b'esm2 weightz').hexdigest()};" \
        in result.stderr
    assert files_under(tmp_path / "models") == []


def test_a_dnabert_download_at_the_pinned_revision_must_give_the_pinned_files(tmp_path, fake_network, monkeypatch):
    monkeypatch.setattr(modelset, "DNABERT_S_PINS", {**modelset.DNABERT_S_PINS, "pytorch_model.bin": pin_of(b"other weights")})
    target = tmp_path / "models"
    result = run("models", "download", "--models-dir", str(target), "--skip-esm", "--skip-mlp")
    assert result.exit_code == 1
    revision = modelset.DNABERT_S_REVISION
    assert result.stderr == (
        f"Error: zhihan1996/DNABERT-S@{revision} gave a pytorch_model.bin that is not the pinned file (15 bytes, expected 13; "
        f"pin from the test's fake network); nothing was kept under {target / 'dnabert' / 'DNABERT-S'}: check the network "
        "proxy or mirror (HF_ENDPOINT) and retry\n"
    )
    assert files_under(tmp_path) == []  # neither the snapshot nor its partial folder
    other = run("models", "download", "--models-dir", str(target), "--skip-esm", "--skip-mlp", "--dnabert-revision", "abc123")
    assert other.exit_code == 0, other.output  # another revision has no pins, and says so
    assert (target / "dnabert" / "DNABERT-S" / "model.safetensors").is_file()  # the pinned one never fetches them
    assert (f"DNABERT-S: revision abc123 is not the pinned {revision}; its files are recorded in models.json but not "
            "checked against published checksums\n") in other.stderr


def fake_network_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "served"
    path.write_bytes(data)
    return path


def test_a_re_download_with_another_checksum_is_an_error_and_keeps_the_first_file(tmp_path, fake_network, monkeypatch):
    payloads, fetched = fake_network
    target = tmp_path / "models"
    args = ["models", "download", "--models-dir", str(target), "-q"]
    assert run(*args).exit_code == 0
    first = json.loads((target / "models.json").read_text())
    kept = (target / "esm2" / "esm2_t36_3B_UR50D.pt").read_bytes()
    payloads[ESM2_URL] = b"other esm2 weights"  # the source changed
    monkeypatch.setattr(modelset, "ESM2_PINS", {})  # unpinned, so the record is what stops it
    result = run(*args, "--force")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {ESM2_URL} gave a file with SHA-256 {hashlib.sha256(b'other esm2 weights').hexdigest()}, but models.json "
        f"records {first['sha256']['esm2/esm2_t36_3B_UR50D.pt']} from the first download of esm2/esm2_t36_3B_UR50D.pt; "
        "the source changed or the download is corrupt, so the file was not replaced"
    )
    assert (target / "esm2" / "esm2_t36_3B_UR50D.pt").read_bytes() == kept
    assert json.loads((target / "models.json").read_text()) == first
    payloads[ESM2_URL] = b"esm2 weights"  # the same bytes again: a forced re-download is fine
    assert run(*args, "--force").exit_code == 0


def test_a_re_download_of_the_same_dnabert_revision_must_give_the_same_files(tmp_path, fake_network, monkeypatch):
    payloads, fetched = fake_network
    target = tmp_path / "models"
    args = ["models", "download", "--models-dir", str(target), "--skip-esm", "--skip-mlp", "--dnabert-revision", "abc123"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    doc = json.loads((target / "models.json").read_text())
    assert doc["revisions"] == {"dnabert/DNABERT-S": "abc123"}
    assert doc["sources"]["dnabert/DNABERT-S"] == "https://huggingface.co/zhihan1996/DNABERT-S/tree/abc123"
    import huggingface_hub

    original_snapshot = huggingface_hub.snapshot_download

    def changed(repo_id, revision=None, local_dir=None, **kwargs):
        original_snapshot(repo_id, revision, local_dir)
        (Path(local_dir) / "bert_layers.py").write_text("# changed upstream\n")
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", changed)
    result = run(*args, "--force")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        "Error: the DNABERT-S snapshot differs from the one recorded in models.json for the same revision "
        "(dnabert/DNABERT-S/bert_layers.py); "
    )
    assert (target / "dnabert" / "DNABERT-S" / "bert_layers.py").read_text() == "# remote code\n"
    assert not (target / "dnabert" / ".DNABERT-S.partial").exists()
    other = run("models", "download", "--models-dir", str(target), "--skip-esm", "--skip-mlp", "--dnabert-revision",
                "def456", "--force")
    assert other.exit_code == 0, other.output  # another revision may differ
    assert json.loads((target / "models.json").read_text())["revisions"] == {"dnabert/DNABERT-S": "def456"}


def test_an_unpinned_dnabert_download_says_so(tmp_path, fake_network, monkeypatch):
    monkeypatch.setattr(modelset, "DNABERT_S_REVISION", None)
    result = run("models", "download", "--models-dir", str(tmp_path / "m"), "--skip-esm", "--skip-mlp")
    assert result.exit_code == 0
    assert "DNABERT-S: no revision pinned (--dnabert-revision, or DNABERT_S_REVISION in virnucpro_core/modelset.py); " \
           "fetching the hub's latest\n" in result.stderr
    monkeypatch.setattr(modelset, "DNABERT_S_REVISION", "0123abc")
    result = run("models", "download", "--models-dir", str(tmp_path / "n"), "--skip-esm", "--skip-mlp")
    assert result.exit_code == 0 and "no revision pinned" not in result.stderr
    assert json.loads((tmp_path / "n" / "models.json").read_text())["revisions"] == {"dnabert/DNABERT-S": "0123abc"}


def test_download_needs_a_directory_and_refuses_a_tiny_one(tmp_path):
    result = run("models", "download")
    assert (result.exit_code, result.stderr) == (2, f"Error: no models directory: pass --models-dir DIR or set {MODELS_ENV}\n")
    (tmp_path / "models.json").write_text('{"kind": "tiny"}')
    result = run("models", "download", "--models-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"Error: {tmp_path} holds a tiny random model set: download the real models to another --models-dir\n"


def test_download_without_huggingface_hub_says_what_to_install(tmp_path, fake_network, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    result = run("models", "download", "--models-dir", str(tmp_path / "m"), "--skip-esm", "--skip-mlp")
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


def test_init_tiny_writes_every_file_with_the_same_permissions(tmp_path):
    from virnucpro_core.atomic import default_file_mode

    target = tmp_path / "tiny"
    assert run("models", "init-tiny", str(target)).exit_code == 0
    modes = {p.relative_to(target).as_posix(): oct(p.stat().st_mode & 0o777) for p in target.rglob("*") if p.is_file()}
    assert len(modes) >= 8 and set(modes.values()) == {oct(default_file_mode())}, modes


def test_list_shows_what_is_missing(tmp_path):
    (tmp_path / "mlp").mkdir()
    (tmp_path / "mlp" / "500_model.pth").write_bytes(b"x")
    result = run("models", "list", "--models-dir", str(tmp_path), "--json")
    assert result.exit_code == 1  # the default set needs every file listed
    doc = json.loads(result.stdout)
    assert (doc["kind"], doc["models_json"]) == ("real", False)
    assert {f["role"]: f["present"] for f in doc["files"]} == {
        "esm2": False, "esm2 contact regression": False, "dnabert": False, "mlp 300": False, "mlp 500": True}
    text = run("models", "list", "--models-dir", str(tmp_path))
    assert text.exit_code == 1
    assert run("models", "list", "--dir", str(tmp_path)).stdout == text.stdout  # the README's alias, as for download
    assert "MISSING" in text.stdout and "mlp/500_model.pth" in text.stdout
    assert text.stderr == (
        f"Error: {tmp_path}: esm2/esm2_t36_3B_UR50D.pt (missing), esm2/esm2_t36_3B_UR50D-contact-regression.pt (missing), "
        f"dnabert/DNABERT-S (missing), mlp/300_model.pth (missing); re-run `virnucpro models download --models-dir {tmp_path}`\n"
    )
