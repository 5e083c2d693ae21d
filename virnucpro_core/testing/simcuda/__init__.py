"""A simulated CUDA runtime: N fake GPUs whose tensors live on the CPU, for CI.

A GPU is lent to this project rarely and briefly, so every CUDA-only branch of the
core and of the backends must already have run before one comes. Installed in a
process, the simulator makes ``torch.cuda`` tell a consistent story of N devices
(``is_available``, ``device_count``, ``set_device``, ``current_device``,
``mem_get_info``, ``get_device_properties``, ``synchronize``, ``empty_cache``,
``device``, ``Stream``, ``Event``, ``current_stream``, ``stream``) and replaces the
*simulated* functions of :mod:`virnucpro_core.accel` (where a device's tensors live,
pinning, the device-to-host copy). Everything else runs as written.

It is strict where real GPUs are unforgiving and a CPU would hide a bug:

- **ordering**: a non-blocking device-to-host copy is queued on the current stream of
  the device it copies from, and its destination is filled with NaN until an event
  recorded on *that device's* stream after the copy is synchronised, or that stream
  or device is; reading it earlier reads poison, as a real GPU would give garbage;
- **kernels**: flash-attn's ``flash_attn_varlen_func`` and torch's ``varlen_attn``
  (as of torch 2.10, without ``scale``, or 2.11+) are replaced by contract checkers
  (:mod:`~virnucpro_core.testing.simcuda.kernels`) that refuse what the real kernels
  refuse, then compute the exact result (fp32 SDPA) in the input dtype;
- **memory**: ``oom_above_tokens`` makes a varlen kernel over more query tokens raise
  ``torch.cuda.OutOfMemoryError``; ``mem_get_info`` reports each device's own memory;
- **flash-attn states**: absent, importable (the checker), or installed but broken
  (its import raises, as a build for another torch does).

Use it three ways: :func:`install` in a process (tests), the ``simcuda`` pytest
fixture (:mod:`virnucpro_core.testing.simcuda.fixture`), or the launcher
``python -m virnucpro_core.testing.simcuda --devices 2 -- virnucpro embed ...``.
The fixture and the launcher export :data:`ENV` and put a ``sitecustomize`` on
``PYTHONPATH``, so every Python process the command starts (spawned workers,
torchrun ranks) is simulated the same way.

What it cannot check: whether a tensor handed to a kernel was really moved to the
device (all tensors are CPU tensors here), and kernel speed. Those are for the real
GPU check (``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The environment variable that carries a :class:`SimConfig` (JSON) to child processes.
ENV = "VIRNUCPRO_SIMCUDA"
#: The folder holding the ``sitecustomize.py`` that installs the simulator at start-up.
SITE_DIR = Path(__file__).resolve().parent / "site"
TORCH_VARLEN_APIS = ("2.10", "2.11", "absent")
FLASH_ATTN_STATES = ("absent", "ok", "broken")
GIB = 1 << 30


@dataclass(frozen=True)
class SimConfig:
    """What the simulated machine looks like."""

    #: how many devices (``cuda:0`` .. ``cuda:N-1``)
    devices: int = 2
    #: total memory of each device, GiB (one value for all, or one per device)
    memory_gib: tuple[float, ...] = (80.0,)
    #: memory already taken on each device before the process starts (other processes, the context)
    used_gib: float = 0.5
    #: a varlen kernel over more query tokens than this raises torch.cuda.OutOfMemoryError (0: never)
    oom_above_tokens: int = 0
    #: the ``torch.nn.attention.varlen.varlen_attn`` to simulate: 2.10 (no scale), 2.11 (scale keyword-only), absent
    torch_varlen: str = "2.11"
    #: flash-attn: absent, ok (importable; the contract checker), broken (installed, import fails)
    flash_attn: str = "absent"
    #: the name ``get_device_properties`` reports
    name: str = "Simulated CUDA device (virnucpro simcuda)"

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("simcuda: at least one device")
        if self.torch_varlen not in TORCH_VARLEN_APIS:
            raise ValueError(f"simcuda: torch_varlen must be one of {TORCH_VARLEN_APIS}")
        if self.flash_attn not in FLASH_ATTN_STATES:
            raise ValueError(f"simcuda: flash_attn must be one of {FLASH_ATTN_STATES}")
        if len(self.memory_gib) not in (1, self.devices):
            raise ValueError("simcuda: give one memory size, or one per device")

    def total_memory(self, index: int) -> int:
        sizes = self.memory_gib if len(self.memory_gib) > 1 else self.memory_gib * self.devices
        return int(sizes[index] * GIB)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SimConfig":
        data = json.loads(text)
        data["memory_gib"] = tuple(data.get("memory_gib", (80.0,)))
        return cls(**data)


# -- streams, events and the queued copies -----------------------------------------------


class _Stream:
    """A simulated ``torch.cuda.Stream``: an ordered queue of copies that land when synchronised."""

    def __init__(self, device: Any = None, priority: int = 0, **_ignored: Any) -> None:
        self.device_index = device if isinstance(device, int) else _require().index(device)
        self.queue: list[tuple[int, Any, Any]] = []  # (sequence number, destination, source snapshot)
        self.issued = 0
        self.done = 0
        self.lock = threading.Lock()

    @property
    def device(self):
        import torch

        return torch.device("cuda", self.device_index)

    def enqueue_copy(self, dst, src) -> None:
        with self.lock:
            self.issued += 1
            self.queue.append((self.issued, dst, src.detach().clone()))

    def complete(self, upto: int | None = None) -> None:
        with self.lock:
            upto = self.issued if upto is None else upto
            keep = []
            for seq, dst, src in self.queue:
                if seq <= upto:
                    dst.copy_(src)
                else:
                    keep.append((seq, dst, src))
            self.queue = keep
            self.done = max(self.done, upto)

    # the torch.cuda.Stream API the project uses
    def synchronize(self) -> None:
        self.complete()

    def query(self) -> bool:
        return not self.queue

    def wait_event(self, event: "_Event") -> None:
        event.synchronize()

    def wait_stream(self, stream: "_Stream") -> None:
        stream.synchronize()

    def record_event(self, event: "_Event | None" = None) -> "_Event":
        event = event or _Event()
        event.record(self)
        return event

    def __repr__(self) -> str:
        return f"<simcuda stream on cuda:{self.device_index}>"


class _Event:
    """A simulated ``torch.cuda.Event``: waits only for what was queued on its own stream."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> None:
        self.stream: _Stream | None = None
        self.mark = 0

    def record(self, stream: _Stream | None = None) -> None:
        sim = _require()
        self.stream = stream if stream is not None else sim.current_stream(None)
        if not isinstance(self.stream, _Stream):
            raise TypeError(f"simcuda: Event.record got {self.stream!r}, not a stream of the simulated device")
        self.mark = self.stream.issued

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.complete(self.mark)

    def wait(self, stream: _Stream | None = None) -> None:
        self.synchronize()

    def query(self) -> bool:
        self.synchronize()
        return True

    def elapsed_time(self, other: "_Event") -> float:
        return 0.0


