"""Loading: names resolve to fair-esm's cache, files are unpickled safely, errors are one line."""

from __future__ import annotations

import argparse
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from virnucpro_core.checksum import sha256_file
from virnucpro_core.errors import ModelError
from virnucpro_core.testing.esm2 import write_tiny_esm2
from virnucpro_core.testing.pickles import PAYLOAD_GLOBALS, hostile_payloads
from virnucpro_esm2_v1.loading import DEFAULT_MODEL, load_esm2, resolve_checkpoint


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty fair-esm cache; downloads go through a proxy that refuses connections,
    so any attempt to fetch a model fails fast, as offline."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_a_name_in_the_cache_loads_from_it(torch_home):
    cache = torch_home / "hub" / "checkpoints"
    write_tiny_esm2(cache)
    model, alphabet = load_esm2("esm2_t2_tiny_UR50D")
    assert (model.num_layers, model.embed_dim, model.training) == (2, 32, False)
    files = resolve_checkpoint("esm2_t2_tiny_UR50D")
    assert files.model == cache / "esm2_t2_tiny_UR50D.pt"
    assert files.regression == cache / "esm2_t2_tiny_UR50D-contact-regression.pt"


def test_a_missing_model_offline_is_one_line_saying_where_to_put_it(torch_home):
    with pytest.raises(ModelError) as info:
        load_esm2(DEFAULT_MODEL)
    message = str(info.value)
    dest = torch_home / "hub" / "checkpoints" / "esm2_t36_3B_UR50D.pt"
    assert "\n" not in message
    assert message.startswith(
        f"ESM-2 model esm2_t36_3B_UR50D is not in {dest.parent} and downloading "
        "https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t36_3B_UR50D.pt failed: "
    )
    assert message.endswith(f"and put it at {dest}, or pass a local checkpoint path as the model (--esm-model on predict, --model on embed)")
    assert not dest.exists() and not any(dest.parent.iterdir())  # no partial file left behind


