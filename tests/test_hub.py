"""`virnucpro_core.hub`: hub ids to local snapshots, cache first, offline-aware, failing fast."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from virnucpro_core import hub
from virnucpro_core.errors import ModelError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: nothing listens on the discard port of the loopback: connections are refused at once
REFUSED = "http://127.0.0.1:9"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache of our own, online settings, the hub unreachable."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", REFUSED)
    no_proxy(monkeypatch)
    return cache


def no_proxy(monkeypatch) -> None:
    """Loopback addresses are reached directly, not through a proxy the machine may set."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def cache_snapshot(cache: Path, repo_id: str, files: dict[str, str], commit: str = COMMIT) -> Path:
    """The layout huggingface_hub writes: refs/main names the commit of snapshots/<commit>/."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return snapshot


def test_a_cached_snapshot_is_found_without_the_network(hf_cache, monkeypatch):
    snapshot = cache_snapshot(hf_cache, "org/model", {"config.json": "{}", "model.safetensors": "w"})
    monkeypatch.setattr(hub, "hub_unreachable_reason", lambda timeout=None: pytest.fail("the network was probed"))
    assert hub.cached_snapshot("org/model", required=("config.json", ("*.safetensors", "*.bin"))) == snapshot
    assert hub.cached_snapshot("org/model", COMMIT) == snapshot
    assert hub.resolve_snapshot("org/model", what="model", hint="fetch it") == snapshot


def test_a_partial_snapshot_does_not_count(hf_cache):
    cache_snapshot(hf_cache, "org/model", {"config.json": "{}"})  # an interrupted download
    assert hub.cached_snapshot("org/model", required=("config.json", ("*.safetensors", "*.bin"))) is None
    assert hub.cached_snapshot("org/other") is None


def test_offline_without_a_cached_snapshot_is_one_line(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as caught:
        hub.resolve_snapshot("org/model", "v2", what="DNABERT-S model", hint="run the download")
    assert str(caught.value) == (
        f"DNABERT-S model 'org/model' at revision v2 is not in the Hugging Face cache ({hf_cache}) and downloads are "
        "off (HF_HUB_OFFLINE is set); run the download"
    )


def test_an_unreachable_hub_is_one_line_at_once(hf_cache):
    assert hub.hub_unreachable_reason(timeout=2) is not None
    with pytest.raises(ModelError) as caught:
        hub.require_hub("org/model", None, what="DNABERT-S model", hint="run the download")
    message = str(caught.value)
    assert message.startswith(f"DNABERT-S model 'org/model' is not in the Hugging Face cache ({hf_cache}) and {REFUSED} "
                              "cannot be reached (")
    assert message.endswith("); run the download") and "\n" not in message


def test_any_http_answer_means_the_hub_is_reachable(monkeypatch):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    no_proxy(monkeypatch)
    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub.hub_unreachable_reason(timeout=5) is None
    finally:
        server.shutdown()
        server.server_close()


def test_the_probe_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(hub.TIMEOUT_ENV, "1.5")
    assert hub._timeout() == 1.5
    for bad in ("soon", "0", "-2"):
        monkeypatch.setenv(hub.TIMEOUT_ENV, bad)
        assert hub._timeout() == hub.DEFAULT_TIMEOUT
