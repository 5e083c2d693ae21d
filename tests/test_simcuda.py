"""The simulated CUDA runtime (``virnucpro_core.testing.simcuda``) and the device seam it replaces
(``virnucpro_core.accel``): the story ``torch.cuda`` tells, strict stream/event ordering, the kernels'
contracts, the flash-attn states, and that every child process is simulated the same way."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from virnucpro_core import accel
from virnucpro_core.testing.simcuda import GIB, kernels
from virnucpro_core.testing.simcuda.kernels import KernelContractError


def test_torch_cuda_tells_one_consistent_story_of_n_devices(simcuda):
    sim = simcuda(devices=2, memory_gib=(24, 16), used_gib=1)
    assert torch.cuda.is_available() and torch.cuda.device_count() == 2
    assert torch.cuda.current_device() == 0
    torch.cuda.set_device("cuda:1")
    assert torch.cuda.current_device() == 1 and sim.set_device_calls == [1]
    assert torch.cuda.mem_get_info() == (15 * GIB, 16 * GIB)  # the current device's
    assert torch.cuda.mem_get_info(0) == (23 * GIB, 24 * GIB)
    assert torch.cuda.get_device_properties("cuda:0").total_memory == 24 * GIB
    with torch.cuda.device(0):
        assert torch.cuda.current_device() == 0
    assert torch.cuda.current_device() == 1
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        torch.cuda.set_device(2)
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        accel.storage_device("cuda:5")
    assert accel.storage_device("cuda:1") == torch.device("cpu")  # tensors really live on the CPU


def test_a_copy_lands_only_when_an_event_on_its_own_devices_stream_is_synchronised(simcuda):
    simcuda(devices=2)
    src = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    host = accel.pinned_empty((3, 4), torch.float32)
    accel._copy_to_host(host, src, torch.device("cuda:1"))
    assert torch.isnan(host).all()  # in flight: reading now reads poison
    on_current = torch.cuda.Event()
    on_current.record()  # the current device is cuda:0: this event waits for nothing on cuda:1
    on_current.synchronize()
    torch.cuda.synchronize(0)
    assert torch.isnan(host).all()
    on_its_stream = torch.cuda.Event()
    on_its_stream.record(torch.cuda.current_stream("cuda:1"))
    on_its_stream.synchronize()
    assert torch.equal(host, src)


def test_an_event_recorded_before_the_copy_does_not_wait_for_it_but_a_device_synchronize_does(simcuda):
    simcuda(devices=2)
    early = torch.cuda.Event()
    early.record(torch.cuda.current_stream(1))
    host = accel.pinned_empty((2,), torch.float32)
    accel._copy_to_host(host, torch.ones(2), "cuda:1")
    early.synchronize()
    assert torch.isnan(host).all()
    torch.cuda.synchronize(1)
    assert torch.equal(host, torch.ones(2))


def test_rows_to_host_orders_the_copy_on_the_rows_own_device_while_another_is_current(simcuda):
    simcuda(devices=2)
    assert torch.cuda.current_device() == 0
    rows = torch.randn(5, 8)
    pending = accel.rows_to_host(rows, "cuda:1")
    assert torch.isnan(pending.host).all()
    assert torch.equal(pending.wait(), rows)
    assert torch.equal(accel.rows_to_host(rows, "cpu").wait(), rows)


def _packed(lengths, heads=2, head_dim=8, dtype=torch.float16, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q, k, v = (torch.randn(total, heads, head_dim, generator=g).to(dtype) for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return q, k, v, cu, max(lengths)


def _reference(q, k, v, cu, scale, slopes=None):
    """Each sequence alone through fp32 SDPA, with flash-attn's ALiBi bias -slope*|i-j|."""
    out = []
    for a, b in zip(cu.tolist(), cu.tolist()[1:]):
        qs, ks, vs = (t[a:b].float().transpose(0, 1)[None] for t in (q, k, v))
        n = b - a
        mask = None
        if slopes is not None:
            distance = (torch.arange(n)[None, :] - torch.arange(n)[:, None]).abs().float()
            mask = (-slopes[:, None, None] * distance)[None]
        out.append(F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)[0].transpose(0, 1).to(q.dtype))
    return torch.cat(out)


