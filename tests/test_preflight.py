"""The preflight: every model, option and width is checked before `predict` or `embed` writes anything.

A model that cannot be found must stop the run within seconds with one line, not after
`prepare` and the whole nucleotide stage; the output directory (or the embeddings file's
folder) must not even be created.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core.backends import Backend, BackendOption, EmbedderOptions
from virnucpro_core.cli import cli
from virnucpro_core.errors import BackendError, ConfigError, ModelError
from virnucpro_core.preflight import check_backend
from virnucpro_core.registry import load_registry

DATA = Path(__file__).parent / "data"
_installed = {b.key for b in load_registry().list_backends()}
needs_first_party = pytest.mark.skipif(
    not {"esm2=v1", "esm2=v2", "dnabert=v1", "dnabert=v2"} <= _installed,
    reason="needs the first-party backends installed (pip install -r requirements-dev.txt)",
)
#: Nothing listens on the discard port: a probe of it is refused at once, as an offline machine's would be.
UNREACHABLE = "http://127.0.0.1:9/{name}.pt"


@pytest.fixture()
def lambda_fa(tmp_path) -> Path:
    path = tmp_path / "lambda.fa"
    path.write_text(gzip.open(DATA / "genomes" / "lambda_NC_001416.fa.gz", "rt").read())
    return path


@pytest.fixture()
def offline_esm(monkeypatch, tmp_path):
    """An empty fair-esm cache and a download server that cannot be reached."""
    import virnucpro_esm2_v1.loading as loading

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(loading, "MODEL_URL", UNREACHABLE)
    monkeypatch.delenv("VIRNUCPRO_MODELS", raising=False)


def _backend(**fields) -> Backend:
    return Backend(**{"family": "toy", "version": "v1", "modality": "nucleotide", "dim": 4,
                      "factory": lambda options: None, **fields})


def _one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[-1]


@needs_first_party
@pytest.mark.parametrize("esm", ["esm2=v1", "esm2=v2"])
def test_predict_with_a_missing_esm2_model_stops_before_prepare_and_writes_nothing(tmp_path, tiny_models, lambda_fa,
                                                                                    offline_esm, esm):
    out = tmp_path / "run"
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--models-dir", str(tiny_models),
                                      "--esm-model", "esm2_t6_8M_UR50D", "--backend", esm, "-q", "--device", "cpu"])
    seconds = time.monotonic() - started
    line = _one_line_error(result)
    assert f"ESM-2 model esm2_t6_8M_UR50D is not in {tmp_path / 'torch-home' / 'hub' / 'checkpoints'} and " in line
    assert "127.0.0.1:9/esm2_t6_8M_UR50D.pt cannot be reached" in line
    assert not out.exists()
    assert seconds < 30  # no stage ran: prepare and the nucleotide stage would come first


@needs_first_party
def test_embed_with_a_missing_esm2_model_writes_nothing(tmp_path, offline_esm):
    faa = tmp_path / "p.faa"
    faa.write_text(">p1\nMKTLV\n")
    out = tmp_path / "new" / "p.h5"
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v2", "--model", "esm2_t6_8M_UR50D",
                                      "-o", str(out), "-q", "--device", "cpu"])
    assert "ESM-2 model esm2_t6_8M_UR50D is not in" in _one_line_error(result)
    assert not out.parent.exists()


@needs_first_party
def test_a_damaged_esm2_checkpoint_is_refused_before_any_stage(tmp_path, tiny_models, lambda_fa):
    bad = tmp_path / "esm2_t6_8M_UR50D.pt"
    bad.write_text("<html>a proxy's error page</html>\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--models-dir", str(tiny_models),
                                      "--esm-model", str(bad), "-q", "--device", "cpu"])
    assert f"{bad}: not a torch checkpoint" in _one_line_error(result)
    assert not out.exists()


@needs_first_party
@pytest.mark.parametrize("dnabert", ["dnabert=v1", "dnabert=v2"])
def test_predict_with_dnabert_by_hub_id_offline_stops_before_prepare(tmp_path, tiny_models, lambda_fa, monkeypatch, dnabert):
    from virnucpro_core import modelset

    monkeypatch.setattr(modelset, "DNABERT_S_REVISION", "0123abc")  # the pin predict loads by default
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    tiny = json.loads((tiny_models / "models.json").read_text())
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--esm-model", str(tiny_models / tiny["esm2"]),
                                      "--mlp", str(tiny_models / tiny["mlp"]["500"]), "--backend", dnabert, "-q",
                                      "--device", "cpu"])
    line = _one_line_error(result)
    assert "DNABERT-S model 'zhihan1996/DNABERT-S' at revision 0123abc is not in the Hugging Face cache (" in line
    assert ") and downloads are off (HF_HUB_OFFLINE is set)" in line
    assert not out.exists()


@needs_first_party
def test_a_dnabert_folder_without_weights_is_refused_by_dnabert_v2_before_any_stage(tmp_path, tiny_models, lambda_fa):
    import shutil

    tiny = json.loads((tiny_models / "models.json").read_text())
    folder = tmp_path / "dnabert"
    shutil.copytree(tiny_models / tiny["dnabert"], folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    for weights in folder.glob("*.bin"):
        weights.unlink()
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--models-dir", str(tiny_models),
                                      "--dnabert-model", str(folder), "-q", "--device", "cpu"])
    assert f"{folder}: no weights" in _one_line_error(result)
    assert not out.exists()


@needs_first_party
def test_widths_of_local_models_are_read_before_any_stage(tmp_path, tiny_models, lambda_fa):
    """The tiny set's DNABERT-S (32 wide, from its config.json) and ESM-2 (32, from its checkpoint's
    config) against an MLP for 16 features: refused before anything is written, both widths named."""
    from virnucpro_core.testing import write_original_mlp

    mlp = write_original_mlp(tmp_path / "narrow.pth", input_dim=16, hidden_dim=4, seed=1)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--models-dir", str(tiny_models),
                                      "--mlp", str(mlp), "-q", "--device", "cpu"])
    line = _one_line_error(result)
    assert "the MLP expects 16 features but the embeddings give 32 nucleotide (dnabert=" in line
    assert "+ 32 protein (esm2=" in line and "= 64" in line
    assert not out.exists()


def test_a_crashing_plugin_check_is_one_line_naming_the_backend():
    def broken(options):
        raise KeyError("cfg")

    with pytest.raises(BackendError, match=r"^backend toy=v1: its preflight check failed \(KeyError: 'cfg'\); this is a bug"):
        check_backend(_backend(preflight=broken), EmbedderOptions())
    with pytest.raises(BackendError, match="returned width 0, not a positive int"):
        check_backend(_backend(preflight=lambda options: 0), EmbedderOptions())


def test_the_plugin_check_gets_the_options_and_its_errors_pass_unchanged():
    seen = []

    def check(options):
        seen.append(options)
        if options.model == "missing":
            raise ModelError("toy model missing: put it there")
        return 12

    backend = _backend(preflight=check)
    assert check_backend(backend, EmbedderOptions(model="m")) == 12
    assert seen[0].model == "m"
    with pytest.raises(ModelError, match="^toy model missing: put it there$"):
        check_backend(backend, EmbedderOptions(model="missing"))
    assert check_backend(_backend(), EmbedderOptions()) is None  # no check declared: nothing known


def test_declared_choices_are_checked_by_the_core():
    backend = _backend(options=(BackendOption("mode", "how", choices=("fast", "exact")),))
    check_backend(backend, EmbedderOptions(extra={"mode": "exact"}))
    with pytest.raises(ConfigError, match=r"^--backend-option toy:mode=quick: toy=v1 takes mode=fast\|exact$"):
        check_backend(backend, EmbedderOptions(extra={"mode": "quick"}))


def test_an_option_declared_twice_or_misspelt_is_refused_at_registration():
    with pytest.raises(ValueError, match="declared twice"):
        _backend(options=(BackendOption("mode"), BackendOption("mode")))
    with pytest.raises(ValueError, match="lower-case"):
        BackendOption("Mode")
