"""The plugin registry, specified with throwaway plugins and a fresh registry per test."""

from __future__ import annotations

import inspect
import logging
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import click
import pytest

from virnucpro_core import hookimpl, hookspecs
from virnucpro_core.backends import Backend, EmbedderOptions
from virnucpro_core.errors import BackendError, ConfigError
from virnucpro_core.registry import PluginInfo, PluginLoadError, load_registry
from virnucpro_core.selection import parse_backend_options, resolve_backends


def _factory(options: EmbedderOptions):  # never called in these tests
    raise AssertionError("factories must stay lazy")


def backend(family="esm2", version="v1", modality="protein", dim=2560, **kw) -> Backend:
    return Backend(family=family, version=version, modality=modality, dim=dim, factory=_factory, **kw)


class Plugin:
    """A throwaway plugin registering the given backends."""

    def __init__(self, *backends: Backend) -> None:
        self._backends = backends

    @hookimpl
    def register_backends(self, register):
        for b in self._backends:
            register(b)


def info(name: str, package: str = "", version: str = "1.0") -> PluginInfo:
    return PluginInfo(name, package or f"pkg-{name}", version)


def registry_with(*plugins, strict=False):
    return load_registry(entry_points=[], plugins=list(plugins), strict=strict)


def write_module(tmp_path: Path, monkeypatch, name: str, source: str) -> EntryPoint:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return EntryPoint(name=name, value=name, group=hookspecs.ENTRY_POINT_GROUP)


GOOD_MODULE = """
from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend

def _make(options):
    raise AssertionError("lazy")

@hookimpl
def register_backends(register):
    register(Backend(family="kmer", version="v1", modality="nucleotide", dim=256, factory=_make))
"""


def test_entry_point_discovery_registers_backends(tmp_path, monkeypatch):
    ep = write_module(tmp_path, monkeypatch, "vnp_good_plugin", GOOD_MODULE)
    registry = load_registry(entry_points=[ep], strict=True)
    found = registry.get_backend("kmer", "v1")
    assert (found.family, found.version, found.modality, found.dim) == ("kmer", "v1", "nucleotide", 256)
    assert [b.key for b in registry.list_backends()] == ["kmer=v1"]
    assert registry.problems == []


def test_builtin_formats_are_ordinary_plugins():
    registry = registry_with()
    assert [f.name for f in registry.list_formats()] == ["hdf5", "pt"]
    assert registry.get_format("hdf5").package == "virnucpro"
    assert registry.format_for_path("x/protein.H5").name == "hdf5"
    assert registry.format_for_path("output_1_ESM.pt").name == "pt"
    with pytest.raises(Exception, match=r"cannot tell the embedding format from the file name; give --format, one of: hdf5 \(\.h5 \.hdf5\), pt \(\.pt\)"):
        registry.format_for_path("x.npz")


def test_registry_records_the_package_of_each_backend():
    registry = registry_with((Plugin(backend()), info("esm2_v1", "virnucpro-esm2-v1", "0.1.0")))
    found = registry.get_backend("esm2", "v1")
    assert (found.package, found.package_version) == ("virnucpro-esm2-v1", "0.1.0")
    assert found.describe() == "esm2=v1 (virnucpro-esm2-v1 0.1.0)"


def test_duplicate_key_is_refused_naming_both_packages(caplog):
    registry = registry_with(
        (Plugin(backend()), info("a", "virnucpro-esm2-v1")),
        (Plugin(backend()), info("b", "someone-elses-esm2")),
    )
    expected = "backend esm2=v1 is registered by both someone-elses-esm2 and virnucpro-esm2-v1; uninstall one of them"
    with caplog.at_level(logging.WARNING):
        assert registry.list_backends() == []
    assert expected in caplog.text
    with pytest.raises(BackendError) as err:
        registry.get_backend("esm2", "v1")
    assert str(err.value) == expected


def test_duplicate_key_is_an_error_in_strict_mode():
    registry = registry_with((Plugin(backend()), info("a", "p1")), (Plugin(backend()), info("b", "p2")), strict=True)
    with pytest.raises(PluginLoadError, match="registered by both p1 and p2"):
        registry.list_backends()


BROKEN_MODULE = """
raise ImportError("libfoo.so not found")
"""


def test_broken_plugin_is_skipped_with_a_warning_and_others_still_load(tmp_path, monkeypatch, caplog):
    broken = write_module(tmp_path, monkeypatch, "vnp_broken_plugin", BROKEN_MODULE)
    good = write_module(tmp_path, monkeypatch, "vnp_good_plugin2", GOOD_MODULE)
    with caplog.at_level(logging.WARNING):
        registry = load_registry(entry_points=[broken, good], strict=False)
    assert [b.key for b in registry.list_backends()] == ["kmer=v1"]
    assert len(registry.problems) == 1
    message = str(registry.problems[0])
    assert message == "plugin vnp_broken_plugin: failed to import vnp_broken_plugin: ImportError: libfoo.so not found"
    assert "libfoo.so not found" in caplog.text


