"""Which model files a run uses: explicit options, then a models directory, then hub names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from virnucpro_core.errors import ConfigError, ModelError
from virnucpro_core.modelset import (
    DEFAULT_DNABERT,
    DEFAULT_ESM2,
    MODELS_ENV,
    ModelSet,
    inspect_models_dir,
    resolve_model_set,
    sha256_file,
)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def real_layout(root: Path, *, mlps=(300, 500)) -> Path:
    """The default layout of a models directory, with placeholder files (resolution only checks presence)."""
    touch(root / "esm2" / "esm2_t36_3B_UR50D.pt")
    touch(root / "esm2" / "esm2_t36_3B_UR50D-contact-regression.pt")
    touch(root / "dnabert" / "DNABERT-S" / "config.json", "{}")
    for model_type in mlps:
        touch(root / "mlp" / f"{model_type}_model.pth")
    return root


def test_default_layout_without_models_json(tmp_path):
    root = real_layout(tmp_path / "models")
    models = resolve_model_set(500, models_dir=root)
    assert models == ModelSet(
        esm2=str(root / "esm2" / "esm2_t36_3B_UR50D.pt"),
        dnabert=str(root / "dnabert" / "DNABERT-S"),
        mlp=root / "mlp" / "500_model.pth",
        tiny=False,
        root=root,
        model_type=500,
    )


def test_the_environment_names_the_directory_and_the_argument_beats_it(tmp_path, monkeypatch):
    env_root = real_layout(tmp_path / "from_env")
    arg_root = real_layout(tmp_path / "from_arg")
    monkeypatch.setenv(MODELS_ENV, str(env_root))
    assert resolve_model_set(300).mlp == env_root / "mlp" / "300_model.pth"
    assert resolve_model_set(300, models_dir=arg_root).mlp == arg_root / "mlp" / "300_model.pth"


def test_explicit_options_win_over_the_directory(tmp_path):
    root = real_layout(tmp_path / "models")
    own_mlp = touch(tmp_path / "mine.pth")
    own_esm = touch(tmp_path / "esm2_t6_8M_UR50D.pt")
    models = resolve_model_set(300, models_dir=root, esm_model=str(own_esm), dnabert_model="someone/DNABERT-X", mlp=own_mlp)
    assert (models.esm2, models.dnabert, models.mlp) == (str(own_esm), "someone/DNABERT-X", own_mlp)


def test_explicit_options_spare_the_directory_its_missing_files(tmp_path):
    root = tmp_path / "models"
    touch(root / "mlp" / "500_model.pth")  # only the MLP is there
    models = resolve_model_set(500, models_dir=root, esm_model="esm2_t33_650M_UR50D", dnabert_model=DEFAULT_DNABERT)
    assert (models.esm2, models.dnabert) == ("esm2_t33_650M_UR50D", DEFAULT_DNABERT)


def test_without_a_directory_esm_and_dnabert_are_hub_names_but_the_mlp_is_required(tmp_path):
    mlp = touch(tmp_path / "500_model.pth")
    models = resolve_model_set(500, mlp=mlp)
    assert (models.esm2, models.dnabert, models.mlp, models.root, models.tiny) == (DEFAULT_ESM2, DEFAULT_DNABERT, mlp, None, False)
    with pytest.raises(ModelError) as caught:
        resolve_model_set(500)
    assert str(caught.value) == (
        "no MLP for --model-type 500: put 500_model.pth in DIR/mlp/ (virnucpro models download --models-dir DIR) "
        "or pass --mlp PATH"
    )


def test_a_missing_mlp_in_the_default_layout_names_the_folder(tmp_path):
    root = real_layout(tmp_path / "models", mlps=(300,))
    with pytest.raises(ModelError) as caught:
        resolve_model_set(500, models_dir=root)
    assert str(caught.value) == (
        f"no MLP for --model-type 500: put 500_model.pth in {root / 'mlp'}/ "
        f"(virnucpro models download --models-dir {root}) or pass --mlp PATH"
    )


@pytest.mark.parametrize(
    "missing, message",
    [
        ("esm2/esm2_t36_3B_UR50D.pt",
         "ESM-2 weights {root}/esm2/esm2_t36_3B_UR50D.pt are missing: run `virnucpro models download --models-dir {root}` "
         "or pass --esm-model NAME|PATH"),
        ("esm2/esm2_t36_3B_UR50D-contact-regression.pt",
         "ESM-2 contact-regression weights {root}/esm2/esm2_t36_3B_UR50D-contact-regression.pt are missing (fair-esm "
         "loads them from beside esm2_t36_3B_UR50D.pt): run `virnucpro models download --models-dir {root}` or pass "
         "--esm-model NAME|PATH"),
        ("dnabert/DNABERT-S/config.json",
         "DNABERT-S folder {root}/dnabert/DNABERT-S has no config.json: run `virnucpro models download --models-dir {root}` "
         "or pass --dnabert-model NAME|PATH"),
    ],
)
def test_every_missing_file_is_one_line_naming_it(tmp_path, missing, message):
    root = real_layout(tmp_path / "models")
    (root / missing).unlink()
    with pytest.raises(ModelError) as caught:
        resolve_model_set(300, models_dir=root)
    assert str(caught.value) == message.format(root=root)


def write_manifest(root: Path, doc: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.json").write_text(json.dumps(doc))


def test_models_json_places_files_anywhere_and_marks_tiny_sets(tmp_path):
    root = tmp_path / "tiny"
    touch(root / "e" / "esm2_t2_tiny_UR50D.pt")
    touch(root / "e" / "esm2_t2_tiny_UR50D-contact-regression.pt")
    touch(root / "d" / "config.json", "{}")
    touch(root / "m" / "three.pth")
    write_manifest(root, {"kind": "tiny", "esm2": "e/esm2_t2_tiny_UR50D.pt", "dnabert": "d", "mlp": {"300": "m/three.pth"}})
    models = resolve_model_set(300, models_dir=root)
    assert models == ModelSet(str(root / "e" / "esm2_t2_tiny_UR50D.pt"), str(root / "d"), root / "m" / "three.pth",
                              tiny=True, root=root, model_type=300)
    with pytest.raises(ModelError) as caught:
        resolve_model_set(500, models_dir=root)
    assert str(caught.value) == (
        f"no MLP for --model-type 500 in {root / 'models.json'}: put 500_model.pth in {root / 'mlp'}/ "
        f"and list it there (virnucpro models init-tiny {root}) or pass --mlp PATH"
    )


def test_a_file_listed_in_models_json_but_absent(tmp_path):
    root = tmp_path / "models"
    write_manifest(root, {"kind": "real", "mlp": {"500": "mlp/500_model.pth"}})
    with pytest.raises(ModelError) as caught:
        resolve_model_set(500, models_dir=root)
    assert str(caught.value) == (
        f"MLP file {root / 'mlp' / '500_model.pth'} (listed in {root / 'models.json'}) is missing: put 500_model.pth "
        f"there (virnucpro models download --models-dir {root}) or pass --mlp PATH"
    )


def test_keys_left_out_of_models_json_mean_the_hub_default(tmp_path):
    """As after `models download --skip-esm --skip-dnabert`: only the MLPs are local."""
    root = tmp_path / "models"
    touch(root / "mlp" / "300_model.pth")
    write_manifest(root, {"kind": "real", "mlp": {"300": "mlp/300_model.pth"}})
    models = resolve_model_set(300, models_dir=root)
    assert (models.esm2, models.dnabert) == (DEFAULT_ESM2, DEFAULT_DNABERT)


def test_a_converted_mlp_is_preferred_in_the_default_layout(tmp_path):
    root = real_layout(tmp_path / "models")
    touch(root / "mlp" / "500_model.safetensors")
    assert resolve_model_set(500, models_dir=root).mlp.name == "500_model.pth"  # no JSON beside it: not usable
    touch(root / "mlp" / "500_model.json", "{}")
    assert resolve_model_set(500, models_dir=root).mlp.name == "500_model.safetensors"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "{manifest} is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)): fix or delete it"),
        ('["a"]', "{manifest} must hold a JSON object: fix or delete it"),
        ('{"kind": "huge"}', "{manifest}: \"kind\" must be one of real, tiny, not 'huge'"),
        ('{"mlp": ["300_model.pth"]}', "{manifest}: \"mlp\" must map \"300\"/\"500\" to files"),
    ],
)
def test_a_broken_models_json_is_reported(tmp_path, content, message):
    root = tmp_path / "models"
    root.mkdir()
    (root / "models.json").write_text(content)
    with pytest.raises(ModelError) as caught:
        resolve_model_set(300, models_dir=root)
    assert str(caught.value) == message.format(manifest=root / "models.json")


def test_a_missing_directory_and_missing_explicit_paths(tmp_path):
    with pytest.raises(ModelError) as caught:
        resolve_model_set(300, models_dir=tmp_path / "nowhere")
    where = tmp_path / "nowhere"
    assert str(caught.value) == (
        f"models directory {where} does not exist: create it with `virnucpro models download --models-dir {where}` "
        f"(or `virnucpro models init-tiny {where}` for a smoke test)"
    )
    with pytest.raises(ModelError) as caught:
        resolve_model_set(300, mlp=tmp_path / "nope.pth")
    assert str(caught.value) == f"MLP file {tmp_path / 'nope.pth'} (from --mlp) does not exist: fix the path"
    mlp = touch(tmp_path / "300_model.pth")
    with pytest.raises(ModelError) as caught:
        resolve_model_set(300, mlp=mlp, esm_model=str(tmp_path / "esm2_t36_3B_UR50D.pt"))
    assert str(caught.value) == (
        f"ESM-2 model {tmp_path / 'esm2_t36_3B_UR50D.pt'} (from --esm-model) does not exist: fix the path or pass a model name"
    )


@pytest.mark.parametrize("model_type", [0, 400, "five hundred"])
def test_only_the_two_published_model_types(model_type, tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve_model_set(model_type, mlp=touch(tmp_path / "m.pth"))
    assert str(caught.value) == f"--model-type must be 300 or 500, not {model_type!r}"
    assert resolve_model_set("300", mlp=tmp_path / "m.pth").model_type == 300


def test_inspect_reports_presence_and_verifies_checksums(tmp_path):
    root = real_layout(tmp_path / "models", mlps=(300,))
    digest = sha256_file(root / "mlp" / "300_model.pth")
    write_manifest(root, {"kind": "real", "esm2": "esm2/esm2_t36_3B_UR50D.pt", "dnabert": "dnabert/DNABERT-S",
                          "mlp": {"300": "mlp/300_model.pth", "500": "mlp/500_model.pth"},
                          "sha256": {"mlp/300_model.pth": digest}})
    _, statuses = inspect_models_dir(root, verify=True)
    table = {s.role: (s.present, s.sha256_ok) for s in statuses}
    assert table == {
        "esm2": (True, None),
        "esm2 contact regression": (True, None),
        "dnabert": (True, None),
        "mlp 300": (True, True),
        "mlp 500": (False, None),
    }
    (root / "mlp" / "300_model.pth").write_text("tampered")
    _, statuses = inspect_models_dir(root, verify=True)
    assert [s.sha256_ok for s in statuses if s.role == "mlp 300"] == [False]


def test_an_empty_models_directory_names_every_missing_piece_in_one_line(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    with pytest.raises(ModelError) as caught:
        resolve_model_set(500, models_dir=root)
    assert str(caught.value) == (
        f"3 model files are missing: ESM-2 weights {root}/esm2/esm2_t36_3B_UR50D.pt are missing; "
        f"DNABERT-S folder {root}/dnabert/DNABERT-S is missing; "
        f"no MLP for --model-type 500: put 500_model.pth in {root}/mlp/; "
        f"run `virnucpro models download --models-dir {root}` or pass --esm-model NAME|PATH, "
        "--dnabert-model NAME|PATH, --mlp PATH"
    )
