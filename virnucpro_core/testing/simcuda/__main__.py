"""``python -m virnucpro_core.testing.simcuda [options] -- COMMAND ...``: run COMMAND on simulated GPUs.

Every Python process COMMAND starts (the ``virnucpro`` CLI, its spawned workers,
torchrun and its ranks) sees the same simulated devices. The exit code is COMMAND's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from virnucpro_core.testing.simcuda import FLASH_ATTN_STATES, TORCH_VARLEN_APIS, SimConfig, child_environment


def parse(argv: list[str]) -> tuple[SimConfig, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m virnucpro_core.testing.simcuda",
        description="Run a command with N simulated CUDA devices whose tensors live on the CPU (for tests without a GPU).",
        epilog="example: python -m virnucpro_core.testing.simcuda --devices 2 -- virnucpro embed p.faa --backend esm2=v2 "
               "--device cuda:1 --precision fp16 -o p.h5")
    parser.add_argument("--devices", type=int, default=2, help="number of simulated GPUs (default 2)")
    parser.add_argument("--memory-gib", default="80", help="memory per device in GiB, one value or one per device: 24 or 24,16")
    parser.add_argument("--used-gib", type=float, default=0.5, help="memory already taken on each device (default 0.5)")
    parser.add_argument("--oom-above-tokens", type=int, default=0,
                        help="a varlen attention call over more tokens raises torch.cuda.OutOfMemoryError (default: never)")
    parser.add_argument("--torch-varlen", choices=TORCH_VARLEN_APIS, default="2.11",
                        help="which torch varlen_attn API to simulate (2.10 has no scale argument)")
    parser.add_argument("--flash-attn", choices=FLASH_ATTN_STATES, default="absent",
                        help="flash-attn absent, importable (a checked stand-in), or installed but broken")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    try:
        memory = tuple(float(x) for x in args.memory_gib.split(","))
        config = SimConfig(devices=args.devices, memory_gib=memory, used_gib=args.used_gib,
                           oom_above_tokens=args.oom_above_tokens, torch_varlen=args.torch_varlen, flash_attn=args.flash_attn)
    except ValueError as exc:
        parser.error(str(exc))
    return config, command


def main(argv: list[str] | None = None) -> int:
    config, command = parse(sys.argv[1:] if argv is None else argv)
    try:
        return subprocess.call(command, env=child_environment(config, dict(os.environ)))
    except FileNotFoundError:
        print(f"simcuda: {command[0]}: command not found", file=sys.stderr)
        return 127
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
