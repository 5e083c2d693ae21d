"""Resolve ``--device`` to a concrete torch device string.

``--gpus 2,3`` running on GPUs 0,1 was one of the predecessor's bugs: a device the user
names is the device that runs, or the run stops with a message.
"""

from __future__ import annotations

import re

from virnucpro_core.errors import ConfigError


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda:0`` when CUDA is usable, else ``cpu``; ``cuda`` → ``cuda:0``;
    ``cuda:N`` is checked against the GPUs present."""
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return "cpu"
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise ConfigError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu (or auto)")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"--device {device}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}")
    return f"cuda:{index}"
