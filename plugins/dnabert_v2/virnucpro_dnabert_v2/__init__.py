"""VirNucPro backend ``dnabert=v2``: DNABERT-S computed by VirNucPro's own MosaicBERT module.

Importing this package is cheap; torch loads only when an embedder is built
(:mod:`virnucpro_dnabert_v2.embedder`). No code from a model folder or the hub is
ever imported or executed.
"""

__all__: list[str] = []
