"""Which model files a run uses: a models directory, explicit options, hub names.

A *models directory* (``--models-dir DIR`` or ``$VIRNUCPRO_MODELS``) holds one
consistent set::

    DIR/models.json                   {"kind": "real"|"tiny", "esm2": "esm2/<name>.pt",
                                       "dnabert": "dnabert/DNABERT-S",
                                       "mlp": {"300": "mlp/300_model.pth", "500": "mlp/500_model.pth"},
                                       "sha256": {"<relative path>": "<hex>"}}
    DIR/esm2/esm2_t36_3B_UR50D.pt     (+ esm2_t36_3B_UR50D-contact-regression.pt)
    DIR/dnabert/DNABERT-S/            a Hugging Face folder, remote code included
    DIR/mlp/300_model.pth, 500_model.pth   (or <stem>.safetensors + <stem>.json)

``virnucpro models download`` lays out the real set, ``virnucpro models init-tiny``
a tiny random one for smoke tests. Without ``models.json`` the default layout above
is assumed. A key left out of ``models.json`` (``esm2`` after ``download
--skip-esm``) means the hub default for that model.

Resolution order, per model: an explicit option wins, then the directory, then (ESM-2
and DNABERT-S only) the hub name, which the backends resolve through their own
caches. The MLP has no hub: without a directory or ``--mlp`` it is an error that says
which file to put where. Every missing file is named, all in one error line.

This module imports nothing heavy; it is used by the CLI before any model loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virnucpro_core.checksum import sha256_file
from virnucpro_core.errors import ConfigError, ModelError

MODELS_ENV = "VIRNUCPRO_MODELS"
MODELS_JSON = "models.json"
MODEL_TYPES: tuple[int, ...] = (300, 500)
KINDS: tuple[str, ...] = ("real", "tiny")

DEFAULT_ESM2 = "esm2_t36_3B_UR50D"
DEFAULT_DNABERT = "zhihan1996/DNABERT-S"

#: Default layout, relative to a models directory.
ESM2_FILE = f"esm2/{DEFAULT_ESM2}.pt"
DNABERT_DIR = "dnabert/DNABERT-S"
MLP_DIR = "mlp"

#: Where ``virnucpro models download`` fetches the published files from.
ESM2_URL = f"https://dl.fbaipublicfiles.com/fair-esm/models/{DEFAULT_ESM2}.pt"
ESM2_REGRESSION_URL = f"https://dl.fbaipublicfiles.com/fair-esm/regression/{DEFAULT_ESM2}-contact-regression.pt"
#: The original project's repository and the commit the MLPs are fetched from: a fixed
#: commit, not a branch, so a later push cannot change what ``download`` installs.
#: ``300_model.pth``/``500_model.pth`` were committed in 0b7e6f1 (2024-11-17) and are
#: unchanged at this commit, the repository's head on 2025-04-01.
ORIGINAL_REPOSITORY = "Li-Jing-1997/VirNucPro"
ORIGINAL_COMMIT = "0f93f2755a7ea1acd3ff1bcf182892f960ef3326"
MLP_URL = f"https://raw.githubusercontent.com/{ORIGINAL_REPOSITORY}/{ORIGINAL_COMMIT}/{{model_type}}_model.pth"
#: Git object ids of the MLPs in that commit's tree (``git ls-tree``): every download is
#: checked against them, so a different file is refused whatever the server sends.
MLP_GIT_BLOBS: dict[int, str] = {
    300: "a0b5b85e7c1e44f00cde146d091beb82b2c8e855",
    500: "fc35d5ef9f1f4564eea7036f34f4f8ec6000d33d",
}
#: The DNABERT-S revision (Hugging Face commit) ``download`` fetches and ``predict`` loads
#: by default: the commit that public code loading zhihan1996/DNABERT-S pins (issue 12).
#: ``--dnabert-revision`` (``predict``, ``models download``) or ``--revision`` (``embed``)
#: asks for another; only this one has pinned files (:data:`DNABERT_S_PINS`).
DNABERT_S_REVISION: str | None = "00e47f96cdea35e4b6f5df89e5419cbe47d490c6"


@dataclass(frozen=True)
class PinnedFile:
    """A published file's exact size and SHA-256, and where those values were found.

    A fetched file is compared with them before it is kept or loaded: size first (free),
    then SHA-256, so a truncated or substituted download, an HTML error page or a Git LFS
    pointer is refused whatever the server says.
    """

    size: int
    sha256: str
    source: str

    def mismatch(self, path: Path) -> str | None:
        """Why the file at ``path`` is not this one, or ``None`` when it is."""
        size = Path(path).stat().st_size
        if size != self.size:
            return f"{size:,} bytes, expected {self.size:,}"
        digest = sha256_file(path)
        if digest != self.sha256:
            return f"SHA-256 {digest}, expected {self.sha256}"
        return None

    def require(self, path: Path, *, what: str, fix: str) -> None:
        """Raise one :class:`ModelError` line when the file at ``path`` is not this one."""
        reason = self.mismatch(path)
        if reason is not None:
            raise ModelError(f"{what} is not the pinned file ({reason}; pin from {self.source}); {fix}")


#: Where the ESM-2 3B values come from (shown in a mismatch error).
ESM2_SOURCE = ("recorded alike (bytes and SHA-256) by several unrelated public repositories that pin fair-esm's "
               "ESM-2 3B download (a SimpleFold ESM-2 artifact lock, an ESMFold baseline's README, a Protenix run "
               "report); Meta publishes no checksum")
#: fair-esm's ESM-2 3B files by name (the files at :data:`ESM2_URL` and
#: :data:`ESM2_REGRESSION_URL`). Meta publishes no checksums; these values are recorded
#: alike in several unrelated public repositories found by code search (docs/performance.md,
#: "Pinned model files", says which and how far they were checked).
ESM2_PINS: dict[str, PinnedFile] = {
    f"{DEFAULT_ESM2}.pt": PinnedFile(
        5_678_116_398, "7de8b4082ba15891959ab368b77ce3886697af1efb16d3c9e9e7b0c5d3f07500", ESM2_SOURCE),
    f"{DEFAULT_ESM2}-contact-regression.pt": PinnedFile(
        6_759, "4da500eab246481dc9c8c95bc7b1d02f2803d761c380b0e95186d4a07d0fc84e", ESM2_SOURCE),
}
#: DNABERT-S's files at :data:`DNABERT_S_REVISION`, by name. The weights' size and SHA-256
#: are the Hugging Face LFS pointer of ``pytorch_model.bin`` at that commit, as issue 12
#: records them; ``config.json`` (not an LFS file) is the SHA-256 of the 1,025 bytes of
#: tests/data/dnabert_s_config.json, which issue 12 states is identical to that commit's file.
#: Neither was re-checked against the hub here (no network). ``tokenizer.json`` and the
#: remote code are not pinned (no published checksum was available).
DNABERT_S_PINS: dict[str, PinnedFile] = {
    "pytorch_model.bin": PinnedFile(
        468_320_053, "f3cfc3d0541859df64759e758cc4bc40fe1d5760799a7d098a9f9f09501c1e5f",
        f"Hugging Face LFS pointer of zhihan1996/DNABERT-S@{DNABERT_S_REVISION}"),
    "config.json": PinnedFile(
        1_025, "d54c142114563aa34ef7c2b54ccc921d08e50cd7c3cd69c439d5e0d2bbcfcdee",
        f"zhihan1996/DNABERT-S@{DNABERT_S_REVISION} (= tests/data/dnabert_s_config.json)"),
}


def dnabert_pins(repo_id: str, revision: str | None) -> dict[str, PinnedFile]:
    """The pinned files of DNABERT-S ``repo_id`` at ``revision``; empty for any other model or revision."""
    if repo_id != DEFAULT_DNABERT or revision is None or revision != DNABERT_S_REVISION:
        return {}
    return dict(DNABERT_S_PINS)


@dataclass(frozen=True)
class ModelSet:
    """The three models of one run, resolved.

    ``esm2`` and ``dnabert`` are either absolute local paths (as strings) or hub
    names for the backends to resolve. ``mlp`` is always a local file. ``tiny`` is
    true for a set written by ``virnucpro models init-tiny`` (random weights: results
    mean nothing). ``root`` is the models directory used, if any.
    """

    esm2: str
    dnabert: str
    mlp: Path
    tiny: bool
    root: Path | None
    model_type: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, for run manifests."""
        return {
            "model_type": self.model_type,
            "esm2": self.esm2,
            "dnabert": self.dnabert,
            "mlp": str(self.mlp),
            "tiny": self.tiny,
            "root": str(self.root) if self.root else None,
        }


