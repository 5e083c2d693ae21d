"""A complete tiny model set in the real on-disk layout of a models directory.

``write_tiny_model_set(DIR)`` gives ``DIR`` everything ``virnucpro predict
--models-dir DIR`` needs, with random weights: a tiny ESM-2 (fair-esm checkpoint +
contact regression), a tiny DNABERT-S-shaped Hugging Face folder, and ``300``/``500``
MLPs pickled the way the original saved them, sized for the tiny embeddings
(32 nucleotide + 32 protein = 64 inputs). ``models.json`` says ``"kind": "tiny"`` so
every run on it can warn that its predictions mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from virnucpro_core.atomic import write_json_atomic
from virnucpro_core.checksum import sha256_file
from virnucpro_core.modelset import MLP_DIR, MODELS_JSON, mlp_file_name

TINY_ESM2_DIM = 32
TINY_DNABERT_DIM = 32
TINY_MLP_HIDDEN = 32
TINY_DNABERT_DIR = "dnabert/DNABERT-S-tiny"


def write_tiny_model_set(directory: Path, *, seed: int = 0) -> Path:
    """Write a consistent tiny model set into ``directory`` and return it.

    ``models.json`` is written last (atomically), so a directory holding one is
    complete. The same ``seed`` always gives the same weights.
    """
    from virnucpro_core.testing.dnabert import write_tiny_dnabert
    from virnucpro_core.testing.esm2 import write_tiny_esm2
    from virnucpro_core.testing.mlp import OriginalMLP, write_original_mlps

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    esm2 = write_tiny_esm2(directory / "esm2", embed_dim=TINY_ESM2_DIM, seed=seed)
    dnabert = write_tiny_dnabert(directory / TINY_DNABERT_DIR, hidden_size=TINY_DNABERT_DIM, seed=seed)
    input_dim = TINY_DNABERT_DIM + TINY_ESM2_DIM
    mlps = {
        str(model_type): directory / MLP_DIR / mlp_file_name(model_type) for model_type in (300, 500)
    }
    write_original_mlps(
        [
            OriginalMLP(path, input_dim=input_dim, hidden_dim=TINY_MLP_HIDDEN, seed=seed + int(model_type))
            for model_type, path in mlps.items()
        ]
    )
    regression = esm2.with_name(esm2.stem + "-contact-regression.pt")

    def rel(path: Path) -> str:
        return Path(path).relative_to(directory).as_posix()

    files = [esm2, regression, *mlps.values()]
    write_json_atomic(
        directory / MODELS_JSON,
        {
            "kind": "tiny",
            "warning": "random tiny models for tests and smoke runs; their predictions mean nothing",
            "esm2": rel(esm2),
            "dnabert": rel(dnabert),
            "mlp": {model_type: rel(path) for model_type, path in mlps.items()},
            "dims": {"dnabert": TINY_DNABERT_DIM, "esm2": TINY_ESM2_DIM, "mlp_input": input_dim},
            "seed": seed,
            "sha256": {rel(path): sha256_file(path) for path in files},
        },
    )
    return directory
