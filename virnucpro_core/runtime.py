"""How a run executes, as opposed to what it computes.

:class:`RuntimeConfig` holds devices, precision, batch budgets, threads and
checkpointing. (No data-loader ``workers`` setting: the v1 backends tokenise in-process,
and a setting that nothing reads is worse than none.) It is built from CLI flags over an optional TOML file (``--config``,
table ``[runtime]``), and it is recorded in the run manifest but *not* fingerprinted,
except for ``precision`` (which changes results): a run may resume on another device.
The batch settings are part of each unfinished embedding stage's checkpoint identity
(batches can change a row's last bits), so a resume with other batches is refused
rather than mixing two layouts in one file; finished stages are kept either way.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from virnucpro_core.backends import PRECISIONS, EmbedderOptions
from virnucpro_core.errors import ConfigError

if TYPE_CHECKING:
    from virnucpro_core.backends import Backend


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    #: several devices, one worker process each (``--devices``; TOML ``devices = ["cuda:0", "cuda:1"]``)
    devices: tuple[str, ...] = ()
    #: ``--gpus 2,3``, the same as ``devices = ["cuda:2", "cuda:3"]``
    gpus: tuple[str, ...] = ()
    #: ``--parallel``: every visible GPU
    parallel: bool = False
    precision: str | None = None  # None: each backend's default (Backend.default_precision)
    batch_tokens: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    checkpoint_every: int = 10_000
    resume: bool = False
    force_resume: bool = False
    backend_options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        from virnucpro_core.engine.devices import split_list

        for name in ("devices", "gpus"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = split_list(value)
            object.__setattr__(self, name, tuple(str(v).strip().lower() for v in (value or ())))
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        for name in ("batch_tokens", "batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be a positive number, got {value}")
        if self.checkpoint_every <= 0:
            raise ConfigError(f"checkpoint-every must be positive, got {self.checkpoint_every}")
        if self.resume and self.force_resume:
            raise ConfigError("--resume and --force-resume contradict each other; give one")

    @classmethod
    def from_sources(cls, cli_values: Mapping[str, Any], config_file: Path | None = None) -> "RuntimeConfig":
        """File values first, then every CLI value that was given (not ``None``)."""
        from virnucpro_core.backend_options import merge

        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(load_config_file(config_file))
        file_options = values.get("backend_options", ())
        values.update({k: v for k, v in cli_values.items() if v is not None})
        values["backend_options"] = merge(file_options, cli_values.get("backend_options") or ())
        return cls(**values)

    def precision_for(self, backend: "Backend", device: str) -> str:
        """The precision ``backend`` runs in on ``device``: the one asked for, else its default."""
        return self.precision or backend.default_precision(device)

    def embedder_options(self, model: str | None, *, backend: "Backend | None" = None, modality: str | None = None,
                         revision: str | None = None, max_length: int | None = None,
                         show_progress: bool = False) -> EmbedderOptions:
        """Options for one backend. With ``modality`` (the pipeline), ``batch_tokens`` goes to
        the protein backend only and ``batch_size`` to the nucleotide one, as the flags say;
        without it (``virnucpro embed``, one backend) both go to the backend asked for.
        Without a precision given, ``backend``'s default for the device is used (fp32 without a backend).
        ``extra`` holds the ``--backend-option``s routed to ``backend`` (:mod:`virnucpro_core.backend_options`)."""
        from virnucpro_core.backend_options import options_for

        device = self.worker_devices()[0]
        return EmbedderOptions(
            model=model,
            device=device,
            precision=self.precision_for(backend, device) if backend is not None else (self.precision or "fp32"),
            batch_tokens=self.batch_tokens if modality in (None, "protein") else None,
            batch_size=self.batch_size if modality in (None, "nucleotide") else None,
            revision=revision,
            max_length=max_length,
            show_progress=show_progress,
            extra=options_for(backend, self.backend_options) if backend is not None else
            {name: value for name, value in self.backend_options if ":" not in name},
        )

    def device_request(self):
        from virnucpro_core.engine.devices import DeviceRequest

        return DeviceRequest(device=(self.device or "auto").strip().lower(), devices=self.devices, gpus=self.gpus,
                             parallel=self.parallel)

    def worker_devices(self) -> tuple[str, ...]:
        """The checked devices, one per worker; under torchrun this rank's one device."""
        from virnucpro_core.engine.devices import DeviceRequest, resolve_devices
        from virnucpro_core.engine.distributed import context_from_env, rank_device

        dist = context_from_env()
        if dist is not None:
            if self.devices or self.gpus or self.parallel:
                raise ConfigError("under torchrun each rank uses one device (cuda:LOCAL_RANK, or --device cpu); "
                                  "drop --devices/--gpus/--parallel")
            device = "cpu" if (self.device or "").strip().lower() == "cpu" else "cuda"
            return resolve_devices(DeviceRequest(device=rank_device(dist, device)))
        return resolve_devices(self.device_request())

    def engine(self, *, shard=None, log_level: int | None = None):
        """The :class:`~virnucpro_core.engine.config.EngineConfig` of this run."""
        import logging

        from virnucpro_core.engine.config import EngineConfig
        from virnucpro_core.engine.distributed import context_from_env

        return EngineConfig(devices=self.worker_devices(), threads=self.threads, shard=shard, dist=context_from_env(),
                            log_level=logging.WARNING if log_level is None else log_level)

    def apply_threads(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read ``[runtime]`` from a TOML file; unknown keys are an error, not silence."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("runtime", {})
    known = {f.name for f in dataclasses.fields(RuntimeConfig)} - {"resume", "force_resume"}
    if "devices" in table and not isinstance(table["devices"], (list, str)):
        raise ConfigError(f"{path}: [runtime] devices must be a list such as [\"cuda:0\", \"cuda:1\"]")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown [runtime] key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {k.replace("-", "_"): v for k, v in table.items()}
    if "backend_options" in values:
        from virnucpro_core.backend_options import from_config

        values["backend_options"] = from_config(values["backend_options"], str(path))
    return values