def mlp_file_name(model_type: int) -> str:
    return f"{model_type}_model.pth"


def check_model_type(model_type: int) -> int:
    try:
        value = int(model_type)
    except (TypeError, ValueError):
        value = -1
    if value not in MODEL_TYPES:
        raise ConfigError(f"--model-type must be 300 or 500, not {model_type!r}")
    return value


def models_dir_from_env() -> Path | None:
    """``$VIRNUCPRO_MODELS`` as a path, or ``None`` when unset or empty."""
    value = os.environ.get(MODELS_ENV, "").strip()
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class ModelsDir:
    """A models directory as its ``models.json`` (or the default layout) describes it.

    Relative paths are resolved against ``root``. ``esm2``/``dnabert`` are ``None``
    when ``models.json`` leaves them out (hub default). ``mlp`` maps ``"300"``/``"500"``
    to files that may or may not exist.
    """

    root: Path
    kind: str
    has_manifest: bool
    esm2: Path | None
    dnabert: Path | None
    mlp: Mapping[str, Path]
    sha256: Mapping[str, str]

    @property
    def tiny(self) -> bool:
        return self.kind == "tiny"

    @property
    def manifest(self) -> Path:
        return self.root / MODELS_JSON

    def fetch_hint(self) -> str:
        """The command that (re)creates this directory's files."""
        if self.tiny:
            return f"virnucpro models init-tiny {self.root}"
        return f"virnucpro models download --models-dir {self.root}"

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def _default_mlp(root: Path, model_type: int) -> Path:
    """``mlp/<type>_model.safetensors`` when converted (with its JSON), else the ``.pth``."""
    safe = root / MLP_DIR / f"{model_type}_model.safetensors"
    if safe.is_file() and safe.with_suffix(".json").is_file():
        return safe
    return root / MLP_DIR / mlp_file_name(model_type)