def test_flash_attn_checker_computes_each_sequence_alone_with_alibi(simcuda):
    simcuda(devices=1, flash_attn="ok")
    flash, reason = accel.flash_attn_varlen()
    assert reason is None
    q, k, v, cu, longest = _packed([5, 1, 9])
    slopes = torch.tensor([0.5, 0.25])
    got = flash(q, k, v, cu, cu, longest, longest, dropout_p=0.0, softmax_scale=0.3, alibi_slopes=slopes)
    assert got.dtype == torch.float16
    assert torch.equal(got, _reference(q, k, v, cu, 0.3, slopes))
    plain = flash(q, k, v, cu, cu, longest, longest)
    assert torch.equal(plain, _reference(q, k, v, cu, 8 ** -0.5))


@pytest.mark.parametrize("breakage, message", [
    (lambda a: {**a, "q": a["q"].float(), "k": a["k"].float(), "v": a["v"].float()}, "only supports fp16 and bf16"),
    (lambda a: {**a, "k": a["k"].bfloat16()}, "same dtype"),
    (lambda a: {**a, "cu_seqlens_q": a["cu_seqlens_q"].long()}, "must have dtype int32"),
    (lambda a: {**a, "max_seqlen_q": torch.tensor(9)}, "max_seqlen must be a Python int"),
    (lambda a: {**a, "max_seqlen_q": 4}, "below the longest sequence"),
    (lambda a: {**a, "q": a["q"].transpose(1, 2).contiguous().transpose(1, 2)}, "contiguous last dimension"),
    (lambda a: {**a, "cu_seqlens_q": torch.tensor([0, 5, 6, 14], dtype=torch.int32)}, "must run from 0 to the 15 tokens"),
    (lambda a: {**a, "alibi_slopes": torch.tensor([0.5, 0.25]).half()}, "ALiBi slopes must have dtype fp32"),
    (lambda a: {**a, "alibi_slopes": torch.tensor([0.5, 0.25, 0.1])}, "ALiBi slopes batch/heads dimensions"),
])
def test_flash_attn_checker_refuses_what_the_real_kernel_refuses(simcuda, breakage, message):
    simcuda(devices=1, flash_attn="ok")
    flash, _ = accel.flash_attn_varlen()
    q, k, v, cu, longest = _packed([5, 1, 9])
    args = dict(q=q, k=k, v=v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=longest, max_seqlen_k=longest)
    with pytest.raises(KernelContractError, match=message):
        flash(**breakage(args))


def test_flash_attn_checker_refuses_head_dims_above_256():
    q, k, v, cu, longest = _packed([3], head_dim=264)
    with pytest.raises(KernelContractError, match="head dimension at most 256"):
        kernels.flash_attn_varlen_func(q, k, v, cu, cu, longest, longest)


def test_torch_varlen_follows_each_torch_versions_signature(simcuda):
    q, k, v, cu, longest = _packed([4, 7])
    simcuda(devices=1, torch_varlen="2.10")
    varlen, reason = accel.torch_varlen()
    assert reason is None and not varlen.takes_scale
    with pytest.raises(TypeError, match="scale"):
        varlen.func(q, k, v, cu, cu, longest, longest, scale=0.3)
    assert torch.equal(varlen(q, k, v, cu, longest, 8 ** -0.5), _reference(q, k, v, cu, 8 ** -0.5))
    with pytest.raises(ValueError, match="no scale argument"):
        varlen(q, k, v, cu, longest, 0.3)
    simcuda(devices=1, torch_varlen="2.11")
    varlen, _ = accel.torch_varlen()
    assert varlen.takes_scale
    with pytest.raises(TypeError):
        varlen.func(q, k, v, cu, cu, longest, longest, None, 0.3)  # keyword-only
    assert torch.equal(varlen(q, k, v, cu, longest, 0.3), _reference(q, k, v, cu, 0.3))
    simcuda(devices=1, torch_varlen="absent")
    varlen, reason = accel.torch_varlen()
    assert varlen is None and "has no torch.nn.attention.varlen" in reason


