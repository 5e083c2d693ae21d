"""``--backend-option [FAMILY:]KEY=VALUE``: routed by the backends' declared keys, checked before any stage."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from virnucpro_core.backend_options import check_routing, from_config, options_for, parse_backend_option_values
from virnucpro_core.backends import Backend, BackendOption
from virnucpro_core.cli import cli
from virnucpro_core.errors import ConfigError
from virnucpro_core.registry import load_registry
from virnucpro_core.runtime import RuntimeConfig

DATA = Path(__file__).parent / "data"
_installed = {b.key for b in load_registry().list_backends()}
needs_v2 = pytest.mark.skipif(not {"esm2=v2", "dnabert=v2"} <= _installed,
                              reason="needs virnucpro-esm2-v2 and virnucpro-dnabert-v2 (pip install -r requirements-dev.txt)")


def _backend(family: str, modality: str, *options: BackendOption) -> Backend:
    return Backend(family=family, version="v2", modality=modality, dim=4, factory=lambda o: None, options=options)


PROT = _backend("esm2", "protein", BackendOption("attention", choices=("auto", "flash-attn", "sdpa-bucketed")))
NUC = _backend("dnabert", "nucleotide", BackendOption("attention", choices=("auto", "flash", "sdpa")), BackendOption("window"))
PLAIN = _backend("plain", "nucleotide")


def test_values_parse_with_or_without_a_family():
    assert parse_backend_option_values(["esm2:attention=sdpa-bucketed", "window = 12", "k=3"]) == (
        ("esm2:attention", "sdpa-bucketed"), ("window", "12"), ("k", "3"))
    for bad in ("attention", "=x", "esm2:=x", "ESM2:attention=x", "a:b:c=x", "esm2 attention=x"):
        with pytest.raises(ConfigError, match=r"expected \[FAMILY:\]KEY=VALUE"):
            parse_backend_option_values([bad])
    with pytest.raises(ConfigError, match="gives esm2:attention=auto and esm2:attention=flash-attn; give one"):
        parse_backend_option_values(["esm2:attention=auto", "esm2:attention=flash-attn"])


def test_each_backend_gets_only_its_declared_keys_and_its_family_wins():
    pairs = (("attention", "auto"), ("esm2:attention", "sdpa-bucketed"), ("window", "9"))
    assert options_for(PROT, pairs) == {"attention": "sdpa-bucketed"}
    assert options_for(NUC, pairs) == {"attention": "auto", "window": "9"}
    assert options_for(PLAIN, pairs) == {}
    runtime = RuntimeConfig(device="cpu", backend_options=pairs)
    assert runtime.embedder_options(None, backend=PROT).extra == {"attention": "sdpa-bucketed"}
    assert runtime.embedder_options(None, backend=NUC, modality="nucleotide").extra == {"attention": "auto", "window": "9"}


def test_routing_errors_name_the_backends_and_what_they_take():
    check_routing((("window", "9"), ("esm2:attention", "flash-attn"), ("dnabert:attention", "sdpa")), [NUC, PROT])
    cases = [
        ((("colour", "blue"),), "--backend-option colour=blue: no backend of this run takes colour (dnabert=v2 takes "
                                "attention=auto|flash|sdpa, window=VALUE; esm2=v2 takes attention=auto|flash-attn|sdpa-bucketed)"),
        ((("kmer:k", "3"),), "--backend-option kmer:k=3: no kmer backend in this run (it runs dnabert=v2, esm2=v2)"),
        ((("esm2:window", "3"),), "--backend-option esm2:window=3: esm2=v2 has no option window; esm2=v2 takes "
                                  "attention=auto|flash-attn|sdpa-bucketed"),
        ((("attention", "sdpa-bucketed"),), "--backend-option attention=sdpa-bucketed goes to every backend that takes "
                                            "attention (dnabert=v2, esm2=v2), but dnabert=v2 takes attention=auto|flash|sdpa; "
                                            "to give it to esm2=v2 only, write --backend-option esm2:attention=sdpa-bucketed"),
    ]
    for pairs, message in cases:
        with pytest.raises(ConfigError) as info:
            check_routing(pairs, [NUC, PROT])
        assert str(info.value) == message
    with pytest.raises(ConfigError, match="^--backend-option k=3: no backend of this run takes k \\(plain=v2 takes no backend options\\)$"):
        check_routing((("k", "3"),), [PLAIN])
    # the family's own value replaces the shared one there, so the shared one need only suit the others
    check_routing((("attention", "sdpa"), ("esm2:attention", "sdpa-bucketed")), [NUC, PROT])


def test_a_config_file_takes_options_in_three_spellings_and_flags_win(tmp_path):
    spellings = {
        "list": 'backend_options = ["esm2:attention=sdpa-bucketed", "window=9"]',
        "table": 'backend_options = {"esm2:attention" = "sdpa-bucketed", window = 9}',
        "family tables": '[runtime.backend_options]\nwindow = 9\n[runtime.backend_options.esm2]\nattention = "sdpa-bucketed"',
    }
    for name, text in spellings.items():
        path = tmp_path / f"{name}.toml"
        path.write_text("[runtime]\ndevice = \"cpu\"\n" + text + "\n")
        runtime = RuntimeConfig.from_sources({}, path)
        assert dict(runtime.backend_options) == {"esm2:attention": "sdpa-bucketed", "window": "9"}, name
    runtime = RuntimeConfig.from_sources({"backend_options": (("esm2:attention", "auto"),)}, path)
    assert dict(runtime.backend_options) == {"esm2:attention": "auto", "window": "9"}
    with pytest.raises(ConfigError, match="backend_options must be a list"):
        from_config("esm2:attention=auto", "x.toml")


@pytest.fixture()
def lambda_fa(tmp_path) -> Path:
    path = tmp_path / "lambda.fa"
    path.write_text(gzip.open(DATA / "genomes" / "lambda_NC_001416.fa.gz", "rt").read())
    return path


@needs_v2
def test_predict_routes_options_by_family_and_records_them(tmp_path, tiny_models, lambda_fa):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--models-dir", str(tiny_models), "-q",
                                      "--device", "cpu", "--backend", "esm2=v2", "--backend", "dnabert=v2",
                                      "--backend-option", "esm2:attention=sdpa-bucketed",
                                      "--backend-option", "dnabert:attention=sdpa"])
    assert result.exit_code == 0, result.output
    identity = json.loads((out / "run.json").read_text())["identity"]
    assert identity["parameters"]["backend_options"] == {"esm2:attention": "sdpa-bucketed", "dnabert:attention": "sdpa"}


@needs_v2
def test_predict_refuses_an_option_one_of_its_backends_cannot_take_before_writing(tmp_path, tiny_models, lambda_fa):
    """The example the help gave: `attention=sdpa-bucketed` reached DNABERT-S too, which failed after prepare."""
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--models-dir", str(tiny_models), "-q",
                                      "--device", "cpu", "--backend", "esm2=v2", "--backend", "dnabert=v2",
                                      "--backend-option", "attention=sdpa-bucketed"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: --backend-option attention=sdpa-bucketed goes to every backend that takes attention (dnabert=v2, esm2=v2), "
        "but dnabert=v2 takes attention=auto|flash|sdpa; to give it to esm2=v2 only, write "
        "--backend-option esm2:attention=sdpa-bucketed")
    assert not out.exists()


@needs_v2
def test_a_config_file_option_is_checked_in_the_preflight(tmp_path, tiny_models, lambda_fa):
    config = tmp_path / "run.toml"
    config.write_text('[runtime]\ndevice = "cpu"\n[runtime.backend_options.esm2]\nattention = "torch-varlen"\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["predict", str(lambda_fa), "-o", str(out), "--models-dir", str(tiny_models), "-q",
                                      "--backend", "esm2=v2", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].startswith("Error: esm2=v2: attention=torch-varlen cannot run on cpu in torch.float32: "
                                                     "needs CUDA")
    assert not out.exists()
