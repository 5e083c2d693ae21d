"""VirNucPro backend ``esm2=v2``: the fast ESM-2 path over fair-esm's own weights.

The same checkpoints as ``esm2=v1`` (read by v1's loader), but its own forward: the
proteins of a batch are packed into one token stream without padding, attention runs
variable-length (flash-attn, torch's ``varlen_attn``, or exact SDPA over length
buckets), weights are cast once to fp16/bf16 where asked, and the per-protein mean is
taken on the device. Verified per sequence against fair-esm's forward in fp32.
Importing this package is cheap: torch loads only when a model does.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("virnucpro-esm2-v2")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"