def read_models_dir(root: Path | str) -> ModelsDir:
    """Read ``root/models.json`` (or assume the default layout); files may be missing."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ModelError(
            f"models directory {root} does not exist: create it with `virnucpro models download --models-dir {root}` "
            f"(or `virnucpro models init-tiny {root}` for a smoke test)"
        )
    manifest = root / MODELS_JSON
    if not manifest.exists():
        return ModelsDir(
            root=root,
            kind="real",
            has_manifest=False,
            esm2=root / ESM2_FILE,
            dnabert=root / DNABERT_DIR,
            mlp={str(t): _default_mlp(root, t) for t in MODEL_TYPES},
            sha256={},
        )
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{manifest} is not valid JSON ({reason}): fix or delete it") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{manifest} must hold a JSON object: fix or delete it")
    kind = doc.get("kind", "real")
    if kind not in KINDS:
        raise ModelError(f"{manifest}: \"kind\" must be one of {', '.join(KINDS)}, not {kind!r}")

    def local(key: str, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise ModelError(f"{manifest}: {key} must be a path relative to {root}")
        return (root / value).absolute() if not Path(value).is_absolute() else Path(value)

    mlp_doc = doc.get("mlp", {})
    if not isinstance(mlp_doc, dict):
        raise ModelError(f"{manifest}: \"mlp\" must map \"300\"/\"500\" to files")
    sha = doc.get("sha256", {})
    return ModelsDir(
        root=root,
        kind=kind,
        has_manifest=True,
        esm2=local("esm2", doc["esm2"]) if doc.get("esm2") is not None else None,
        dnabert=local("dnabert", doc["dnabert"]) if doc.get("dnabert") is not None else None,
        mlp={str(k): local(f"mlp.{k}", v) for k, v in mlp_doc.items()},
        sha256=dict(sha) if isinstance(sha, dict) else {},
    )


def esm2_regression_path(esm2_file: Path) -> Path:
    """fair-esm loads ``<stem>-contact-regression.pt`` from beside an ESM-2 ``.pt``."""
    return esm2_file.with_name(esm2_file.stem + "-contact-regression.pt")


def _explicit_model(value: str, what: str, option: str) -> str:
    """A local path (made absolute) if it exists or looks like one, else a hub name."""
    path = Path(value).expanduser()
    if path.exists():
        return str(path.absolute())
    if value.startswith(("/", "./", "../", "~")) or value.endswith(".pt"):
        raise ModelError(f"{what} {path} (from {option}) does not exist: fix the path or pass a model name")
    return value


def resolve_model_set(
    model_type: int,
    *,
    models_dir: Path | None = None,
    esm_model: str | None = None,
    dnabert_model: str | None = None,
    mlp: Path | None = None,
) -> ModelSet:
    """Resolve the ESM-2, DNABERT-S and MLP of a ``--model-type`` run.

    Explicit options win, then ``models_dir`` (or ``$VIRNUCPRO_MODELS``), then the
    hub names for ESM-2 and DNABERT-S. Only files that come from the directory or
    an explicit path are checked here; hub names are the backends' business.
    Raises :class:`ModelError` (one line, naming the path) for anything missing.
    """
    model_type = check_model_type(model_type)
    root = Path(models_dir).expanduser() if models_dir is not None else models_dir_from_env()
    layout = read_models_dir(root) if root is not None else None
    #: (what is missing, the option that replaces it): all of them are named in one error
    missing: list[tuple[str, str]] = []

    esm2 = DEFAULT_ESM2
    if esm_model:
        esm2 = _explicit_model(esm_model, "ESM-2 model", "--esm-model")
    elif layout is not None and layout.esm2 is not None:
        esm2, problem = _esm2_in(layout)
        missing += [(problem, "--esm-model NAME|PATH")] if problem else []

    dnabert = DEFAULT_DNABERT
    if dnabert_model:
        dnabert = _explicit_model(dnabert_model, "DNABERT-S model", "--dnabert-model")
    elif layout is not None and layout.dnabert is not None:
        dnabert, problem = _dnabert_in(layout)
        missing += [(problem, "--dnabert-model NAME|PATH")] if problem else []

    mlp_path, mlp_missing = _resolve_mlp(model_type, mlp, layout)
    if mlp_missing and not missing:  # the MLP alone: its own wording, as before
        raise ModelError(f"{mlp_missing} ({_hint(layout)}) or pass --mlp PATH")
    if mlp_missing:
        missing.append((mlp_missing, "--mlp PATH"))
    if missing:
        hint = _hint(layout)
        if len(missing) == 1:
            what, option = missing[0]
            raise ModelError(f"{what}: run `{hint}` or pass {option}")
        options = ", ".join(dict.fromkeys(option for _, option in missing))
        raise ModelError(f"{len(missing)} model files are missing: {'; '.join(what for what, _ in missing)}; "
                         f"run `{hint}` or pass {options}")
    return ModelSet(
        esm2=esm2,
        dnabert=dnabert,
        mlp=mlp_path,
        tiny=bool(layout and layout.tiny),
        root=layout.root if layout else None,
        model_type=model_type,
    )


def _esm2_in(layout: ModelsDir) -> tuple[str, str | None]:
    """The directory's ESM-2 checkpoint, and what is missing of it (fair-esm also needs its regression file)."""
    assert layout.esm2 is not None
    esm_file, regression = layout.esm2, esm2_regression_path(layout.esm2)
    if not esm_file.is_file():
        return str(esm_file), f"ESM-2 weights {esm_file} are missing"
    if not regression.is_file():
        return str(esm_file), (f"ESM-2 contact-regression weights {regression} are missing (fair-esm loads them "
                               f"from beside {esm_file.name})")
    return str(esm_file), None