@dataclass
class _DeviceProperties:
    name: str
    total_memory: int
    major: int = 9
    minor: int = 0
    multi_processor_count: int = 132


@dataclass
class Simulator:
    """The state of the simulated runtime in this process."""

    config: SimConfig
    current: int = 0
    streams: dict[int, _Stream] = field(default_factory=dict)
    current_streams: dict[int, _Stream] = field(default_factory=dict)
    set_device_calls: list[int] = field(default_factory=list)
    kernel_calls: list[str] = field(default_factory=list)
    saved: list[tuple[Any, str, Any]] = field(default_factory=list)

    def index(self, device: Any) -> int:
        """``None`` → the current device; ``int``, ``"cuda:N"``, ``torch.device`` → N (checked)."""
        import torch

        if device is None:
            return self.current
        if isinstance(device, int):
            index = device
        else:
            dev = torch.device(device)
            if dev.type != "cuda":
                raise ValueError(f"simcuda: expected a CUDA device, got {device!r}")
            index = self.current if dev.index is None else dev.index
        if not 0 <= index < self.config.devices:
            raise RuntimeError(f"CUDA error: invalid device ordinal (simcuda has {self.config.devices} devices, asked for {index})")
        return index

    def default_stream(self, index: int) -> _Stream:
        if index not in self.streams:
            self.streams[index] = _Stream(index)
        return self.streams[index]

    def current_stream(self, device: Any = None) -> _Stream:
        index = self.index(device)
        return self.current_streams.get(index) or self.default_stream(index)

    def synchronize(self, device: Any = None) -> None:
        index = self.index(device)
        for stream in [self.default_stream(index), *self.current_streams.values()]:
            if stream.device_index == index:
                stream.complete()

    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        index = self.index(device)
        total = self.config.total_memory(index)
        return max(0, total - int(self.config.used_gib * GIB)), total

    def set_device(self, device: Any) -> None:
        index = self.index(device)
        self.set_device_calls.append(index)
        self.current = index

    # -- accel's simulated functions --------------------------------------------------------

    def storage_device(self, device: Any):
        import torch

        dev = torch.device(device)
        if dev.type == "cuda":
            self.index(dev)  # an unknown ordinal fails as it would on the real runtime
            return torch.device("cpu")
        return dev

    def copy_to_host(self, dst, src, device) -> None:
        index = self.index(device)
        if dst.is_floating_point():
            dst.fill_(float("nan"))
        else:
            dst.fill_(-1)
        self.current_stream(index).enqueue_copy(dst, src)


