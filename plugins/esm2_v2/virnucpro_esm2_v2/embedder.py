"""The ``esm2=v2`` embedder: packed batches, a chosen attention kernel, overlapped host work.

Per call of :meth:`Esm2V2Embedder.embed`:

1. every protein is tokenised once (a one-line error names a protein with a letter
   outside ESM-2's alphabet) and the packing plan is made from the token counts
   (:mod:`virnucpro_esm2_v2.packing`, the only code deciding rows);
2. a background thread builds the next batches' tensors (pinned on CUDA) while the
   device runs the current one; copies are ``non_blocking``;
3. each batch's pooled ``(B, d)`` float32 rows come back with a non-blocking copy
   ordered by an event on the model device's own stream
   (:func:`virnucpro_core.accel.rows_to_host`), waited for only when the *next* batch
   has been launched; rows are written to the input positions the pack names, the
   count checked per batch, and every input must have got exactly one row at the end;
4. a CUDA out-of-memory error on a batch within the current token budget halves the
   budget (logged) and re-runs that batch's proteins in smaller batches, down to a
   single protein, before it becomes a one-line error; the lowered budget stays for the
   rest of the run, and batches planned or prepared under the old budget are split
   before they run, never run whole (so one OOM lowers the budget once, not once per
   batch prepared ahead).

Every device call goes through :mod:`virnucpro_core.accel`, so all of this runs in CI
on simulated GPUs (:mod:`virnucpro_core.testing.simcuda`).

Defaults: on CUDA fp16 (ESM-2 was trained in fp16; the predecessor validated it) and a
token budget derived from the free device memory after the weights are loaded; on a
CPU fp32 and :data:`CPU_BATCH_TOKENS`. ``--precision`` and ``--batch-tokens`` override;
``--backend-option attention=NAME`` forces an attention implementation.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from virnucpro_core import accel
from virnucpro_core.backends import EmbedderOptions, torch_dtype
from virnucpro_core.errors import ConfigError, InputError, VirnucproError

from virnucpro_esm2_v2 import attention as attention_impls
from virnucpro_esm2_v2.batching import build_batch
from virnucpro_esm2_v2.model import Esm2Config, PackedEsm2
from virnucpro_esm2_v2.packing import Pack, PackingStats, plan_packs, split_pack
from virnucpro_esm2_v2.tokens import encode

log = logging.getLogger(__name__)

#: The original's ``truncation_seq_length``: residues pooled per protein at most.
DEFAULT_MAX_LENGTH = 1024
#: Token budget on a CPU: twice the original's 2048 (GEMMs of a few thousand rows already run at
#: full speed on a CPU). Not tuned: the sweep could not finish on the shared test machine.
CPU_BATCH_TOKENS = 4096
#: On CUDA the budget is this share of the free memory after loading, over the estimate below ...
CUDA_MEMORY_SHARE = 0.6
#: ... of live activation elements per token and model dimension (residual, norms, q/k/v,
#: fp32 rotary copies, attention output, the 4d FFN and its GELU), with room to spare.
ACTIVATION_ELEMENTS_PER_DIM = 24
#: Beyond this many tokens per batch GEMMs are saturated and only latency grows.
CUDA_MAX_BATCH_TOKENS = 65536
#: Batches prepared ahead of the one running.
PREFETCH = 2
#: Option keys this backend reads from ``--backend-option KEY=VALUE``.
OPTION_KEYS = ("attention",)
#: The probe batch: two proteins of different lengths, run through a kernel before it is trusted.
PROBE_PROTEINS = ("MKTL", "G")


def token_budget(free_bytes: int, dim: int, element_size: int) -> int:
    """Tokens per batch for ``free_bytes`` of device memory left after loading the weights:
    :data:`CUDA_MEMORY_SHARE` of it over ~:data:`ACTIVATION_ELEMENTS_PER_DIM` live elements
    per token and model dimension, at least 1024 and at most :data:`CUDA_MAX_BATCH_TOKENS`."""
    per_token = ACTIVATION_ELEMENTS_PER_DIM * dim * element_size
    return int(min(CUDA_MAX_BATCH_TOKENS, max(1024, CUDA_MEMORY_SHARE * free_bytes / per_token)))


class Esm2V2Embedder:
    """ESM-2 over packed batches. Build it with :meth:`from_options` or :meth:`from_checkpoint_data`."""

    def __init__(self, model: PackedEsm2, *, model_id: str, precision: str, attention: str | None = None,
                 batch_tokens: int | None = None, max_length: int | None = None, batch_size: int | None = None) -> None:
        import torch

        for name, value in (("batch tokens", batch_tokens), ("max length", max_length), ("batch size", batch_size)):
            if value is not None and value <= 0:
                raise ConfigError(f"esm2=v2: {name} must be positive, got {value}")
        self.model = model
        self.model_id = model_id
        self.dim = model.config.embed_dim
        self.precision = precision
        self.device = model.device
        self.max_length = max_length or DEFAULT_MAX_LENGTH
        self.batch_size = batch_size
        self.attention = attention_impls.choose(self.device.type, model.dtype, attention)
        if self.device.type == "cuda":
            # fp32 accumulation in half-precision GEMMs (cuBLAS may otherwise reduce in fp16/bf16)
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
            self.attention = self.probe_attention(self.attention, forced=attention not in (None, "auto"))
        if batch_tokens:
            self.batch_tokens, self.budget_source = int(batch_tokens), "--batch-tokens"
        elif self.device.type == "cuda":
            self.batch_tokens, self.budget_source = self._budget_from_free_memory(), "free device memory"
        else:
            self.batch_tokens, self.budget_source = CPU_BATCH_TOKENS, "CPU default"
        self.stats = PackingStats()  # over the embedder's life
        self.call_stats = PackingStats()  # over the last embed() call
        self.oom_retries = 0
        if self.device.type == "cpu" and model.dtype == torch.bfloat16:
            from virnucpro_esm2_v2.cpu import emulated_bf16_warning

            if warning := emulated_bf16_warning():  # not where AMX or AVX512-BF16 make bf16 faster than fp32
                log.warning(warning)
        log.info("esm2=v2: %s, attention %s, batches of up to %d tokens (%s)", precision, self.attention,
                 self.batch_tokens, self.budget_source)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_options(cls, options: EmbedderOptions) -> "Esm2V2Embedder":
        """Read the checkpoint ``options.model`` names with esm2=v1's loader and build the packed model."""
        from virnucpro_esm2_v1.loading import DEFAULT_MODEL, read_esm2_checkpoint

        extra = dict(options.extra)
        unknown = sorted(set(extra) - set(OPTION_KEYS))
        if unknown:
            log.warning("esm2=v2 ignores backend option(s) %s; it reads %s", ", ".join(unknown), ", ".join(OPTION_KEYS))
        if options.revision:
            log.warning("esm2=v2 ignores revision %r: fair-esm checkpoints have no revisions", options.revision)
        model_id = options.model or DEFAULT_MODEL
        files, data = read_esm2_checkpoint(model_id, progress=options.show_progress)
        return cls.from_checkpoint_data(data, model_id=model_id, device=options.device, precision=options.precision,
                                        attention=extra.get("attention"), batch_tokens=options.batch_tokens,
                                        max_length=options.max_length, batch_size=options.batch_size, source=str(files.model))

    @classmethod
    def from_checkpoint_data(cls, data: Mapping[str, Any], *, model_id: str, device: str = "cpu", precision: str = "fp32",
                             attention: str | None = None, batch_tokens: int | None = None, max_length: int | None = None,
                             batch_size: int | None = None, source: str = "checkpoint") -> "Esm2V2Embedder":
        """Build from a fair-esm checkpoint dict (``{"cfg": {"model": ...}, "model": state_dict}``)."""
        dtype = torch_dtype(precision, "esm2=v2")
        config = Esm2Config.from_checkpoint(data["cfg"]["model"])
        model = PackedEsm2(config, data["model"], device=device, dtype=dtype, source=source)
        return cls(model, model_id=model_id, precision=precision, attention=attention, batch_tokens=batch_tokens,
                   max_length=max_length, batch_size=batch_size)

    def _budget_from_free_memory(self) -> int:
        free, _total = accel.memory_info(self.device)
        element_size = self.model.embed_tokens.element_size()
        budget = token_budget(free, self.dim, element_size)
        log.info("esm2=v2: %.1f GiB free on %s -> batches of up to %d tokens (%.0f%% of free memory at ~%d bytes/token, cap %d)",
                 free / 2**30, self.device, budget, 100 * CUDA_MEMORY_SHARE, ACTIVATION_ELEMENTS_PER_DIM * self.dim * element_size,
                 CUDA_MAX_BATCH_TOKENS)
        return budget

    def probe_attention(self, name: str, *, forced: bool) -> str:
        """Run a kernel once on a two-protein batch and wait for its rows; fall back (logged) if it fails.

        The rows are waited for (the copy's event on this device's stream), so a fault of
        the kernel fails here, inside the probe: an error raised by the call (a GPU older
        than Ampere, no kernel image for it, a refused argument) makes ``auto`` move on to
        the next implementation; rows that are not finite count as a failure too. A sticky
        CUDA fault (an illegal memory access) poisons the whole process, so then every
        candidate fails and the message says so.
        """
        encoded = [encode(seq, i + 1, len(PROBE_PROTEINS)) for i, seq in enumerate(PROBE_PROTEINS)]
        lengths = [len(ids) for ids in encoded]
        pack = plan_packs(lengths, sum(lengths))[0]
        batch = self._prepare(pack, [encoded[i] for i in pack.indices], with_buckets=True)
        candidates = [name] if forced else attention_impls.available(self.device.type, self.model.dtype)
        for candidate in candidates:
            try:
                rows = self._run(batch, candidate).wait()
                accel.synchronize(self.device)
                if tuple(rows.shape) != (len(pack), self.dim) or not bool(rows.isfinite().all()):
                    raise RuntimeError(f"the probe batch gave rows of shape {tuple(rows.shape)} with non-finite values")
                return candidate
            except Exception as exc:  # a kernel missing for this GPU or build, or faulting on it
                text = " ".join(str(exc).split())[:200]
                if forced:
                    raise ConfigError(f"esm2=v2: attention={candidate} fails on {self.device}: {type(exc).__name__}: {text}") from exc
                log.warning("esm2=v2: attention %s fails on %s (%s: %s); trying the next", candidate, self.device,
                            type(exc).__name__, text)
        raise VirnucproError(f"esm2=v2: no attention implementation runs on {self.device}; see the warnings above, "
                             "or use --device cpu")

    # -- running --------------------------------------------------------------------------

    @property
    def attributes(self) -> dict[str, str]:
        """How the last ``embed`` call ran, for its part file's attributes (``Embedder.attributes``):
        the core merges the parts' values into the output file, so they describe the part, not
        which worker or how many calls came before. Totals (batches, OOM retries) are in ``stats``
        and ``oom_retries``, and in the log."""
        return {"attention": self.attention, "precision": self.precision, "batch_tokens": str(self.batch_tokens),
                "batch_tokens_source": self.budget_source, "packing_utilisation": f"{self.call_stats.utilisation:.4f}"}

    def _prepare(self, pack: Pack, encoded: Sequence[np.ndarray], *, with_buckets: bool | None = None):
        if with_buckets is None:
            with_buckets = self.attention == attention_impls.SDPA_BUCKETED
        return build_batch(pack, encoded, max_length=self.max_length, with_buckets=with_buckets,
                           pin=self.device.type == "cuda")

    def _run(self, host_batch, attention: str | None = None) -> accel.HostRows:
        """Launch one batch; returns its pooled rows on their way to the host (``wait()`` before reading)."""
        batch = host_batch.to(self.device, non_blocking=True)
        pooled = self.model.forward(batch, attention or self.attention)
        return accel.rows_to_host(pooled, self.device)

    def embed(self, sequences: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Mean last-layer residue embeddings, float32 ``(len(sequences), dim)``, in input order."""
        import torch

        if self.model is None:
            raise RuntimeError("this embedder was closed")
        seqs = list(sequences)
        total = len(seqs)
        encoded = []
        for i, seq in enumerate(seqs):
            if not seq:
                raise InputError(f"protein #{i + 1} of {total} is empty; ESM-2 has no residue to average (remove it before embedding)")
            encoded.append(encode(seq, i + 1, total))
        out = np.empty((total, self.dim), dtype=np.float32)
        written = np.zeros(total, dtype=np.int64)
        self.call_stats = PackingStats()
        packs = deque(plan_packs([len(ids) for ids in encoded], self.batch_tokens, self.batch_size))
        pending: deque = deque()  # launched batches whose rows are still on their way back

        def finish(pack: Pack, rows: accel.HostRows) -> None:
            values = rows.wait().numpy()
            if values.shape != (len(pack), self.dim):
                raise VirnucproError(f"esm2=v2: a batch of {len(pack)} proteins gave rows of shape {tuple(values.shape)}; "
                                     "this is a bug, please report it")
            out[list(pack.indices)] = values
            written[list(pack.indices)] += 1
            if progress is not None:
                progress(len(pack))

        def build(pack: Pack):
            return self._prepare(pack, [encoded[i] for i in pack.indices])

        with torch.inference_mode(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="esm2v2-pack") as pool:
            ahead: deque = deque()
            while packs or ahead:
                while packs and len(ahead) < PREFETCH:
                    pack = packs.popleft()
                    if self._over_budget(pack):
                        packs.extendleft(reversed(split_pack(pack, self.batch_tokens)))
                        continue
                    ahead.append((pack, pool.submit(build, pack)))
                pack, future = ahead.popleft()
                if self._over_budget(pack):  # prepared before an out-of-memory error lowered the budget
                    future.cancel()
                    packs.extendleft(reversed(split_pack(pack, self.batch_tokens)))
                    continue
                for part, rows in self._run_with_retries(pack, future.result(), build):
                    pending.append((part, rows))
                while len(pending) > 1 or (pending and not ahead and not packs):
                    finish(*pending.popleft())
        if not (written == 1).all():
            bad = int(np.flatnonzero(written != 1)[0])
            raise VirnucproError(f"esm2=v2: protein #{bad + 1} got {int(written[bad])} rows; this is a bug, please report it")
        log.debug("esm2=v2: %d proteins in %d batches, packing utilisation %.4f", total, self.call_stats.batches,
                  self.call_stats.utilisation)
        return out

    def _over_budget(self, pack: Pack) -> bool:
        """A batch of several proteins planned under a larger budget than the current one."""
        return pack.total_tokens > self.batch_tokens and len(pack) > 1

    def _run_with_retries(self, pack: Pack, host_batch, build) -> Iterator[tuple[Pack, accel.HostRows]]:
        """Run ``pack``; on out-of-memory lower the budget once and run its proteins in smaller batches.

        Only a batch within the current budget lowers it (to half its own tokens): a
        batch larger than the budget, planned before an earlier error lowered it, is
        split under the current budget without being run.
        """
        try:
            rows = self._run(host_batch)
        except accel.out_of_memory_error():
            if len(pack) == 1:
                raise VirnucproError(
                    f"esm2=v2 ran out of memory on {self.device} with a single protein of {pack.total_tokens - 2} residues; "
                    "use a GPU with more free memory, a smaller model, or --device cpu") from None
        else:
            self.stats.add(pack, self.batch_tokens)
            self.call_stats.add(pack, self.batch_tokens)
            yield pack, rows
            return
        accel.release_cache(self.device)
        if not self._over_budget(pack):
            self.oom_retries += 1
            self.batch_tokens = max(1, min(self.batch_tokens, pack.total_tokens) // 2)
            log.warning("esm2=v2: out of memory on %s with %d proteins (%d tokens); retrying with batches of up to %d tokens",
                        self.device, len(pack), pack.total_tokens, self.batch_tokens)
        for part in split_pack(pack, self.batch_tokens):
            yield from self._run_with_retries(part, build(part), build)

    def close(self) -> None:
        """Drop the weights so their memory can be reclaimed."""
        if self.model is None:
            return
        log.info("esm2=v2: %d proteins in %d batches, packing utilisation %.4f, %d out-of-memory retries", self.stats.sequences,
                 self.stats.batches, self.stats.utilisation, self.oom_retries)
        self.model = None
        accel.release_cache(self.device)
