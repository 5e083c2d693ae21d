"""Array jobs: ``--shard i/N`` writes a shard directory; ``virnucpro aggregate`` joins them.

A shard directory holds the parts ``p`` with ``p % N == i`` and ``shard.json``, written
last, so a shard directory with a manifest is a finished shard. The manifest records
what the parts depend on (input checksum, backend, model, parameters, part size) and
which parts the shard holds. :func:`check_shards` accepts a set of shards only when
their manifests agree on everything but the shard number and every part of the input
is present exactly once; anything else is one line naming the shard and what to do.

- ``embed --shard``: ``DIR/parts/part-*.h5`` + ``DIR/shard.json``
- ``predict --shard``: a predict run directory (prepare done, the raw score parts under
  ``checkpoints/score``, with ``--keep-embeddings`` the embedding parts beside them) +
  ``DIR/shard.json``; aggregating copies the prepared files and
  every part into the new run directory and lets ``predict --resume`` finish it, so the
  outputs are those of a single ``predict``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from virnucpro_core.atomic import write_json_atomic
from virnucpro_core.engine.config import Shard
from virnucpro_core.engine.parts import part_path
from virnucpro_core.errors import ConfigError, InputError

SHARD_JSON = "shard.json"
FORMAT = 1


@dataclass(frozen=True)
class ShardStage:
    """One embedding stage as a shard holds it."""

    parts_dir: str  # relative to the shard directory
    records: int
    part_size: int
    parts_total: int
    parts: tuple[int, ...]


@dataclass(frozen=True)
class ShardManifest:
    path: Path
    kind: str  # embed | predict
    shard: Shard
    identity: Mapping[str, Any]
    stages: Mapping[str, ShardStage]
    extra: Mapping[str, Any]

    @property
    def folder(self) -> Path:
        return self.path.parent


def _stage(plan: Any, parts_dir: Path, root: Path, shard: Shard) -> dict[str, Any]:
    mine = [p for p in range(plan.parts) if p % shard.count == shard.index]
    missing = [p for p in mine if not part_path(parts_dir, p).exists()]
    if missing:
        raise InputError(f"{parts_dir}: shard {shard} lacks part(s) {missing[:5]} after computing them; this is a bug, please report it")
    return {"parts_dir": str(parts_dir.relative_to(root)), "records": plan.total_records, "part_size": plan.part_size,
            "parts_total": plan.parts, "parts": mine}


def write_embed_shard(folder: Path, shard: Shard, identity: Mapping[str, Any], result: Any, backend: Any,
                      warning: str | None = None) -> None:
    """``warning`` (tiny random models) is kept for ``aggregate`` to put on the joined file, as ``embed`` does."""
    write_json_atomic(folder / SHARD_JSON, {
        "format": FORMAT, "kind": "embed", "shard": {"index": shard.index, "count": shard.count},
        "identity": json.loads(json.dumps(dict(identity), default=str)),
        "stages": {"embed": _stage(result.plan, folder / "parts", folder, shard)},
        "extra": {"dim": result.dim, "model": result.model, "backend": backend.key, **({"warning": warning} if warning else {})},
    })


def write_predict_shard(outdir: Path, shard: Shard, manifest: Mapping[str, Any], stages: Mapping[str, tuple[Any, Path]],
                        request: Any, runtime: Any) -> None:
    """``stages``: name → (part plan, folder of its parts), for every kind of part the shard holds."""
    outdir = Path(outdir).resolve()
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    request_json = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in fields.items()}
    request_json.pop("outdir")
    runtime_json = {k: v for k, v in runtime.as_dict().items() if k in ("precision", "batch_tokens", "batch_size", "checkpoint_every")}
    write_json_atomic(outdir / SHARD_JSON, {
        "format": FORMAT, "kind": "predict", "shard": {"index": shard.index, "count": shard.count},
        "identity": {"fingerprint": manifest["fingerprint"], **manifest["identity"]},
        "stages": {name: _stage(plan, Path(folder).resolve(), outdir, shard) for name, (plan, folder) in stages.items()},
        "extra": {"request": request_json, "runtime": runtime_json},
    })


def read_shard(folder: Path) -> ShardManifest:
    path = Path(folder) / SHARD_JSON
    if not path.is_file():
        hint = "it is still running or failed; rerun that shard with --resume" if Path(folder).is_dir() else "no such directory"
        raise InputError(f"{folder}: not a finished shard (no {SHARD_JSON}; {hint})")
    try:
        data = json.loads(path.read_text())
        shard = Shard(int(data["shard"]["index"]), int(data["shard"]["count"]))
        stages = {name: ShardStage(s["parts_dir"], int(s["records"]), int(s["part_size"]), int(s["parts_total"]),
                                   tuple(int(p) for p in s["parts"])) for name, s in data["stages"].items()}
        return ShardManifest(path, str(data["kind"]), shard, data["identity"], stages, data.get("extra", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: damaged shard manifest ({type(exc).__name__}: {exc}); rerun that shard with --force-resume") from None


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out.extend(_differences(a.get(key), b.get(key), f"{prefix}{key}."))
        return out
    return [] if a == b else [prefix.rstrip(".")]


def check_shards(folders: Sequence[Path]) -> list[ShardManifest]:
    """The shards of one job, in shard order; refuses missing, duplicated and mismatched ones."""
    if not folders:
        raise ConfigError("give the shard directories to aggregate, e.g. virnucpro aggregate shards/* -o OUT")
    shards = [read_shard(Path(f)) for f in folders]
    first = shards[0]
    for other in shards[1:]:
        fields = {"kind": (first.kind, other.kind), "shard count": (first.shard.count, other.shard.count)}
        diffs = [name for name, (x, y) in fields.items() if x != y]
        diffs += _differences(first.identity, other.identity)
        stage_shape = lambda m: {n: (s.records, s.part_size, s.parts_total) for n, s in m.stages.items()}  # noqa: E731
        if stage_shape(first) != stage_shape(other):
            diffs.append("records/part size")
        if diffs:
            raise InputError(f"{other.folder}: shard made with other settings than {first.folder} (differs: {', '.join(diffs[:4])}); "
                             "give the shards of one job")
    seen: dict[int, ShardManifest] = {}
    for manifest in shards:
        if manifest.shard.index in seen:
            raise InputError(f"{manifest.folder} and {seen[manifest.shard.index].folder} are both shard {manifest.shard}; give each shard once")
        seen[manifest.shard.index] = manifest
    missing = [f"{i}/{first.shard.count}" for i in range(first.shard.count) if i not in seen]
    if missing:
        raise InputError(f"shard(s) {', '.join(missing)} missing; give every shard of the job (run the missing array tasks first)")
    shards.sort(key=lambda m: m.shard.index)
    for name, stage in first.stages.items():
        owner: dict[int, ShardManifest] = {}
        for manifest in shards:
            for p in manifest.stages[name].parts:
                if p in owner:
                    raise InputError(f"{manifest.folder}: part {p} of {name} is also in {owner[p].folder}; give each shard once")
                owner[p] = manifest
                if not part_path(manifest.folder / manifest.stages[name].parts_dir, p).is_file():
                    raise InputError(f"{manifest.folder}: part {p} of {name} is missing; rerun that shard with --resume")
        absent = [p for p in range(stage.parts_total) if p not in owner]
        if absent:
            raise InputError(f"{name}: part(s) {absent[:5]} of {stage.parts_total} are in no shard; rerun the shard jobs with --resume")
    return shards


def aggregate_embed(shards: Sequence[ShardManifest], out: Path, fmt: Any) -> int:
    """The embeddings file a single ``embed`` would write, from the shards' parts."""
    from virnucpro_core.engine.parts import assemble
    from virnucpro_core.formats.hdf5 import Hdf5Reader

    stage = shards[0].stages["embed"]
    merged = out.with_name(f".{out.name}.aggregate-parts")
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir(parents=True)
    try:
        for manifest in shards:
            for p in manifest.stages["embed"].parts:
                (merged / part_path(merged, p).name).symlink_to(part_path(manifest.folder / manifest.stages["embed"].parts_dir, p).resolve())
        with Hdf5Reader(part_path(merged, 0)) as reader:
            meta = reader.meta
        if stage.parts_total == 0:
            raise InputError(f"{shards[0].folder}: the input had no records; nothing to aggregate")
        return assemble(merged, stage.parts_total, out, fmt, meta, stage.records)
    finally:
        shutil.rmtree(merged, ignore_errors=True)


def seed_predict_run(shards: Sequence[ShardManifest], outdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copy shard 0's run directory (prepared files, run.json) and every shard's parts into
    ``outdir``; return the request and runtime settings the shards ran with."""
    source = shards[0].folder
    ignore = shutil.ignore_patterns("checkpoints", SHARD_JSON, ".virnucpro.lock", ".*.part")
    shutil.copytree(source, outdir, ignore=ignore, dirs_exist_ok=True)
    for name in shards[0].stages:
        for manifest in shards:
            stage = manifest.stages[name]
            src_dir = manifest.folder / stage.parts_dir
            dst_dir = outdir / stage.parts_dir
            dst_dir.mkdir(parents=True, exist_ok=True)
            if not (dst_dir / "parts.json").exists():
                shutil.copy2(src_dir / "parts.json", dst_dir / "parts.json")
            for p in stage.parts:
                shutil.copy2(part_path(src_dir, p), part_path(dst_dir, p))
    extra = shards[0].extra
    return dict(extra["request"]), dict(extra["runtime"])