def test_this_torchs_own_varlen_attn_takes_scale_keyword_only():
    """The signature check reads the installed torch (2.13 here) the same way as the simulated ones."""
    varlen, reason = accel.torch_varlen()
    assert reason is None and varlen.takes_scale


def test_a_kernel_call_over_more_tokens_than_the_device_holds_runs_out_of_memory(simcuda):
    sim = simcuda(devices=1, oom_above_tokens=10, torch_varlen="2.11")
    varlen, _ = accel.torch_varlen()
    q, k, v, cu, longest = _packed([4, 5])
    varlen(q, k, v, cu, longest, 0.3)
    q, k, v, cu, longest = _packed([4, 7])
    with pytest.raises(torch.cuda.OutOfMemoryError, match="11 tokens"):
        varlen(q, k, v, cu, longest, 0.3)
    assert issubclass(accel.out_of_memory_error(), torch.cuda.OutOfMemoryError)
    assert sim.kernel_calls == ["varlen_attn (torch 2.11+)"] * 2


def test_flash_attn_states_absent_ok_and_installed_but_broken(simcuda):
    simcuda(devices=1, flash_attn="absent")
    assert accel.flash_attn_varlen() == (None, "flash-attn is not installed")
    simcuda(devices=1, flash_attn="broken")
    assert importlib.util.find_spec("flash_attn") is not None  # find_spec alone would call it available
    func, reason = accel.flash_attn_varlen()
    assert func is None
    assert reason.startswith("flash-attn is installed but does not import (ImportError: ") and "undefined symbol" in reason
    simcuda(devices=1, flash_attn="ok")
    assert accel.flash_attn_varlen()[0] is kernels.flash_attn_varlen_func


def test_uninstall_restores_the_cpu_build(simcuda):
    from virnucpro_core.testing import simcuda as module

    simcuda(devices=3)
    assert torch.cuda.device_count() == 3
    module.uninstall()
    assert not torch.cuda.is_available() and torch.cuda.device_count() == 0
    assert accel.storage_device("cuda:0") == torch.device("cuda:0")
    assert accel.flash_attn_varlen()[0] is None


CHILD = """
import multiprocessing, torch
def count(q):
    q.put(torch.cuda.device_count())
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=count, args=(q,))
    p.start(); p.join()
    print(torch.cuda.device_count(), q.get(), torch.cuda.mem_get_info(2)[1] >> 30)
    raise SystemExit(7)
"""


def test_the_launcher_simulates_the_command_and_every_process_it_spawns(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    result = subprocess.run([sys.executable, "-m", "virnucpro_core.testing.simcuda", "--devices", "3", "--memory-gib", "24",
                             "--", sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 7, result.stderr  # the command's own exit code
    assert result.stdout.split() == ["3", "3", "24"]


def test_the_launcher_refuses_a_missing_command_and_bad_settings():
    result = subprocess.run([sys.executable, "-m", "virnucpro_core.testing.simcuda", "--devices", "2"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "give the command to run after --" in result.stderr
    result = subprocess.run([sys.executable, "-m", "virnucpro_core.testing.simcuda", "--devices", "2", "--memory-gib", "1,2,3",
                             "--", "true"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "one memory size, or one per device" in result.stderr


def test_a_sitecustomize_the_launcher_shadows_still_runs(tmp_path):
    own = tmp_path / "site"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITECUSTOMIZE'] = 'ran'\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(own)}
    result = subprocess.run([sys.executable, "-m", "virnucpro_core.testing.simcuda", "--devices", "2", "--", sys.executable, "-c",
                             "import os, torch; print(os.environ.get('OWN_SITECUSTOMIZE'), torch.cuda.device_count())"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ran", "2"]


def test_torch_varlen_checker_refuses_a_head_dim_that_is_not_a_multiple_of_8(simcuda):
    simcuda(devices=1, torch_varlen="2.11")
    varlen, _ = accel.torch_varlen()
    q, k, v, cu, longest = _packed([3, 4], head_dim=20)
    with pytest.raises(KernelContractError, match="head_size must be a multiple of 8, got 20"):
        varlen(q, k, v, cu, longest, 0.2)