def _dnabert_in(layout: ModelsDir) -> tuple[str, str | None]:
    """The directory's DNABERT-S folder, and what is wrong with it."""
    assert layout.dnabert is not None
    folder = layout.dnabert
    if not (folder / "config.json").is_file():
        return str(folder), f"DNABERT-S folder {folder} {'has no config.json' if folder.is_dir() else 'is missing'}"
    return str(folder), None


#: The models of a models directory by backend family; other families use their own defaults.
_FAMILY_MODELS = {"esm2": ("esm2", _esm2_in), "dnabert": ("dnabert", _dnabert_in)}


def model_from_models_dir(family: str, models_dir: Path | None = None) -> tuple[str | None, bool]:
    """The model a models directory (or ``$VIRNUCPRO_MODELS``) holds for ``family``, and
    whether it is a tiny random one; ``(None, False)`` without a directory or for a family
    the directory does not hold (the backend then uses its default). Used by ``embed``."""
    root = Path(models_dir).expanduser() if models_dir is not None else models_dir_from_env()
    if root is None:
        return None, False
    layout = read_models_dir(root)
    if family not in _FAMILY_MODELS or getattr(layout, _FAMILY_MODELS[family][0]) is None:
        return None, False  # the backend's own default, not one of the directory's models
    model, problem = _FAMILY_MODELS[family][1](layout)
    if problem:
        raise ModelError(f"{problem}: run `{layout.fetch_hint()}` or pass --model NAME|PATH")
    return model, layout.tiny


