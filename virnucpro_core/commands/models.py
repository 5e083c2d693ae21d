"""``virnucpro models``: fetch, convert, list and fake the model files.

* ``download`` lays out the published files in a models directory (ESM-2 3B from
  fair-esm's URLs, DNABERT-S from the Hugging Face hub, the two MLPs from a fixed
  commit of the original project's repository, checked against the git object ids of
  that commit) and records their SHA-256 in ``models.json``; a later download that
  gives another checksum is refused and the file already there is kept.
* ``import-mlp`` converts an original pickled ``*_model.pth`` to safetensors + JSON,
  loading it with the restricted unpickler (nothing in the pickle runs).
* ``init-tiny`` writes a tiny random model set for smoke tests.
* ``list`` shows what a models directory holds and what is missing.

Heavy modules (torch, huggingface_hub, the classifier) are imported inside the
commands, so ``virnucpro --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from virnucpro_core import modelset
from virnucpro_core.errors import ConfigError, ModelError
from virnucpro_core.modelset import (
    DEFAULT_DNABERT,
    DNABERT_DIR,
    ESM2_FILE,
    ESM2_REGRESSION_URL,
    ESM2_URL,
    MLP_DIR,
    MLP_URL,
    MODEL_TYPES,
    MODELS_ENV,
    MODELS_JSON,
    esm2_regression_path,
    inspect_models_dir,
    mlp_file_name,
    models_dir_from_env,
    sha256_file,
)

TINY_BANNER = (
    "WARNING: these are RANDOM TINY models for tests and smoke runs. They are not the published "
    "VirNucPro models and their predictions are not biologically meaningful."
)


@click.group("models")
def models() -> None:
    """Fetch, convert and inspect model files.

    \b
    A models directory (--models-dir DIR or $VIRNUCPRO_MODELS) holds:
      models.json                          what is where (+ SHA-256)
      esm2/esm2_t36_3B_UR50D.pt            ESM-2 3B (+ -contact-regression.pt)
      dnabert/DNABERT-S/                   DNABERT-S (Hugging Face folder)
      mlp/300_model.pth, mlp/500_model.pth the published classifiers
    """


# --------------------------------------------------------------------------- import-mlp


@models.command("import-mlp")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write OUT.safetensors (+ OUT.json) [default: beside SOURCE].")
@click.option("--force", is_flag=True, help="Replace OUT.safetensors and OUT.json if they exist (refused otherwise).")
def import_mlp(source: Path, output: Path | None, force: bool) -> None:
    """Convert an original pickled MLP (300_model.pth / 500_model.pth) to safetensors + JSON.

    The pickle is read with a restricted unpickler: only the MLP's own classes and
    tensors are allowed, so nothing in the file can run. Existing output files are
    refused unless --force.

    \b
    Example:
      virnucpro models import-mlp 500_model.pth -o mlp/500_model.safetensors
    """
    from virnucpro_core.classifier import load_original_mlp, save_mlp
    from virnucpro_core.outputs import Outputs, refuse_existing, refuse_inputs_as_outputs

    if not source.is_file():
        raise ModelError(f"MLP file {source} does not exist")
    output = output if output is not None else source.with_suffix(".safetensors")
    if output.suffix != ".safetensors":
        output = output.with_name(output.name + ".safetensors")
    written = (output, output.with_suffix(".json"))
    refuse_inputs_as_outputs(Outputs(files=written), (source,))
    for path in written:
        refuse_existing(path, force=force)
    model = load_original_mlp(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    from virnucpro_core.modelset import in_tiny_set
    from virnucpro_core.pipeline import TINY_WARNING

    warning = TINY_WARNING if in_tiny_set(source) else None  # from `models init-tiny`: the label goes with it
    weights, config = save_mlp(model, output, source=source, warning=warning)
    c = model.config
    click.echo(f"wrote {weights} and {config} (input {c.input_dim}, hidden {c.hidden_dim}, classes {c.num_class})")
    if warning:
        click.echo("WARNING: " + warning, err=True)


# --------------------------------------------------------------------------- init-tiny


@models.command("init-tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--force", is_flag=True, help="Overwrite a model set already in DIRECTORY.")
def init_tiny(directory: Path, seed: int, force: bool) -> None:
    """Write a tiny RANDOM model set into DIRECTORY, for smoke tests.

    The files have the real formats and layout, so `virnucpro predict --models-dir
    DIRECTORY` runs end to end in seconds on a CPU. The predictions mean nothing.
    """
    from virnucpro_core.testing.models import write_tiny_model_set

    if (directory / MODELS_JSON).exists() and not force:
        raise ConfigError(f"{directory / MODELS_JSON} already exists: choose another directory or pass --force")
    write_tiny_model_set(directory, seed=seed)
    click.echo(f"wrote a tiny model set to {directory} (use --models-dir {directory})")
    click.echo(TINY_BANNER, err=True)


# --------------------------------------------------------------------------- download


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: from ``url`` to ``relpath`` inside the models directory.

    ``git_blob`` is the file's git object id at the pinned commit, when the file comes
    from a git repository; ``pin`` its published size and SHA-256 (ESM-2 3B). The download
    must match them.
    """

    role: str
    url: str
    relpath: str
    git_blob: str | None = None
    pin: modelset.PinnedFile | None = None