def test_strict_mode_stops_at_a_broken_plugin(tmp_path, monkeypatch):
    broken = write_module(tmp_path, monkeypatch, "vnp_broken_plugin3", BROKEN_MODULE)
    with pytest.raises(PluginLoadError, match=r"failed to import .*strict mode: VIRNUCPRO_STRICT_PLUGINS is set"):
        load_registry(entry_points=[broken], strict=True)


def test_strict_mode_comes_from_the_environment(tmp_path, monkeypatch):
    broken = write_module(tmp_path, monkeypatch, "vnp_broken_plugin4", BROKEN_MODULE)
    monkeypatch.setenv("VIRNUCPRO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError):
        load_registry(entry_points=[broken])
    monkeypatch.setenv("VIRNUCPRO_STRICT_PLUGINS", "0")
    assert load_registry(entry_points=[broken]).problems


def test_misspelt_hook_name_is_reported_not_ignored():
    class Misspelt:
        @hookimpl
        def register_backend(self, register):  # missing "s"
            register(backend())

    registry = registry_with((Misspelt(), info("typo", "virnucpro-typo")))
    assert len(registry.problems) == 1
    text = str(registry.problems[0])
    assert text.startswith("plugin typo (virnucpro-typo): unknown hook")
    assert "register_backend" in text
    assert "typo" not in registry.plugins
    with pytest.raises(PluginLoadError, match="unknown hook"):
        registry_with((Misspelt(), info("typo")), strict=True)


def test_a_plugin_raising_inside_its_hook_is_skipped():
    class Raising:
        @hookimpl
        def register_backends(self, register):
            register(backend("dnabert", "v9", "nucleotide", 768))
            raise RuntimeError("boom")

    registry = registry_with((Raising(), info("raising")), (Plugin(backend()), info("ok")))
    assert [b.key for b in registry.list_backends()] == ["esm2=v1"]  # nothing half-registered
    assert str(registry.problems[0]) == "plugin raising (pkg-raising): register_backends raised RuntimeError: boom"


def test_registering_something_that_is_not_a_backend_is_reported():
    class Wrong:
        @hookimpl
        def register_backends(self, register):
            register({"family": "esm2"})

    registry = registry_with((Wrong(), info("wrong")))
    assert registry.list_backends() == []
    assert "register_backends got dict, expected virnucpro_core.backends.Backend" in str(registry.problems[0])


def test_default_is_the_newest_available_version():
    v2 = backend(version="v2", check_available=lambda: "needs CUDA")
    v10 = backend(version="v10", check_available=lambda: "needs flash-attn")
    registry = registry_with((Plugin(backend(), v2, v10), info("esm")))
    assert registry.get_backend("esm2").version == "v1"
    registry = registry_with((Plugin(backend(), backend(version="v2"), backend(version="v10")), info("esm")))
    assert registry.get_backend("esm2").version == "v10"


def test_a_crashing_availability_check_makes_the_backend_unavailable():
    def check():
        raise OSError("nvidia-smi missing")

    b = backend(check_available=check)
    assert b.unavailable_reason() == "availability check failed: nvidia-smi missing"


def test_unknown_family_and_version_messages_list_what_is_installed():
    registry = registry_with((Plugin(backend(package="x")), info("esm2_v1", "virnucpro-esm2-v1", "0.1.0")))
    with pytest.raises(BackendError) as err:
        registry.get_backend("dnabert", "v1")
    assert str(err.value) == (
        "unknown backend family 'dnabert'; installed: esm2=v1 (virnucpro-esm2-v1 0.1.0); "
        "install it with: pip install virnucpro-dnabert-v1"
    )
    with pytest.raises(BackendError) as err:
        registry.get_backend("esm2", "v2")
    assert str(err.value) == (
        "backend esm2=v2 is not installed; installed esm2 versions: v1"
    )
    with pytest.raises(BackendError, match="unknown backend family 'foo'; installed: esm2=v1"):
        registry.get_backend("foo", "v1")
    empty = registry_with()
    with pytest.raises(BackendError, match=r"installed: no backends are installed \(pip install virnucpro-esm2-v1 virnucpro-dnabert-v1\)"):
        empty.get_backend("esm2")


def test_selection_parsing():
    assert parse_backend_options(["esm2=v2", "dnabert=v1"]) == {"esm2": "v2", "dnabert": "v1"}
    assert parse_backend_options(["ESM2 = v2", "dnabert"]) == {"esm2": "v2", "dnabert": None}
    assert parse_backend_options([], v1_fallback=True) == {"esm2": "v1"}
    assert parse_backend_options(["esm2=v1"], v1_fallback=True) == {"esm2": "v1"}
    with pytest.raises(ConfigError, match=r"--backend asks for esm2=v2 and esm2=v1; give one \(--v1-fallback means esm2=v1\)"):
        parse_backend_options(["esm2=v2"], v1_fallback=True)
    with pytest.raises(ConfigError) as err:
        parse_backend_options(["esm2:v2"])
    assert str(err.value) == "--backend 'esm2:v2': expected FAMILY=VERSION, e.g. --backend esm2=v1 (see `virnucpro backends`)"


def test_resolution_per_modality_and_logged_architecture():
    registry = registry_with(
        (Plugin(backend(), backend(version="v2")), info("esm", "virnucpro-esm2", "0.1")),
        (Plugin(backend("dnabert", "v1", "nucleotide", 768), backend("kmer", "v1", "nucleotide", 256)), info("nuc", "nuc-pkg", "0.2")),
    )
    resolved = resolve_backends(registry, {})
    assert resolved["protein"].key == "esm2=v2" and resolved["nucleotide"].key == "dnabert=v1"
    assert resolved.architecture() == "esm2=v2 (virnucpro-esm2 0.1), dnabert=v1 (nuc-pkg 0.2)"
    assert resolve_backends(registry, parse_backend_options([], v1_fallback=True))["protein"].key == "esm2=v1"
    assert resolve_backends(registry, {"kmer": "v1"})["nucleotide"].key == "kmer=v1"
    with pytest.raises(BackendError, match=r"--backend dnabert=v1 and --backend kmer=v1 both embed nucleotide sequences; give one"):
        resolve_backends(registry, {"dnabert": "v1", "kmer": "v1"})
    assert resolved.manifest()["protein"] == {"family": "esm2", "version": "v2", "package": "virnucpro-esm2", "package_version": "0.1", "dim": 2560}


def test_explicitly_requested_unavailable_backend_says_why():
    registry = registry_with((Plugin(backend(version="v2", check_available=lambda: "needs CUDA")), info("esm", "virnucpro-esm2-v2", "0.1")))
    with pytest.raises(BackendError) as err:
        resolve_backends(registry, {"esm2": "v2"}, modalities=("protein",))
    assert str(err.value) == "backend esm2=v2 (virnucpro-esm2-v2 0.1) cannot run here: needs CUDA; choose another with --backend (see `virnucpro backends`)"


def test_backend_descriptor_validates_its_fields():
    with pytest.raises(ValueError, match="modality must be one of"):
        backend(modality="rna")
    with pytest.raises(ValueError, match="use lower-case"):
        backend(family="ESM2")
    with pytest.raises(ValueError, match="dim must be positive"):
        backend(dim=0)


def test_plugin_commands_are_added_and_name_clashes_keep_the_core_command():
    class Commands:
        @hookimpl
        def register_commands(self, cli):
            @cli.command(name="hello")
            def hello():
                """Say hi to the user."""
                click.echo("hi")

            @cli.command(name="backends")
            def hijack():
                click.echo("hijacked")

    group = click.Group()

    @group.command(name="backends")
    def original():
        click.echo("original")

    registry = registry_with((Commands(), info("cmds")))
    registry.register_commands(group)
    assert set(group.commands) == {"hello", "backends"}
    assert group.commands["backends"] is original
    assert "command 'backends' already exists" in str(registry.problems[0])
    # `virnucpro --help` shows that a plugin added it; the core's own command is unchanged
    assert group.commands["hello"].get_short_help_str(80) == "[plugin pkg-cmds] Say hi to the user."
    assert original.short_help is None


def test_every_hook_is_documented_with_an_example_and_tested():
    this_file = Path(__file__).read_text()
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]
    assert specs == ["register_backends", "register_commands", "register_formats"]
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "@hookimpl" in doc and "def " + name in doc, f"hook {name} needs a docstring with a complete example"
    for name in specs:
        assert f"def {name}(self" in this_file or f"def {name}(" in this_file.replace(GOOD_MODULE, ""), f"hook {name} is not exercised here"


def test_format_hook_from_a_plugin_is_listed_with_its_package():
    from virnucpro_core.formats.base import EmbeddingFormat

    class Npz:
        @hookimpl
        def register_formats(self, register):
            register(EmbeddingFormat(name="npz", suffixes=(".npz",), open_reader=lambda p: None, open_writer=lambda p, m: None))

    registry = registry_with((Npz(), info("npz", "virnucpro-npz", "0.3")))
    assert registry.format_for_path("a.npz").package == "virnucpro-npz"
    registry = registry_with((Npz(), info("npz1", "p1")), (Npz(), info("npz2", "p2")))
    assert [f.package for f in registry.list_formats() if f.name == "npz"] == ["p1"]
    assert "format 'npz' is already registered by p1" in str(registry.problems[0])
