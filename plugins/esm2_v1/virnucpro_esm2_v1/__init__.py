"""VirNucPro backend ``esm2=v1``: ESM-2 embeddings the way the original VirNucPro made them.

The published classifier was trained on features from fair-esm's ``esm2_t36_3B_UR50D``,
batched by ``FastaBatchedDataset.get_batch_indices`` and mean-pooled over residues of
the last layer. This plugin reproduces that loop; ``esm2=v2`` is the fast one.
Importing this package is cheap: torch and fair-esm load only when a model does.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("virnucpro-esm2-v1")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"
