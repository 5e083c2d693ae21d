"""Write an MLP file exactly the way the original VirNucPro wrote its ``*_model.pth``.

The original trained in a script (``train.py``) and saved the whole module with
``torch.save(model, ...)``, so its pickle names ``__main__.MLPClassifier``. To make
such a file here we run a separate Python process whose ``__main__`` defines that
class (the original's definition, ``init_weights`` included), seed it, give its
BatchNorm real running statistics with a few training-mode forwards, and save it.
That process imports only torch and numpy, never this package, so the file is what
the original would have produced, not something our own loader shaped.

Optionally the process also writes reference inputs, logits and softmax
probabilities it computed itself (an ``.npz``), for tests that compare our safe
loader against the original class's forward. Those are computed the way they are
compared: in batches of the original's 256 rows (``reference_batch``) and at the
calling process's torch thread count, because a float32 matmul is bit-identical only
for the same batch shape, and not across thread counts on every CPU.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from virnucpro_core.atomic import atomic_path

_SCRIPT = r"""
import json, sys
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class MLPClassifier(nn.Module):
    def __init__(self, input_dim, hidden_dim, num_class):
        super(MLPClassifier, self).__init__()
        self.hidden_layer = nn.Linear(input_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, num_class)
        self.dropout = nn.Dropout(0.5)
        self.init_weights()

    def init_weights(self):
        nn.init.xavier_uniform_(self.hidden_layer.weight)
        nn.init.xavier_uniform_(self.output_layer.weight)

    def forward(self, x):
        x = self.hidden_layer(x)
        x = self.bn1(x)
        x = F.relu(x)
        x = self.dropout(x)
        x = self.output_layer(x)
        return x


def write(args):
    torch.manual_seed(args["seed"])
    model = MLPClassifier(args["input_dim"], args["hidden_dim"], args["num_class"])
    with torch.no_grad():
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn1.bias.normal_(0.0, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(64, args["input_dim"]) * 2.0 + 0.5)
    model.eval()
    if args["location"] != "cpu":
        # The original trained on a GPU, so its storages are tagged e.g. "cuda:0". Tag
        # ours the same way without needing a GPU: the bytes are what a GPU save writes.
        torch.serialization.location_tag = lambda storage: args["location"]
    torch.save(model, args["path"])

    if args["reference"]:
        torch.set_num_threads(args["threads"])
        generator = torch.Generator().manual_seed(args["seed"] + 1)
        inputs = torch.randn(args["n_reference"], args["input_dim"], generator=generator)
        # In the original's batches (DataLoader, batch_size rows at a time): a matmul over 44
        # rows need not give the bits the same rows get inside a 300-row one.
        logits, probabilities = [], []
        with torch.no_grad():
            for start in range(0, args["n_reference"], args["batch_size"]):
                batch_logits = model(inputs[start : start + args["batch_size"]])
                logits.append(batch_logits)
                probabilities.append(F.softmax(batch_logits, dim=1))
        logits, probabilities = torch.cat(logits), torch.cat(probabilities)
        with open(args["reference"], "wb") as handle:
            np.savez(handle, inputs=inputs.numpy(), logits=logits.numpy(), probabilities=probabilities.numpy())


for spec in json.loads(sys.argv[1]):
    write(spec)
"""


def write_original_mlp(
    path: Path,
    *,
    input_dim: int = 3328,
    hidden_dim: int = 512,
    num_class: int = 2,
    seed: int = 0,
    reference: Path | None = None,
    n_reference: int = 16,
    storage_location: str = "cpu",
    reference_batch: int = 256,
) -> Path:
    """Save a seeded random MLP as ``torch.save(model)`` from a ``__main__`` script.

    ``reference``, when given, receives an ``.npz`` with ``inputs``
    ``(n_reference, input_dim)`` and the ``logits`` and ``probabilities`` the
    saving process computed for them in eval mode. ``storage_location`` tags the
    saved tensors as a GPU save would (``"cuda:0"``, as the published files, trained
    on a GPU, may be) while computing on the CPU. The reference is computed
    ``reference_batch`` rows at a time (the original's 256, as
    :func:`virnucpro_core.classifier.score` does) at this process's torch thread count.
    Both files are written atomically. Returns ``path``.
    """
    spec = OriginalMLP(Path(path), input_dim, hidden_dim, num_class, seed, reference, n_reference, storage_location,
                       reference_batch)
    write_original_mlps([spec])
    return Path(path)


@dataclass(frozen=True)
class OriginalMLP:
    """Arguments of one :func:`write_original_mlp` call, for writing several at once."""

    path: Path
    input_dim: int = 3328
    hidden_dim: int = 512
    num_class: int = 2
    seed: int = 0
    reference: Path | None = None
    n_reference: int = 16
    storage_location: str = "cpu"
    reference_batch: int = 256


def write_original_mlps(specs: list[OriginalMLP]) -> list[Path]:
    """Write several original-style MLPs from one subprocess (one torch start-up)."""
    import torch

    threads = torch.get_num_threads()  # the reference is computed as the caller will recompute it
    with contextlib.ExitStack() as stack:
        args = []
        for spec in specs:
            Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
            tmp_reference = ""
            if spec.reference is not None:
                Path(spec.reference).parent.mkdir(parents=True, exist_ok=True)
                tmp_reference = str(stack.enter_context(atomic_path(spec.reference)))
            args.append(
                {
                    "path": str(stack.enter_context(atomic_path(spec.path))),
                    "reference": tmp_reference,
                    "input_dim": spec.input_dim,
                    "hidden_dim": spec.hidden_dim,
                    "num_class": spec.num_class,
                    "seed": spec.seed,
                    "n_reference": spec.n_reference,
                    "location": spec.storage_location,
                    "batch_size": spec.reference_batch,
                    "threads": threads,
                }
            )
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, json.dumps(args)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"writing an original-style MLP failed:\n{done.stderr}")
    return [Path(spec.path) for spec in specs]
