"""VirNucPro backend ``dnabert=v1``: DNABERT-S mean-pooled nucleotide embeddings.

Importing this package is cheap; torch and transformers load only when an embedder
is built (:mod:`virnucpro_dnabert_v1.embedder`).
"""

__all__: list[str] = []