def test_a_download_that_is_not_the_pinned_file_is_refused_and_never_cached(torch_home, tmp_path, monkeypatch):
    from virnucpro_core import modelset

    write_tiny_esm2(tmp_path / "served")
    served = {"esm2_t36_3B_UR50D.pt": tmp_path / "served" / "esm2_t2_tiny_UR50D.pt",
              "esm2_t36_3B_UR50D-contact-regression.pt": tmp_path / "served" / "esm2_t2_tiny_UR50D-contact-regression.pt"}

    def download(url, dst, hash_prefix=None, progress=True):
        shutil.copyfile(served[url.rsplit("/", 1)[1]], dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    cache = torch_home / "hub" / "checkpoints"
    # the real pins: a tiny model served under the 3B name is refused, in one line
    with pytest.raises(ModelError) as info:
        load_esm2(DEFAULT_MODEL)
    size = served["esm2_t36_3B_UR50D.pt"].stat().st_size
    assert str(info.value) == (
        f"https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t36_3B_UR50D.pt gave a file that is not the pinned file "
        f"({size:,} bytes, expected 5,678,116,398; pin from {modelset.ESM2_SOURCE}); it was not kept as "
        f"{cache / 'esm2_t36_3B_UR50D.pt'}: check the network proxy and retry, or put the published file there"
    )
    assert not any(cache.iterdir())
    # pinned to what is served: both files are fetched, kept and loaded
    monkeypatch.setattr(modelset, "ESM2_PINS", {name: modelset.PinnedFile(path.stat().st_size, sha256_file(path), "test")
                                                for name, path in served.items()})
    model, _ = load_esm2(DEFAULT_MODEL)
    assert model.num_layers == 2
    assert sorted(p.name for p in cache.iterdir()) == sorted(served)


def test_an_unknown_name_lists_the_known_ones(torch_home):
    with pytest.raises(ModelError, match=r"^unknown ESM-2 model 'esm2_t99_huge' \(not in .*\); use one of esm2_t6_8M_UR50D, "):
        load_esm2("esm2_t99_huge")


def test_a_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(ModelError, match=f"^ESM-2 checkpoint {missing} does not exist; "):
        load_esm2(str(missing))


def test_a_path_without_its_regression_file_loads(tmp_path, recwarn):
    path = write_tiny_esm2(tmp_path / "a")
    (tmp_path / "a" / "esm2_t2_tiny_UR50D-contact-regression.pt").unlink()
    model, _ = load_esm2(str(path))
    assert model.embed_dim == 32
    assert not [w for w in recwarn if "Regression weights" in str(w.message)]


def test_a_renamed_checkpoint_still_loads_as_esm2(tmp_path):
    path = write_tiny_esm2(tmp_path)
    renamed = tmp_path / "my_protein_model.pt"
    shutil.copy(path, renamed)
    model, _ = load_esm2(str(renamed))
    assert model.num_layers == 2


class RunsCode:
    """Unpickling this calls ``exec``: what a hostile .pt file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_a_checkpoint_that_would_run_code_is_refused_and_not_run(tmp_path):
    path = write_tiny_esm2(tmp_path)
    marker = tmp_path / "ran.txt"
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(path, weights_only=True)
    data["payload"] = RunsCode(marker)
    torch.save(data, path)

    with pytest.raises(ModelError) as info:
        load_esm2(str(path))
    message = str(info.value)
    # torch names the global ("exec" here; how it spells it is torch's business)
    assert message.startswith(
        f"{path}: refused to load: a fair-esm checkpoint holds only tensors and an argparse.Namespace config, but it needs "
    )
    assert "exec" in message and "\n" not in message
    assert message.endswith(", which could run code; use the official file from dl.fbaipublicfiles.com/fair-esm")
    assert not marker.exists()

    torch.load(path, weights_only=False)  # the payload is live: an unsafe load does run it
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("name", sorted(hostile_payloads(Path("m"))))
def test_payloads_torch_does_not_block_by_module_are_refused_and_never_run(tmp_path, name):
    """exec/eval/getattr chains are not in torch's module blocklist (os, posix, sys): only the allow-list stops them."""
    marker = tmp_path / "ran.txt"
    payload = hostile_payloads(marker)[name]
    hidden = write_tiny_esm2(tmp_path / "hidden")
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(hidden, weights_only=True)
    data["cfg"]["model"].payload = payload  # inside the Namespace the loader does allow
    torch.save(data, hidden)
    whole = tmp_path / "whole.pt"
    torch.save(payload, whole)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"cfg": payload, "model": {}}, protocol=2))
    first = PAYLOAD_GLOBALS[name][0].removeprefix("builtins.")  # torch spells builtins without the module
    for path in (hidden, whole, legacy):
        with pytest.raises(ModelError) as info:
            load_esm2(str(path))
        message = str(info.value)
        assert message.startswith(f"{path}: refused to load: a fair-esm checkpoint holds only tensors and an argparse.Namespace "
                                  f"config, but it needs {first}"), message
        assert "\n" not in message
        assert not marker.exists(), f"the {name} payload ran while loading {path.name}"
    for load in (lambda: torch.load(hidden, weights_only=False), lambda: torch.load(whole, weights_only=False),
                 lambda: pickle.loads(legacy.read_bytes())):  # each file really is an attack: ordinary unpickling runs it
        load()
        assert marker.read_text() == "pwned"
        marker.unlink()


def test_files_that_are_not_esm2_checkpoints_are_named(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(ModelError, match=f"^{text}: cannot read it as a torch checkpoint \\("):
        load_esm2(str(text))

    plain = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2, 2)}, plain)
    with pytest.raises(ModelError, match=f"^{plain}: not a fair-esm ESM-2 checkpoint \\(expected a dict with 'cfg' and 'model' entries\\)"):
        load_esm2(str(plain))

    esm1 = tmp_path / "esm1b.pt"
    torch.save({"args": {"arch": "roberta_large"}, "model": {}}, esm1)
    with pytest.raises(ModelError, match=f"^{esm1}: this is an ESM-1 style checkpoint"):
        load_esm2(str(esm1))