def in_tiny_set(path: Path | str) -> bool:
    """Whether ``path`` lies in a models directory whose ``models.json`` says ``"kind": "tiny"``
    (``DIR/mlp/500_model.pth`` of ``virnucpro models init-tiny DIR``)."""
    for folder in list(Path(path).expanduser().absolute().parents)[:3]:
        manifest = folder / MODELS_JSON
        if manifest.is_file():
            try:
                return json.loads(manifest.read_text(encoding="utf-8")).get("kind") == "tiny"
            except (OSError, ValueError, AttributeError):
                return False
    return False


def _hint(layout: ModelsDir | None) -> str:
    return layout.fetch_hint() if layout else "virnucpro models download --models-dir DIR"


def _resolve_mlp(model_type: int, mlp: Path | None, layout: ModelsDir | None) -> tuple[Path, str | None]:
    """The MLP file, and what is missing when it is absent from the models directory
    (to be named with the other missing files); a wrong ``--mlp`` raises at once."""
    name = mlp_file_name(model_type)
    if mlp is not None:
        path = Path(mlp).expanduser().absolute()
        if not path.is_file():
            raise ModelError(f"MLP file {path} (from --mlp) does not exist: fix the path")
        return path, None
    if layout is None:
        return Path(name), f"no MLP for --model-type {model_type}: put {name} in DIR/mlp/"
    path = layout.mlp.get(str(model_type))
    if path is None:
        return Path(name), (f"no MLP for --model-type {model_type} in {layout.manifest}: put {name} in "
                            f"{layout.root / MLP_DIR}/ and list it there")
    if not path.is_file():
        if layout.has_manifest:
            return path, f"MLP file {path} (listed in {layout.manifest}) is missing: put {path.name} there"
        return path, f"no MLP for --model-type {model_type}: put {name} in {path.parent}/"
    if path.suffix == ".safetensors" and not path.with_suffix(".json").is_file():
        raise ModelError(
            f"MLP config {path.with_suffix('.json')} is missing (it must sit beside {path.name}): "
            "re-create both with `virnucpro models import-mlp`"
        )
    return path, None


@dataclass(frozen=True)
class ModelFileStatus:
    """One file (or folder) a models directory should hold, and what we found."""

    role: str
    path: Path
    present: bool
    expected_sha256: str | None = None
    sha256_ok: bool | None = None  # None: not verified

    @property
    def ok(self) -> bool:
        return self.present and self.sha256_ok is not False


def inspect_models_dir(root: Path | str, *, verify: bool = False) -> tuple[ModelsDir, list[ModelFileStatus]]:
    """What ``root`` holds and what is missing; ``verify`` recomputes recorded SHA-256s."""
    layout = read_models_dir(root)
    entries: list[tuple[str, Path, bool]] = []
    if layout.esm2 is not None:
        entries.append(("esm2", layout.esm2, layout.esm2.is_file()))
        regression = esm2_regression_path(layout.esm2)
        entries.append(("esm2 contact regression", regression, regression.is_file()))
    if layout.dnabert is not None:
        entries.append(("dnabert", layout.dnabert, (layout.dnabert / "config.json").is_file()))
    for model_type, path in sorted(layout.mlp.items()):
        present = path.is_file()
        entries.append((f"mlp {model_type}", path, present))
        if path.suffix == ".safetensors":
            config = path.with_suffix(".json")
            entries.append((f"mlp {model_type} config", config, config.is_file()))
    statuses: list[ModelFileStatus] = []
    for role, path, present in entries:
        rel = layout.relative(path)
        expected = layout.sha256.get(rel)
        ok: bool | None = None
        if verify and present and expected and path.is_file():
            ok = sha256_file(path) == expected
        elif verify and present and path.is_dir():  # a folder: every file recorded under it
            inside = {k: v for k, v in layout.sha256.items() if k.startswith(rel + "/")}
            if inside:
                ok = all((layout.root / k).is_file() and sha256_file(layout.root / k) == v for k, v in inside.items())
        statuses.append(ModelFileStatus(role, path, present, expected, ok))
    return layout, statuses
