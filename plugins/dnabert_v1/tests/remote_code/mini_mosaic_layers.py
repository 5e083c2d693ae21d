"""A miniature MosaicBERT, loaded through ``auto_map`` with ``trust_remote_code=True``.

Written for the dnabert=v1 tests from a description of DNABERT-S's remote code
(``bert_layers.py``), not copied from it. It keeps the traits the loader and the
embedder have to cope with:

- the classes live in the model folder (``auto_map``), so loading needs remote code;
- the model subclasses transformers' ``BertPreTrainedModel`` and its forward
  ``(input_ids, token_type_ids=None, attention_mask=None, ...)`` returns a tuple
  ``(sequence_output, pooled_output)``;
- no position embeddings: ALiBi biases, kept in a plain tensor attribute built in
  ``__init__`` and rebuilt when a longer input arrives. As in the real code, the
  distances come from ``torch.arange`` (which follows the default device) and the
  head slopes from the legacy ``torch.Tensor(list)`` constructor (always on the CPU),
  so building the model under transformers 5's ``meta`` device fails in ``__init__``
  with "Tensor on device meta is not on the expected device cpu!";
- the attention bias (padding mask as -10000, plus ALiBi) is fp32 and is added to
  the scores, so the scores' dtype is promoted;
- a gated-GELU feed-forward, post-LayerNorm residual blocks;
- the attention kernel is picked at call time from the module global
  ``flash_attn_qkvpacked_func``;
- padded positions come out as zeros (MosaicBERT re-pads its unpadded output).
"""

import math

import torch
from torch import nn
from transformers.models.bert.modeling_bert import BertPreTrainedModel

from .mini_mosaic_config import MiniMosaicConfig

try:
    from .mini_flash import flash_attn_qkvpacked_func
except ImportError:
    flash_attn_qkvpacked_func = None


def alibi_slopes(n_heads):
    """Geometric per-head slopes 2^(-8k/n), k = 1..n, as in the ALiBi paper."""
    return [2.0 ** (-8.0 * (k + 1) / n_heads) for k in range(n_heads)]


class MiniEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class MiniLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.intermediate = config.intermediate_size
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.attn_out = nn.Linear(config.hidden_size, config.hidden_size)
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden, bias):
        batch, length, width = hidden.shape
        qkv = self.Wqkv(hidden).view(batch, length, 3, self.heads, self.head_dim)
        if flash_attn_qkvpacked_func is not None:
            context = flash_attn_qkvpacked_func(qkv, bias)
        else:
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (batch, heads, length, head_dim)
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            probs = torch.softmax(scores + bias, dim=-1)  # bias is fp32: promotes half-precision scores
            context = torch.matmul(probs, v).transpose(1, 2)
        hidden = self.attn_norm(self.attn_out(context.reshape(batch, length, width)) + hidden)
        gate, value = self.gated_layers(hidden).split(self.intermediate, dim=-1)
        return self.mlp_norm(self.wo(nn.functional.gelu(gate) * value) + hidden)


class MiniEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(MiniLayer(config) for _ in range(config.num_hidden_layers))
        self.num_attention_heads = config.num_attention_heads
        self._current_alibi_size = int(config.alibi_starting_size)
        self.rebuild_alibi_tensor(size=self._current_alibi_size)

    def rebuild_alibi_tensor(self, size, device=None):
        positions = torch.arange(size, device=device)
        distance = (positions[None, :] - positions[:, None]).abs()
        # legacy constructor + .to(device): CPU even under a meta default device, like bert_layers.py
        slopes = torch.Tensor(alibi_slopes(self.num_attention_heads)).to(device)
        self.alibi = (-slopes[:, None, None] * distance[None]).unsqueeze(0)  # (1, heads, size, size)
        self._current_alibi_size = size

    def forward(self, hidden, attention_mask):
        length = hidden.shape[1]
        if length > self._current_alibi_size:
            self.rebuild_alibi_tensor(size=length, device=hidden.device)
        elif self.alibi.device != hidden.device:
            self.alibi = self.alibi.to(hidden.device)
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * -10000.0
        bias = self.alibi[:, :, :length, :length] + mask_bias
        for layer in self.layer:
            hidden = layer(hidden, bias)
        return hidden * attention_mask[:, :, None].to(hidden.dtype)


class MiniMosaicModel(BertPreTrainedModel):
    config_class = MiniMosaicConfig

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config)
        self.embeddings = MiniEmbeddings(config)
        self.encoder = MiniEncoder(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.post_init()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), attention_mask)
        pooled = torch.tanh(self.pooler(hidden[:, 0])) if self.pooler is not None else None
        return hidden, pooled
