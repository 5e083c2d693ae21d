"""The engine's pure parts: device checks with a faked GPU count, shard and rank parsing, the resume hint."""

from __future__ import annotations

import pytest

from virnucpro_core.engine.config import DistContext, EngineConfig, Shard
from virnucpro_core.engine.devices import DeviceRequest, check_devices, split_list
from virnucpro_core.engine.distributed import context_from_env, rank_device
from virnucpro_core.engine.stop import RunInterrupted, interrupted_line, resume_command
from virnucpro_core.errors import ConfigError


def devices(cuda_count: int, **request) -> tuple[str, ...]:
    for key in ("devices", "gpus"):
        if key in request:
            request[key] = split_list(request[key])
    return check_devices(DeviceRequest(**request), cuda_count > 0, cuda_count)


def test_the_device_named_is_the_device_used():
    assert devices(4, gpus="2,3") == ("cuda:2", "cuda:3")
    assert devices(4, devices="cuda:3, cuda:1") == ("cuda:3", "cuda:1")
    assert devices(4, devices="cuda,cuda:2") == ("cuda:0", "cuda:2")
    assert devices(3, parallel=True) == ("cuda:0", "cuda:1", "cuda:2")
    assert devices(0, devices="cpu,cpu") == ("cpu", "cpu")
    assert devices(2, device="cuda:1") == ("cuda:1",)
    assert devices(0, device="auto") == ("cpu",) and devices(2, device="auto") == ("cuda:0",)


@pytest.mark.parametrize("request_, count, message", [
    (dict(gpus="2,4"), 4, r"^--gpus 2,4: cuda:4 does not exist; this machine has 4 GPU\(s\), cuda:0..cuda:3$"),
    (dict(devices="cuda:1,cuda:1"), 4, r"^--devices cuda:1,cuda:1: cuda:1 is named twice; name each GPU once \(cpu may repeat\)$"),
    (dict(gpus="1,1"), 2, r"cuda:1 is named twice"),
    (dict(devices="cuda:0,cuda:1"), 0, r"^--devices cuda:0,cuda:1: CUDA is not available on this machine; use cpu workers"),
    (dict(parallel=True), 0, r"^--parallel uses every visible GPU, but CUDA is not available here; use --devices cpu,cpu"),
    (dict(devices="cpu,cuda:0"), 1, r"mixes cpu and GPUs"),
    (dict(devices="gpu0,gpu1"), 2, r"'gpu0' is not a device; use cpu or cuda:N"),
    (dict(gpus="a"), 2, r"'a' is not a GPU number"),
    (dict(gpus="0", parallel=True), 2, r"^give only one of --devices, --gpus and --parallel$"),
    (dict(device="cuda:0", devices="cuda:1,cuda:2"), 4, r"^--device cuda:0 and --devices cuda:1,cuda:2 contradict each other"),
])
def test_every_device_is_checked_before_work_starts(request_, count, message):
    with pytest.raises(ConfigError, match=message):
        devices(count, **request_)


def test_runtime_config_reads_devices_from_toml_and_records_them(tmp_path):
    from virnucpro_core.runtime import RuntimeConfig

    config = tmp_path / "run.toml"
    config.write_text('[runtime]\ndevices = ["cpu", "cpu"]\nthreads = 1\n')
    runtime = RuntimeConfig.from_sources({}, config)
    assert runtime.devices == ("cpu", "cpu") and runtime.worker_devices() == ("cpu", "cpu")
    assert runtime.as_dict()["devices"] == ("cpu", "cpu")
    assert runtime.engine().devices == ("cpu", "cpu") and runtime.engine().worker_threads() == 1
    config.write_text('[runtime]\ndevices = 3\n')
    with pytest.raises(ConfigError, match="devices must be a list"):
        RuntimeConfig.from_sources({}, config)


def test_cpu_workers_share_the_cores_unless_threads_are_given(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert EngineConfig(devices=("cpu",) * 4).worker_threads() == 2
    assert EngineConfig(devices=("cpu",) * 4, threads=3).worker_threads() == 3
    assert EngineConfig(devices=("cuda:0", "cuda:1")).worker_threads() is None


def test_shards_are_parsed_and_split_parts_by_remainder():
    shard = Shard.parse("1/3")
    assert (shard.index, shard.count, str(shard)) == (1, 3, "1/3")
    assert [p for p in range(8) if EngineConfig(shard=shard).keeps(p)] == [1, 4, 7]
    for bad in ("3/3", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(ConfigError, match=r"--shard"):
            Shard.parse(bad)


def test_torchrun_environment_gives_rank_and_device():
    assert context_from_env({}) is None
    assert context_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    ctx = context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert ctx == DistContext(3, 4, 1) and not ctx.is_driver
    assert rank_device(ctx, "auto") == "cuda:1" and rank_device(ctx, "cpu") == "cpu"
    with pytest.raises(ConfigError, match="start the job with torchrun"):
        context_from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_the_resume_hint_is_the_users_own_command():
    argv = ["predict", "reads.fq", "-o", "res dir", "--force-resume"]
    assert resume_command(argv) == "virnucpro predict reads.fq -o 'res dir' --resume"
    assert resume_command(["embed", "x.fa", "--resume", "-o", "y.h5"]) == "virnucpro embed x.fa -o y.h5 --resume"
    exc = RunInterrupted(15).with_progress("14 of 40 parts done (esm2=v1)")
    assert exc.exit_code == 143 and RunInterrupted(2).exit_code == 130
    assert interrupted_line(exc, ["predict", "reads.fq", "-o", "res"]) == (
        "interrupted: 14 of 40 parts done (esm2=v1); continue with: virnucpro predict reads.fq -o res --resume")