_ACTIVE: Simulator | None = None


def active() -> Simulator | None:
    """The simulator installed in this process, if any."""
    return _ACTIVE


def _require() -> Simulator:
    if _ACTIVE is None:
        raise RuntimeError("simcuda is not installed in this process")
    return _ACTIVE


class _device:
    """``torch.cuda.device(d)``: a context manager that makes ``d`` current for its body."""

    def __init__(self, device: Any) -> None:
        self.index = None if device is None or (isinstance(device, int) and device < 0) else _require().index(device)
        self.previous: int | None = None

    def __enter__(self):
        sim = _require()
        self.previous = sim.current
        if self.index is not None:
            sim.current = self.index
        return self

    def __exit__(self, *exc) -> None:
        _require().current = self.previous


@contextlib.contextmanager
def _stream_context(stream: _Stream | None):
    sim = _require()
    if stream is None:
        yield
        return
    previous = sim.current_streams.get(stream.device_index)
    previous_device = sim.current
    sim.current_streams[stream.device_index] = stream
    sim.current = stream.device_index
    try:
        yield
    finally:
        sim.current = previous_device
        if previous is None:
            sim.current_streams.pop(stream.device_index, None)
        else:
            sim.current_streams[stream.device_index] = previous


# -- flash-attn module states ------------------------------------------------------------


