"""Resolve ``--device`` to a concrete torch device string.

``--gpus 2,3`` running on GPUs 0,1 was one of the predecessor's bugs: a device the user
names is the device that runs, or the run stops with a message. The multi-device forms
live in :mod:`virnucpro_core.engine.devices`; this is their one-device case.
"""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda:0`` when CUDA is usable, else ``cpu``; ``cuda`` → ``cuda:0``;
    ``cuda:N`` is checked against the GPUs present."""
    from virnucpro_core.engine.devices import DeviceRequest, resolve_devices

    return resolve_devices(DeviceRequest(device=(device or "auto").strip().lower()))[0]
