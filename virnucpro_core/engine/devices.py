"""``--devices``, ``--gpus`` and ``--parallel``: which devices run the embedding workers.

Every device is checked before any work starts, and the device a part runs on is the
device named (the predecessor's ``--gpus 2,3`` ran on GPUs 0,1). The check is a pure
function of the request and the visible GPU count, so it is tested with a faked count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from virnucpro_core.errors import ConfigError

_CUDA = re.compile(r"cuda(?::(\d+))?")


@dataclass(frozen=True)
class DeviceRequest:
    """What the user asked for; at most one of the multi-device forms is set."""

    device: str = "auto"
    devices: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    parallel: bool = False

    def flag(self) -> str:
        if self.devices:
            return f"--devices {','.join(self.devices)}"
        if self.gpus:
            return f"--gpus {','.join(self.gpus)}"
        return "--parallel" if self.parallel else f"--device {self.device}"


def split_list(value: str | None) -> tuple[str, ...]:
    """``"cuda:0, cuda:1"`` → ``("cuda:0", "cuda:1")``; empty items are dropped."""
    if not value:
        return ()
    return tuple(item.strip().lower() for item in str(value).split(",") if item.strip())


def check_devices(request: DeviceRequest, cuda_available: bool, cuda_count: int) -> tuple[str, ...]:
    """The concrete devices, one per worker, or a :class:`ConfigError` naming the problem.

    CUDA devices may be named once each; ``cpu`` may repeat (each is one CPU worker).
    CPU and GPU workers are not mixed: the numbers of a part would depend on which
    device happened to take it.
    """
    given = [bool(request.devices), bool(request.gpus), request.parallel]
    if sum(given) > 1:
        raise ConfigError("give only one of --devices, --gpus and --parallel")
    if sum(given) and request.device not in ("auto", "", None):
        raise ConfigError(f"--device {request.device} and {request.flag()} contradict each other; give one")
    if request.parallel:
        if not cuda_available or cuda_count == 0:
            raise ConfigError("--parallel uses every visible GPU, but CUDA is not available here; "
                              "use --devices cpu,cpu for CPU workers or drop --parallel")
        return tuple(f"cuda:{i}" for i in range(cuda_count))
    if request.gpus:
        names = []
        for gpu in request.gpus:
            if not gpu.isdigit():
                raise ConfigError(f"--gpus {','.join(request.gpus)}: {gpu!r} is not a GPU number; e.g. --gpus 2,3")
            names.append(f"cuda:{int(gpu)}")
        wanted, flag = tuple(names), f"--gpus {','.join(request.gpus)}"
    elif request.devices:
        wanted, flag = request.devices, f"--devices {','.join(request.devices)}"
    else:
        return (_one(request.device, cuda_available, cuda_count, f"--device {request.device}"),)
    resolved = tuple(_one(name, cuda_available, cuda_count, flag, allow_auto=False) for name in wanted)
    seen: set[str] = set()
    for name in resolved:
        if name != "cpu" and name in seen:
            raise ConfigError(f"{flag}: {name} is named twice; name each GPU once (cpu may repeat)")
        seen.add(name)
    if "cpu" in seen and len(seen) > 1:
        raise ConfigError(f"{flag} mixes cpu and GPUs; results would depend on which device ran each part, so use one kind")
    return resolved


def _one(name: str, cuda_available: bool, cuda_count: int, flag: str, *, allow_auto: bool = True) -> str:
    name = (name or "auto").strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "auto" and allow_auto:
        return "cuda:0" if cuda_available and cuda_count > 0 else "cpu"
    match = _CUDA.fullmatch(name)
    if not match:
        forms = "auto, cpu, cuda or cuda:N" if allow_auto else "cpu or cuda:N"
        raise ConfigError(f"{flag}: {name!r} is not a device; use {forms}")
    if not cuda_available:
        hint = "--device cpu (or auto)" if allow_auto else "cpu workers, e.g. --devices cpu,cpu"
        raise ConfigError(f"{flag}: CUDA is not available on this machine; use {hint}")
    index = int(match.group(1) or 0)
    if index >= cuda_count:
        raise ConfigError(f"{flag}: {name} does not exist; this machine has {cuda_count} GPU(s), cuda:0..cuda:{cuda_count - 1}")
    return f"cuda:{index}"


def resolve_devices(request: DeviceRequest) -> tuple[str, ...]:
    """:func:`check_devices` against this machine. Counting GPUs does not create a CUDA
    context, so spawned workers are the first to initialise CUDA."""
    needs_torch = request.parallel or request.gpus or any(d not in ("cpu",) for d in (request.devices or (request.device,)))
    if not needs_torch:
        return check_devices(request, False, 0)
    import torch

    available = torch.cuda.is_available()
    return check_devices(request, available, torch.cuda.device_count() if available else 0)