class _BrokenFlashAttn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """flash-attn installed for another torch: found by ``find_spec``, fails when imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "flash_attn" or fullname.startswith("flash_attn."):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError("/site-packages/flash_attn_2_cuda.cpython-312-x86_64-linux-gnu.so: undefined symbol: "
                          "_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE "
                          "(simcuda: flash-attn built for another torch)")


def _flash_module():
    from virnucpro_core.testing.simcuda import kernels

    module = types.ModuleType("flash_attn")
    module.__version__ = "2.8.3"
    module.flash_attn_varlen_func = kernels.flash_attn_varlen_func
    module.__file__ = "<simcuda flash_attn>"
    module.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None, origin=module.__file__)  # find_spec() answers
    return module


# -- installing ------------------------------------------------------------------------------


def _patch(owner: Any, name: str, value: Any, sim: Simulator) -> None:
    sim.saved.append((owner, name, getattr(owner, name, _MISSING)))
    setattr(owner, name, value)


_MISSING = object()


def install(config: SimConfig) -> Simulator:
    """Simulate ``config`` in this process (idempotent for the same config); returns the state."""
    global _ACTIVE
    import torch
    import torch.nn.attention.varlen as torch_varlen_module

    from virnucpro_core import accel
    from virnucpro_core.testing.simcuda import kernels

    if _ACTIVE is not None:
        if _ACTIVE.config == config:
            return _ACTIVE
        uninstall()
    sim = Simulator(config)
    cuda = torch.cuda
    patches = {
        "is_available": lambda: True,
        "device_count": lambda: config.devices,
        "set_device": sim.set_device,
        "current_device": lambda: sim.current,
        "mem_get_info": sim.mem_get_info,
        "get_device_properties": lambda device=None: _DeviceProperties(config.name, config.total_memory(sim.index(device))),
        "get_device_name": lambda device=None: config.name,
        "get_device_capability": lambda device=None: (9, 0),
        "is_bf16_supported": lambda *a, **k: True,
        "synchronize": sim.synchronize,
        "empty_cache": lambda: None,
        "memory_allocated": lambda device=None: 0,
        "max_memory_allocated": lambda device=None: 0,
        "reset_peak_memory_stats": lambda device=None: None,
        "device": _device,
        "Stream": _Stream,
        "Event": _Event,
        "current_stream": sim.current_stream,
        "default_stream": lambda device=None: sim.default_stream(sim.index(device)),
        "stream": _stream_context,
        # torch.manual_seed also seeds CUDA's generators when CUDA is available: there are none here
        "manual_seed": lambda seed: None,
        "manual_seed_all": lambda seed: None,
        "init": lambda: None,
    }
    for name, value in patches.items():
        _patch(cuda, name, value, sim)
    _patch(accel, "storage_device", sim.storage_device, sim)
    _patch(accel, "_copy_to_host", sim.copy_to_host, sim)
    _patch(accel, "pinned_empty", lambda shape, dtype: torch.empty(shape, dtype=dtype), sim)
    _patch(accel, "pin", lambda tensor: tensor, sim)
    if config.torch_varlen == "absent":
        _patch(torch_varlen_module, "varlen_attn", _MISSING, sim)
        delattr(torch_varlen_module, "varlen_attn")
    else:
        checker = kernels.torch_varlen_attn_2_10 if config.torch_varlen == "2.10" else kernels.torch_varlen_attn_2_11
        _patch(torch_varlen_module, "varlen_attn", checker, sim)
    _install_flash(config.flash_attn, sim)
    _ACTIVE = sim
    return sim


def _install_flash(state: str, sim: Simulator) -> None:
    saved = {name: module for name, module in sys.modules.items() if name == "flash_attn" or name.startswith("flash_attn.")}
    for name in saved:
        del sys.modules[name]
    sim.saved.append((sys.modules, "__flash_attn__", saved))
    if state == "ok":
        sys.modules["flash_attn"] = _flash_module()
    elif state == "broken":
        finder = _BrokenFlashAttn()
        sys.meta_path.insert(0, finder)
        sim.saved.append((sys.meta_path, "__finder__", finder))
    else:  # absent: even where a real flash-attn is installed, it is not found
        sys.modules["flash_attn"] = None  # import raises ModuleNotFoundError


def uninstall() -> None:
    """Undo :func:`install` (the fixture calls it after each test)."""
    global _ACTIVE
    sim = _ACTIVE
    if sim is None:
        return
    for owner, name, value in reversed(sim.saved):
        if name == "__flash_attn__":
            for key in [k for k in sys.modules if k == "flash_attn" or k.startswith("flash_attn.")]:
                del sys.modules[key]
            sys.modules.update(value)
        elif name == "__finder__":
            if value in sys.meta_path:
                sys.meta_path.remove(value)
        elif value is _MISSING:
            if hasattr(owner, name):
                delattr(owner, name)
        else:
            setattr(owner, name, value)
    _ACTIVE = None


def child_environment(config: SimConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) plus what makes every Python child simulate ``config``."""
    env = dict(os.environ if environ is None else environ)
    env[ENV] = config.to_json()
    paths = [str(SITE_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SITE_DIR)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def install_from_env() -> Simulator | None:
    """Install the simulator if :data:`ENV` is set (called by the ``sitecustomize`` at start-up)."""
    text = os.environ.get(ENV)
    if not text:
        return None
    return install(SimConfig.from_json(text))