def download_plan(model_types: tuple[int, ...], *, esm: bool, mlp: bool) -> list[RemoteFile]:
    """The single files ``download`` fetches (DNABERT-S is a folder, fetched separately)."""
    plan: list[RemoteFile] = []
    if esm:
        regression = esm2_regression_path(Path(ESM2_FILE))
        plan.append(RemoteFile("ESM-2 3B", ESM2_URL, ESM2_FILE, pin=modelset.ESM2_PINS.get(Path(ESM2_FILE).name)))
        plan.append(RemoteFile("ESM-2 3B contact regression", ESM2_REGRESSION_URL, regression.as_posix(),
                               pin=modelset.ESM2_PINS.get(regression.name)))
    if mlp:
        for model_type in model_types:
            plan.append(RemoteFile(f"MLP {model_type}", MLP_URL.format(model_type=model_type),
                                   f"{MLP_DIR}/{mlp_file_name(model_type)}", modelset.MLP_GIT_BLOBS.get(model_type)))
    return plan


def check_download(item: RemoteFile, path: Path, recorded_sha256: str | None) -> str:
    """Refuse a fetched file that is not the pinned one or differs from an earlier download;
    returns its SHA-256. ``path`` is the temporary file, so a refused one never replaces
    anything."""
    from virnucpro_core.checksum import git_blob_sha1

    if item.git_blob is not None:
        got = git_blob_sha1(path)
        if got != item.git_blob:
            raise ModelError(
                f"{item.url} did not give the pinned file (git object {got}, expected {item.git_blob} at commit "
                f"{modelset.ORIGINAL_COMMIT} of {modelset.ORIGINAL_REPOSITORY}); nothing was kept: check the URL or "
                "network proxy, or fetch the file from that commit yourself"
            )
    if item.pin is not None:
        item.pin.require(path, what=f"{item.url} gave a file that",
                         fix=f"nothing was kept under {item.relpath}: check the URL or network proxy and retry")
    digest = sha256_file(path)
    if recorded_sha256 is not None and digest != recorded_sha256:
        raise ModelError(
            f"{item.url} gave a file with SHA-256 {digest}, but {MODELS_JSON} records {recorded_sha256} from the first "
            f"download of {item.relpath}; the source changed or the download is corrupt, so the file was not replaced: "
            f"remove its entry from {MODELS_JSON} to accept the new file"
        )
    return digest


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def fetch_url(url: str, dest: Path, *, progress: bool = True, check: Callable[[Path], object] | None = None) -> None:
    """Download ``url`` to ``dest``; ``dest`` exists only once the download is complete.

    ``torch.hub.download_url_to_file`` writes to a temporary file and renames it
    at the end; we hand it a temporary name of our own as well and clean it up on
    failure, so an interrupted download never leaves a partial file under ``dest``.
    ``check`` sees the complete temporary file before it is renamed; what it raises
    leaves ``dest`` as it was.
    """
    import torch.hub

    from virnucpro_core.atomic import atomic_path

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), progress=progress)
            if check is not None:
                check(tmp)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"could not download {url} to {dest}: {_reason(exc)}; check network access, "
            f"or fetch the file another way and place it at {dest}"
        ) from None


