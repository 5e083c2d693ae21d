"""The one seam through which backends and the engine touch a CUDA device.

Backends run their models on ``cpu`` or ``cuda:N``; everything that differs on a GPU
goes through these functions: binding a device, where a device's tensors live,
host-to-device and device-to-host copies (pinned, non-blocking, ordered by an event
on **the tensor's own device's** stream), free memory, cache release, and the varlen
attention kernels (flash-attn's ``flash_attn_varlen_func`` and torch's
``varlen_attn``), whose availability is decided by importing them, never by
``find_spec`` alone: a flash-attn built for another torch or CUDA is installed but
does not import, and must read as "unavailable" with its reason.

Keeping device calls here (as Lightning's accelerators and accelerate do) is what lets
:mod:`virnucpro_core.testing.simcuda` run every CUDA-only branch in CI on a CPU: it
patches ``torch.cuda`` and the four functions marked *simulated* below, and the rest
of this module runs as written. Backend code must therefore never call
``tensor.to("cuda:N")``, ``pin_memory()`` or ``torch.cuda.Event().record()``
directly; under the simulator such a call fails loudly (no CUDA in a CPU build) or
reads poisoned values, which is the point.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


def _torch():
    import torch

    return torch


def is_cuda(device: Any) -> bool:
    """Whether ``device`` (a string or ``torch.device``) names a CUDA device."""
    return str(device).startswith("cuda")


def cuda_device(device: Any):
    """``"cuda"`` → ``torch.device("cuda:0")``; ``cuda:N`` kept; anything else as given."""
    torch = _torch()
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", 0)
    return dev


# -- simulated: where a device's tensors live, and the copy to the host -------------------


def storage_device(device: Any):
    """The ``torch.device`` that tensors *on* ``device`` are allocated on (*simulated*: the CPU)."""
    return cuda_device(device)


def _copy_to_host(dst, src, device) -> None:
    """Enqueue ``dst.copy_(src)`` (device → pinned host) on ``device``'s current stream (*simulated*)."""
    dst.copy_(src, non_blocking=True)


def pinned_empty(shape, dtype):
    """An uninitialised page-locked host tensor (*simulated*: ordinary memory)."""
    torch = _torch()
    return torch.empty(shape, dtype=dtype, pin_memory=True)


def pin(tensor):
    """``tensor`` in page-locked memory, so a non-blocking copy to a device is truly asynchronous
    (*simulated*: returned as it is). Call it only for a batch bound for a CUDA device."""
    return tensor.pin_memory()


# -- real everywhere (the simulator patches torch.cuda beneath them) ----------------------


def bind(device: Any) -> None:
    """Make ``device`` the current CUDA device of this process (no-op for the CPU).

    Without it, anything allocated or recorded without an explicit device (events,
    streams, cuBLAS handles, ``torch.cuda.mem_get_info()``) lands on ``cuda:0``,
    while the model runs on the device the user named.
    """
    if is_cuda(device):
        _torch().cuda.set_device(cuda_device(device))


def to_device(tensor, device, *, dtype=None, non_blocking: bool = False):
    """``tensor`` on ``device`` (optionally cast), without a host synchronisation when pinned."""
    return tensor.to(device=storage_device(device), dtype=dtype, non_blocking=non_blocking)


def move_module(module, device):
    """A ``torch.nn.Module`` moved to ``device`` (returns it, as ``Module.to`` does)."""
    return module.to(storage_device(device))


@dataclass
class HostRows:
    """Rows on their way from a device to pinned host memory; :meth:`wait` before reading."""

    host: Any
    event: Any = None

    def wait(self):
        """The rows as a host tensor, once the copy has landed."""
        if self.event is not None:
            self.event.synchronize()
            self.event = None
        return self.host


def rows_to_host(rows, device) -> HostRows:
    """Start copying float32 ``rows`` of ``device`` to the host; returns at once on CUDA.

    The copy is enqueued on ``device``'s current stream and the event is recorded on
    **that same stream** (``torch.cuda.Event().record()`` alone records on the
    *current* device's stream, which on ``cuda:1`` in a process bound to ``cuda:0``
    waits for nothing and lets the host read the buffer before the copy lands).
    """
    torch = _torch()
    if not is_cuda(device):
        return HostRows(rows.float())
    dev = cuda_device(device)
    host = pinned_empty(tuple(rows.shape), torch.float32)
    _copy_to_host(host, rows, dev)
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(dev))
    return HostRows(host, event)


def synchronize(device) -> None:
    """Wait for everything queued on ``device`` (no-op for the CPU)."""
    if is_cuda(device):
        _torch().cuda.synchronize(cuda_device(device))


def memory_info(device) -> tuple[int, int]:
    """``(free, total)`` bytes of **this** device (not the current one)."""
    return _torch().cuda.mem_get_info(cuda_device(device))


def device_name(device) -> str:
    """A human name for logs: the GPU model, or ``cpu``."""
    if not is_cuda(device):
        return "cpu"
    return _torch().cuda.get_device_properties(cuda_device(device)).name


def release_cache(device) -> None:
    """Return cached blocks of ``device`` to the driver (after an OOM, or when closing)."""
    if is_cuda(device):
        torch = _torch()
        with torch.cuda.device(cuda_device(device)):
            torch.cuda.empty_cache()


def out_of_memory_error() -> type[BaseException]:
    """The exception a device raises when an allocation does not fit."""
    return _torch().cuda.OutOfMemoryError


# -- attention kernels -------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def flash_attn_varlen() -> tuple[Callable | None, str | None]:
    """``(flash_attn_varlen_func, None)``, or ``(None, why it cannot be used)``.

    Imports flash-attn for real: an installed flash-attn whose compiled extension does
    not load (built for another torch or CUDA, a common state on clusters) is reported
    as unavailable with the import error, so ``auto`` falls back instead of crashing.
    """
    try:
        module = importlib.import_module("flash_attn")
        func = module.flash_attn_varlen_func
    except ModuleNotFoundError as exc:
        if exc.name == "flash_attn":
            return None, "flash-attn is not installed"
        return None, f"flash-attn is installed but does not import ({_first_line(exc)})"
    except Exception as exc:  # ImportError: undefined symbol ..., OSError: libcudart ..., RuntimeError
        return None, f"flash-attn is installed but does not import ({_first_line(exc)})"
    return func, None


@dataclass(frozen=True)
class TorchVarlen:
    """torch's ``varlen_attn`` and whether it takes ``scale`` (torch 2.11+, keyword-only; 2.10 has none)."""

    func: Callable
    takes_scale: bool

    def __call__(self, q, k, v, cu_seqlens, max_seqlen: int, scale: float):
        if self.takes_scale:
            return self.func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, scale=scale)
        if not math.isclose(scale, q.shape[-1] ** -0.5, rel_tol=1e-12):
            raise ValueError(f"this torch's varlen_attn has no scale argument and {scale} is not 1/sqrt(head_dim)")
        return self.func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)


def torch_varlen() -> tuple[TorchVarlen | None, str | None]:
    """``(TorchVarlen, None)``, or ``(None, why this torch has none)``; looked up at call time."""
    torch = _torch()
    try:
        module = importlib.import_module("torch.nn.attention.varlen")
        func = module.varlen_attn
    except Exception as exc:
        return None, f"torch {torch.__version__} has no torch.nn.attention.varlen ({_first_line(exc)})"
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    scale = params.get("scale")
    return TorchVarlen(func, scale is not None and scale.kind in (scale.KEYWORD_ONLY, scale.POSITIONAL_OR_KEYWORD)), None
