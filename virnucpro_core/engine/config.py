"""What the engine is told: devices, threads per worker, this job's shard, torchrun rank."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from virnucpro_core.errors import ConfigError


@dataclass(frozen=True)
class Shard:
    """``--shard i/N`` (0-based): this job computes the parts ``p`` with ``p % N == i``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard {self.index}/{self.count}: use i/N with 0 <= i < N, e.g. --shard 0/4")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match:
            raise ConfigError(f"--shard {text!r}: use i/N (0-based), e.g. --shard 0/4 for the first of 4 array jobs")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job (from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_driver(self) -> bool:
        """Rank 0 prepares, assembles, classifies and reports; the others only embed."""
        return self.rank == 0


@dataclass(frozen=True)
class EngineConfig:
    """Where the parts of one embedding run are computed.

    One device: in this process. Several: one spawned worker per device. ``dist``:
    this torchrun rank's share. ``shard``: only this array job's share, not assembled.
    ``threads`` is per process (``None``: torch's default, or for several CPU workers
    the cores divided among them).
    """

    devices: tuple[str, ...] = ("cpu",)
    threads: int | None = None
    shard: Shard | None = None
    dist: DistContext | None = None
    log_level: int = logging.WARNING

    def keeps(self, part: int) -> bool:
        """Whether this job computes part ``part`` at all (shards; ranks split it further)."""
        return self.shard is None or part % self.shard.count == self.shard.index

    def worker_threads(self) -> int | None:
        if self.threads or len(self.devices) < 2 or self.devices[0] != "cpu":
            return self.threads
        import os

        return max(1, (os.cpu_count() or 1) // len(self.devices))
