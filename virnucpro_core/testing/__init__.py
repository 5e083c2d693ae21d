"""Factories of tiny models in the REAL on-disk formats, and reusable contract checks.

The real weights (ESM-2 3B, DNABERT-S, the published MLPs) cannot be downloaded on
the machines that run our tests, yet every loader must be exercised for real. These
factories write tiny, randomly initialised, seeded models exactly as the real files
are laid out, for the tests of the core and of every plugin:

- :func:`write_tiny_esm2`: a fair-esm ESM-2 checkpoint (+ contact regression);
- :func:`write_tiny_dnabert`: a DNABERT-S-shaped Hugging Face folder (tokenizer + BERT);
- :func:`write_original_mlp`: an MLP pickled by ``torch.save(model)`` from a separate
  ``__main__`` script, as the original ``300_model.pth``/``500_model.pth`` were;
- :func:`write_tiny_model_set`: all of the above as a models directory with
  ``models.json`` (``kind: tiny``), usable as ``--models-dir``.

Their predictions mean nothing. Nothing here is imported by the CLI at start-up, and
the factory modules import torch, fair-esm and transformers only when a factory runs,
so importing this package is cheap. (``testing.contract`` holds the embedder contract
checks; ``testing.original`` other helpers' fixtures; ``testing.pickles`` hostile pickle
payloads for the tests of every model loader.)
"""

from virnucpro_core.testing.dnabert import write_tiny_dnabert
from virnucpro_core.testing.esm2 import write_tiny_esm2
from virnucpro_core.testing.mlp import write_original_mlp
from virnucpro_core.testing.models import write_tiny_model_set

__all__ = ["write_tiny_esm2", "write_tiny_dnabert", "write_original_mlp", "write_tiny_model_set"]