def fetch_dnabert(dest: Path, *, revision: str | None, check: Callable[[Path], object] | None = None) -> None:
    """Snapshot ``zhihan1996/DNABERT-S`` (remote code included) into ``dest`` atomically.

    The snapshot goes to ``.<name>.partial`` beside ``dest`` and is renamed when
    complete; the partial folder is kept on failure, so the hub client resumes there.
    ``check`` sees the complete partial folder first; what it raises leaves ``dest`` as it was.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(
            "huggingface_hub is not installed, so DNABERT-S cannot be fetched: pip install huggingface_hub "
            "(or 'virnucpro[download]'), or pass --skip-dnabert"
        ) from None
    if revision is None:
        click.echo("DNABERT-S: no revision pinned (--dnabert-revision, or DNABERT_S_REVISION in "
                   "virnucpro_core/modelset.py); fetching the hub's latest", err=True)
    elif revision != modelset.DNABERT_S_REVISION:
        click.echo(f"DNABERT-S: revision {revision} is not the pinned {modelset.DNABERT_S_REVISION}; its files are "
                   "recorded in models.json but not checked against published checksums", err=True)
    partial = dest.with_name(f".{dest.name}.partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        # at the pinned revision, never safetensors: loaders prefer them, and only the .bin is pinned
        unpinned = ["*.safetensors", "*.safetensors.index.json"] if modelset.dnabert_pins(DEFAULT_DNABERT, revision) else None
        snapshot_download(repo_id=DEFAULT_DNABERT, revision=revision, local_dir=str(partial), ignore_patterns=unpinned)
    except Exception as exc:
        raise ModelError(
            f"could not download {DEFAULT_DNABERT} from the Hugging Face hub to {dest}: {_reason(exc)}; "
            f"check network access, or copy a DNABERT-S folder to {dest}"
        ) from None
    if not (partial / "config.json").is_file():
        raise ModelError(f"the {DEFAULT_DNABERT} snapshot in {partial} has no config.json; delete it and retry")
    if check is not None:
        try:
            check(partial)
        except ModelError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    if dest.exists():
        shutil.rmtree(dest)
    partial.replace(dest)


def _folder_sha256(root: Path, folder: Path, *, as_folder: Path | None = None) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by path relative to ``root``; ``as_folder``
    names the files as if ``folder`` were there (a snapshot before its rename)."""
    place = as_folder or folder
    return {
        (place / path.relative_to(folder)).relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".cache" not in path.relative_to(folder).parts
    }


def check_dnabert_snapshot(directory: Path, snapshot: Path, recorded: dict[str, str], revision: str | None) -> None:
    """The pinned files of the pinned revision must be the published ones, and a re-download
    of the same revision must give the files recorded the first time."""
    pins = modelset.dnabert_pins(DEFAULT_DNABERT, revision)
    for name, pin in sorted(pins.items()):
        if not (snapshot / name).is_file():
            raise ModelError(f"the {DEFAULT_DNABERT}@{revision} snapshot has no {name}; nothing was kept: retry the download")
        pin.require(snapshot / name, what=f"{DEFAULT_DNABERT}@{revision} gave a {name} that",
                    fix=f"nothing was kept under {directory / DNABERT_DIR}: check the network proxy or mirror (HF_ENDPOINT) and retry")
    fresh = _folder_sha256(directory, snapshot, as_folder=directory / DNABERT_DIR)
    changed = sorted(k for k in recorded if fresh.get(k) != recorded[k])
    if changed:
        raise ModelError(
            f"the DNABERT-S snapshot differs from the one recorded in {MODELS_JSON} for the same revision "
            f"({', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}); the hub's files changed or the download is "
            f"corrupt, so {directory / DNABERT_DIR} was not replaced: pin --dnabert-revision, or remove those entries "
            f"from {MODELS_JSON} to accept the new files"
        )


def _validate_mlp(path: Path) -> None:
    """A downloaded MLP must load safely (catches HTML error pages and LFS pointers)."""
    from virnucpro_core.classifier import load_mlp

    try:
        load_mlp(path)
    except ModelError as exc:
        path.unlink(missing_ok=True)
        raise ModelError(f"the downloaded {path.name} is not a usable MLP and was removed: {exc}") from None