def test_a_truncated_checkpoint_is_named(tmp_path):
    path = write_tiny_esm2(tmp_path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelError, match=f"^{path}: cannot read it as a torch checkpoint"):
        load_esm2(str(path))


def test_weights_that_do_not_fit_the_config_are_named(tmp_path):
    path = write_tiny_esm2(tmp_path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(path, weights_only=True)
    data["cfg"]["model"].encoder_layers = 3  # says 3 layers, holds 2
    torch.save(data, path)
    with pytest.raises(ModelError) as info:
        load_esm2(str(path))
    assert str(info.value).startswith(f"{path}: its weights do not fit the ESM-2 its config describes (")
    assert "\n" not in str(info.value)


def test_preflight_reads_the_width_from_the_config_without_loading_the_weights(tmp_path, torch_home, monkeypatch):
    """A path or a cached name: the checkpoint's config gives the width; its tensors stay on disk
    (a memory map), so the check takes the same time for a 3B model as for this tiny one."""
    from virnucpro_esm2_v1.loading import preflight_checkpoint

    path = write_tiny_esm2(tmp_path)
    cached = write_tiny_esm2(torch_home / "hub" / "checkpoints")
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("mmap")) or real_load(*a, **k))
    assert preflight_checkpoint(str(path)) == 32
    assert preflight_checkpoint(cached.stem) == 32  # the name, found in fair-esm's cache
    assert loads == [True, True]


def test_preflight_refuses_what_loading_would_refuse_hours_later(tmp_path, torch_home, monkeypatch):
    import virnucpro_esm2_v1.loading as loading
    from virnucpro_esm2_v1.loading import preflight_checkpoint

    with pytest.raises(ModelError, match=f"^ESM-2 checkpoint {tmp_path / 'no.pt'} does not exist"):
        preflight_checkpoint(str(tmp_path / "no.pt"))
    with pytest.raises(ModelError, match=r"^unknown ESM-2 model 'esm2_t99_huge'"):
        preflight_checkpoint("esm2_t99_huge")
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(ModelError, match=f"^{text}: not a torch checkpoint"):
        preflight_checkpoint(str(text))
    plain = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2, 2)}, plain)
    with pytest.raises(ModelError, match=f"^{plain}: not a fair-esm ESM-2 checkpoint"):
        preflight_checkpoint(str(plain))
    marker = tmp_path / "ran.txt"
    hostile = tmp_path / "hostile.pt"
    torch.save(RunsCode(marker), hostile)
    with pytest.raises(ModelError, match=f"^{hostile}: refused to load"):
        preflight_checkpoint(str(hostile))
    assert not marker.exists()
    # a published name, not cached: one short probe of the download server
    monkeypatch.setattr(loading, "MODEL_URL", "http://127.0.0.1:9/{name}.pt")
    with pytest.raises(ModelError, match=r"^ESM-2 model esm2_t6_8M_UR50D is not in .* and http://127.0.0.1:9/esm2_t6_8M_UR50D.pt "
                                         r"cannot be reached \("):
        preflight_checkpoint("esm2_t6_8M_UR50D")
    monkeypatch.setattr("virnucpro_core.hub.url_unreachable_reason", lambda url, timeout=None: None)
    assert preflight_checkpoint("esm2_t6_8M_UR50D") == 320  # downloadable: the published width
    assert preflight_checkpoint(None) == 2560  # the default, esm2_t36_3B_UR50D


def test_preflight_leaves_a_legacy_checkpoint_to_the_stage(tmp_path):
    """A pre-zip torch file cannot be memory-mapped: width unknown, checked when loaded."""
    from virnucpro_esm2_v1.loading import preflight_checkpoint

    path = write_tiny_esm2(tmp_path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(path, weights_only=True)
    legacy = tmp_path / "legacy.pt"
    torch.save(data, legacy, _use_new_zipfile_serialization=False)
    assert preflight_checkpoint(str(legacy)) is None
    model, _ = load_esm2(str(legacy))
    assert model.embed_dim == 32
