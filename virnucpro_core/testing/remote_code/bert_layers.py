"""VirNucPro's re-statement of DNABERT-S's remote model code (MosaicBERT), for test folders.

DNABERT-S's own ``bert_layers.py`` may not be redistributed here, yet ``dnabert=v1``
loads models through ``trust_remote_code`` and so needs model code in the folder.
This file was written for VirNucPro from a reading of that code, not copied from it.
It computes the same thing in the same way, which was checked against the real
file on tiny random models (max |d| of the pooled means in the dnabert_v2 README):

- embeddings: word + token type (no positions) -> LayerNorm;
- the encoder removes padding once (``(B, L, d) -> (T, d)``), and in every layer
  pads the fused ``Wqkv`` output back to ``(B, L, 3, H, hd)`` for attention with one
  fp32 bias ``(B, H, L, L)``: the padding mask as -10000 plus the symmetric ALiBi
  term ``-slope_h * |i - j|`` (slopes as MosaicBERT computes them, also for head
  counts that are not powers of two), then removes the padding again;
- attention output projection + residual + post-LayerNorm; gated-GELU MLP
  (``gated_layers`` -> erf-GELU(first half) * second half -> ``wo``) + residual +
  post-LayerNorm;
- the ALiBi table is built in ``__init__`` from ``torch.arange`` and the legacy
  ``torch.Tensor(list)`` constructor and rebuilt for longer inputs, like the real
  code (so transformers 5 fails to build it on the ``meta`` device the same way);
- ``forward(input_ids, token_type_ids=None, attention_mask=None, ...)`` returns the
  tuple ``(last hidden states re-padded with zeros, pooled [CLS])``.

Key names of parameters equal those of DNABERT-S's checkpoint.
"""

import math

import torch
from torch import nn
from transformers.models.bert.modeling_bert import BertPreTrainedModel

from .configuration_bert import BertConfig


def alibi_head_slopes(n_heads):
    """MosaicBERT's head slopes: a geometric series for 2^k heads; otherwise those of the
    nearest lower power of two followed by every other slope of the next power of two."""

    def power_of_two(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_two(n_heads)
    lower = 2 ** math.floor(math.log2(n_heads))
    return power_of_two(lower) + alibi_head_slopes(2 * lower)[0::2][: n_heads - lower]


class BertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        summed = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(summed))


class BertUnpadSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden, keep, batch, seqlen, bias):
        qkv = self.Wqkv(hidden)
        padded = qkv.new_zeros(batch * seqlen, qkv.shape[-1])
        padded[keep] = qkv
        padded = padded.view(batch, seqlen, 3, self.num_attention_heads, self.attention_head_size)
        q = padded[:, :, 0].permute(0, 2, 1, 3)
        k = padded[:, :, 1].permute(0, 2, 3, 1)
        v = padded[:, :, 2].permute(0, 2, 1, 3)
        scores = torch.matmul(q, k) / math.sqrt(self.attention_head_size) + bias
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(batch * seqlen, -1)
        return context[keep]


class BertSelfOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertUnpadAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = BertUnpadSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden, keep, batch, seqlen, bias):
        return self.output(self.self(hidden, keep, batch, seqlen, bias), hidden)


class BertGatedLinearUnitMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.act = nn.GELU(approximate="none")
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden):
        both = self.gated_layers(hidden)
        gated = self.act(both[:, : self.intermediate_size]) * both[:, self.intermediate_size :]
        return self.layernorm(self.wo(self.dropout(gated)) + hidden)


class BertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertUnpadAttention(config)
        self.mlp = BertGatedLinearUnitMLP(config)

    def forward(self, hidden, keep, batch, seqlen, bias):
        return self.mlp(self.attention(hidden, keep, batch, seqlen, bias))


class BertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.num_attention_heads = config.num_attention_heads
        self._current_alibi_size = int(config.alibi_starting_size)
        self.rebuild_alibi_tensor(size=self._current_alibi_size)

    def rebuild_alibi_tensor(self, size, device=None):
        positions = torch.arange(size, device=device)
        distance = torch.abs(positions[None, :] - positions[:, None]).unsqueeze(0).expand(self.num_attention_heads, -1, -1)
        slopes = torch.Tensor(alibi_head_slopes(self.num_attention_heads)).to(device)
        self.alibi = (slopes[:, None, None] * -distance).unsqueeze(0)
        self._current_alibi_size = size

    def forward(self, hidden, attention_mask):
        batch, seqlen = hidden.shape[:2]
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * -10000.0
        if self._current_alibi_size < seqlen:
            self.rebuild_alibi_tensor(size=seqlen, device=hidden.device)
        elif self.alibi.device != hidden.device:
            self.alibi = self.alibi.to(hidden.device)
        bias = mask_bias + self.alibi[:, :, :seqlen, :seqlen]
        keep = attention_mask.bool().flatten()
        packed = hidden.reshape(batch * seqlen, -1)[keep]
        for layer in self.layer:
            packed = layer(packed, keep, batch, seqlen, bias)
        out = packed.new_zeros(batch * seqlen, packed.shape[-1])
        out[keep] = packed
        return out.view(batch, seqlen, -1)


class BertPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden):
        return self.activation(self.dense(hidden[:, 0]))


class BertModel(BertPreTrainedModel):
    config_class = BertConfig

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), attention_mask)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return hidden, pooled