@models.command("download")
@click.option("--models-dir", "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Models directory to fill (--dir is an alias) [default: ${MODELS_ENV}].")
@click.option("--model-type", type=click.Choice(["300", "500", "all"]), default="all", show_default=True,
              help="Which published MLP(s) to fetch.")
@click.option("--skip-esm", is_flag=True, help="Do not fetch ESM-2 3B (5.7 GB); fair-esm's own cache is used instead.")
@click.option("--skip-dnabert", is_flag=True, help="Do not fetch DNABERT-S; the Hugging Face cache is used instead.")
@click.option("--skip-mlp", is_flag=True, help="Do not fetch the MLPs.")
@click.option("--dnabert-revision", default=None, help="Hugging Face revision (commit) of DNABERT-S [the pinned DNABERT_S_REVISION; the hub's latest while that is unset].")
@click.option("--force", is_flag=True, help="Fetch again files that are already present.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def download(directory: Path | None, model_type: str, skip_esm: bool, skip_dnabert: bool, skip_mlp: bool,
             dnabert_revision: str | None, force: bool, quiet: bool) -> None:
    """Download the published models into a models directory.

    Files already present are kept (so an interrupted download resumes from the
    next file); a file appears under its final name only once complete. The MLPs
    come from a fixed commit of the original repository and must match its git
    object ids. SHA-256 of every file is recorded in DIR/models.json, written last;
    a --force download that gives another checksum is an error and keeps the old file.

    \b
    Example:
      virnucpro models download --models-dir ~/virnucpro-models
    """
    directory = directory if directory is not None else models_dir_from_env()
    if directory is None:
        raise ConfigError(f"no models directory: pass --models-dir DIR or set {MODELS_ENV}")
    directory = directory.expanduser().absolute()
    manifest = directory / MODELS_JSON
    previous: dict = {}
    if manifest.exists():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            raise ModelError(f"{manifest} is not valid JSON: fix or delete it") from None
        if not isinstance(previous, dict):
            raise ModelError(f"{manifest} must hold a JSON object: fix or delete it")
        if previous.get("kind") == "tiny":
            raise ConfigError(f"{directory} holds a tiny random model set: download the real models to another --models-dir")
    model_types = MODEL_TYPES if model_type == "all" else (int(model_type),)
    created = [d for d in (directory, directory / "esm2", directory / MLP_DIR, directory / "dnabert") if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _download_into(directory, previous, model_types, skip_esm=skip_esm, skip_dnabert=skip_dnabert,
                       skip_mlp=skip_mlp, dnabert_revision=dnabert_revision, force=force, quiet=quiet)
    except BaseException:
        for folder in reversed(created):  # leave no empty folders of ours behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _download_into(directory: Path, previous: dict, model_types: tuple[int, ...], *, skip_esm: bool,
                   skip_dnabert: bool, skip_mlp: bool, dnabert_revision: str | None, force: bool,
                   quiet: bool) -> None:
    from virnucpro_core.atomic import write_json_atomic

    manifest = directory / MODELS_JSON

    sha = dict(previous.get("sha256", {})) if isinstance(previous.get("sha256"), dict) else {}
    sources = dict(previous.get("sources", {})) if isinstance(previous.get("sources"), dict) else {}
    for item in download_plan(model_types, esm=not skip_esm, mlp=not skip_mlp):
        dest = directory / item.relpath
        if dest.is_file() and not force:
            click.echo(f"{item.role}: {dest} already present")
            if item.relpath not in sha:  # keep a recorded checksum: `list --verify` then shows a changed file
                sha[item.relpath] = sha256_file(dest)
        else:
            click.echo(f"{item.role}: downloading {item.url}")
            digests: list[str] = []
            fetch_url(item.url, dest, progress=not quiet,
                      check=lambda tmp, item=item: digests.append(check_download(item, tmp, sha.get(item.relpath))))
            if item.role.startswith("MLP"):
                _validate_mlp(dest)
            sha[item.relpath] = digests[0]
        sources[item.relpath] = item.url
    revisions = dict(previous.get("revisions", {})) if isinstance(previous.get("revisions"), dict) else {}
    if not skip_dnabert:
        dest = directory / DNABERT_DIR
        revision = dnabert_revision or modelset.DNABERT_S_REVISION
        if (dest / "config.json").is_file() and not force:
            click.echo(f"DNABERT-S: {dest} already present")
        else:
            click.echo(f"DNABERT-S: downloading {DEFAULT_DNABERT}" + (f"@{revision}" if revision else "")
                       + " from the Hugging Face hub")
            same_revision = DNABERT_DIR in revisions and revisions[DNABERT_DIR] == revision
            recorded = {k: v for k, v in sha.items() if k.startswith(DNABERT_DIR + "/")} if same_revision else {}
            fetch_dnabert(dest, revision=revision,
                          check=lambda snapshot: check_dnabert_snapshot(directory, snapshot, recorded, revision))
            for key in [k for k in sha if k.startswith(DNABERT_DIR + "/")]:
                del sha[key]  # a new revision replaces the old files' records
            revisions[DNABERT_DIR] = revision
        sha.update({k: v for k, v in _folder_sha256(directory, dest).items() if k not in sha})
        sources[DNABERT_DIR] = f"https://huggingface.co/{DEFAULT_DNABERT}" + (
            f"/tree/{revisions.get(DNABERT_DIR)}" if revisions.get(DNABERT_DIR) else "")

    doc = {"kind": "real"}
    for key in ("esm2", "dnabert"):
        if key in previous:
            doc[key] = previous[key]
    if (directory / ESM2_FILE).is_file():
        doc["esm2"] = ESM2_FILE
    if (directory / DNABERT_DIR / "config.json").is_file():
        doc["dnabert"] = DNABERT_DIR
    mlps = dict(previous.get("mlp", {})) if isinstance(previous.get("mlp"), dict) else {}
    for t in MODEL_TYPES:
        if (directory / MLP_DIR / mlp_file_name(t)).is_file():
            mlps.setdefault(str(t), f"{MLP_DIR}/{mlp_file_name(t)}")
    doc["mlp"] = mlps
    doc["sha256"] = {k: v for k, v in sorted(sha.items()) if (directory / k).is_file()}
    doc["sources"] = dict(sorted(sources.items()))
    if revisions:
        doc["revisions"] = revisions
    write_json_atomic(manifest, doc)
    click.echo(f"wrote {manifest}; use --models-dir {directory} or set {MODELS_ENV}={directory}")


