"""Random ESM-2 weights in fair-esm's checkpoint layout, built with torch alone.

The benchmark and the GPU check need ESM-2-shaped models up to 3B parameters on
machines where fair-esm may be missing (the GPU image has none) and where writing an
11 GB file first would waste minutes. This builds the checkpoint *dict* directly, on
any device: ``{"cfg": {"model": Namespace(...)}, "model": state_dict}`` with fair-esm's
key names and prefixes, drawn like :func:`virnucpro_core.testing.esm2.write_tiny_esm2`
(linear weights N(0, 1/fan_in), LayerNorm gains 1 ± 0.3, token embeddings N(0, 1)),
so the classic mistakes change the numbers visibly. The test suite checks that
fair-esm's own loader accepts it strictly. The shapes of the published ESM-2 models
are in :data:`SHAPES`.
"""

from __future__ import annotations

import argparse
import math

from virnucpro_core.testing.esm2 import BODY_PREFIX, HEAD_PREFIX

from virnucpro_esm2_v2.tokens import PAD, VOCABULARY

#: ``name -> (layers, embed dim, heads)`` of fair-esm's ESM-2 models, and a tiny one for tests.
SHAPES: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 32, 4),
    "8M": (6, 320, 20),
    "35M": (12, 480, 20),
    "150M": (30, 640, 20),
    "650M": (33, 1280, 20),
    "3B": (36, 2560, 40),
    "15B": (48, 5120, 40),
}


def random_checkpoint_data(num_layers: int, embed_dim: int, heads: int, *, seed: int = 0, device: str = "cpu",
                           dtype=None) -> dict:
    """A fair-esm ESM-2 checkpoint dict with random weights (``dtype`` default float32)."""
    import torch

    from virnucpro_core import accel

    device = accel.storage_device(device)  # generated where the device's tensors live (the CPU when simulated)
    dtype = dtype or torch.float32
    gen = torch.Generator(device=device).manual_seed(seed)
    d, vocab = embed_dim, len(VOCABULARY)

    def normal(*shape, std=1.0, mean=0.0):
        return (torch.randn(*shape, generator=gen, device=device, dtype=torch.float32) * std + mean).to(dtype)

    def linear(prefix, fan_out, fan_in):
        return {prefix + ".weight": normal(fan_out, fan_in, std=1.0 / math.sqrt(fan_in)), prefix + ".bias": normal(fan_out, std=0.1)}

    def norm(prefix, n):
        return {prefix + ".weight": normal(n, std=0.3, mean=1.0), prefix + ".bias": normal(n, std=0.2)}

    body: dict = {}
    embed = normal(vocab, d)
    embed[PAD] = 0
    body["embed_tokens.weight"] = embed
    head_dim = d // heads
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    for i in range(num_layers):
        p = f"layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            body.update(linear(p + "self_attn." + name, d, d))
        body[p + "self_attn.rot_emb.inv_freq"] = inv_freq.clone()
        body.update(norm(p + "self_attn_layer_norm", d))
        body.update(linear(p + "fc1", 4 * d, d))
        body.update(linear(p + "fc2", d, 4 * d))
        body.update(norm(p + "final_layer_norm", d))
    body.update(norm("emb_layer_norm_after", d))
    state = {BODY_PREFIX + k: v for k, v in body.items()}
    head = {**linear("lm_head.dense", d, d), **norm("lm_head.layer_norm", d), "lm_head.bias": normal(vocab, std=0.1)}
    state.update({HEAD_PREFIX + k: v for k, v in head.items()})
    state[HEAD_PREFIX + "lm_head.weight"] = embed  # tied to the token embedding, as in the real model
    cfg = argparse.Namespace(arch="esm2", encoder_layers=num_layers, encoder_embed_dim=d, encoder_ffn_embed_dim=4 * d,
                             encoder_attention_heads=heads, token_dropout=True, max_positions=1024, dropout=0.0,
                             attention_dropout=0.0, activation_dropout=0.0)
    return {"cfg": {"model": cfg}, "model": state}
