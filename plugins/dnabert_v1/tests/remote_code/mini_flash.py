"""Stand-in for DNABERT-S's flash_attn_triton.py: importable, and loud if ever called.

The real file imports Triton and defines ``flash_attn_qkvpacked_func``; when that
import works, the remote code routes attention through it. The loader must switch
the code back to its PyTorch path, so in tests calling this is an error.
"""


def flash_attn_qkvpacked_func(qkv, bias):
    raise RuntimeError("Triton FlashAttention kernel called; the loader should have disabled it")