# --------------------------------------------------------------------------- list


@models.command("list")
@click.option("--models-dir", "--dir", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Models directory [default: ${MODELS_ENV}].")
@click.option("--verify", is_flag=True, help="Recompute SHA-256 of every file and compare with models.json; exit 1 on any problem.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_models(models_dir: Path | None, verify: bool, as_json: bool) -> None:
    """Show what a models directory holds and what is missing.

    Exits 1 when a file the set needs is missing (or, with --verify, when a checksum
    differs), so scripts can check a models directory before a long run.
    """
    models_dir = models_dir if models_dir is not None else models_dir_from_env()
    if models_dir is None:
        raise ConfigError(f"no models directory: pass --models-dir DIR or set {MODELS_ENV}")
    layout, statuses = inspect_models_dir(models_dir, verify=verify)
    if as_json:
        click.echo(json.dumps({
            "root": str(layout.root),
            "kind": layout.kind,
            "models_json": layout.has_manifest,
            "files": [
                {"role": s.role, "path": str(s.path), "present": s.present,
                 "sha256": s.expected_sha256, "sha256_ok": s.sha256_ok}
                for s in statuses
            ],
        }, indent=2))
    else:
        source = MODELS_JSON if layout.has_manifest else "default layout, no models.json"
        click.echo(f"{layout.root} ({layout.kind}; {source})")
        for s in statuses:
            state = "ok" if s.present else "MISSING"
            if s.sha256_ok is False:
                state = "SHA-256 MISMATCH"
            elif s.sha256_ok:
                state = "ok (SHA-256 verified)"
            click.echo(f"  {s.role:<28} {state:<22} {layout.relative(s.path)}")
        if layout.tiny:
            click.echo(TINY_BANNER)
    bad = [s for s in statuses if not s.ok]  # a missing file always counts; a mismatch only when verified
    if bad:
        names = ", ".join(f"{layout.relative(s.path)} ({'missing' if not s.present else 'SHA-256 mismatch'})" for s in bad)
        raise ModelError(f"{layout.root}: {names}; re-run `{layout.fetch_hint()}`")
