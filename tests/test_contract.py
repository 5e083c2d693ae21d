"""The backend contract kit passes a good embedder and catches each kind of broken one.

Every broken embedder below differs from the good one in exactly one way, and the
test names the message the kit must give for it, so a kit that stopped checking
something would fail here.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from virnucpro_core.backends import Backend
from virnucpro_core.testing.contract import check_backend_descriptor, check_embedder_contract

SEQUENCES = ["ACGTAC", "GGGTTTAAAC", "TTA", "CCCCCCCCCCCCCCCCCC", "AGAGAGAGTT"]


class Composition:
    """A correct embedder: letter counts and length, one sequence at a time, in batches of 2."""

    model_id = "composition"
    dim = 5

    def _rows(self, batch):
        return [[s.count(b) for b in "ACGT"] + [len(s)] for s in batch]

    def embed(self, sequences, progress=None):
        rows = []
        for start in range(0, len(sequences), 2):
            batch = sequences[start : start + 2]
            rows.extend(self._rows(batch))
            if progress is not None:
                progress(len(batch))
        return np.asarray(rows, dtype=np.float32).reshape(len(sequences), 5)

    def close(self):
        pass


class LengthSortedNoUnsort(Composition):
    """Sorts by length for efficient batching and forgets to put rows back."""

    def embed(self, sequences, progress=None):
        return super().embed(sorted(sequences, key=len), progress)


class SortsInPlace(Composition):
    """Sorts the caller's list in place (rows then match the mutated list, not the original)."""

    def embed(self, sequences, progress=None):
        sequences.sort(key=len)
        return super().embed(sequences, progress)


class Float64(Composition):
    def embed(self, sequences, progress=None):
        return super().embed(sequences, progress).astype(np.float64)


class ReturnsList(Composition):
    def embed(self, sequences, progress=None):
        return super().embed(sequences, progress).tolist()


class BatchNormalised(Composition):
    """Divides by the batch maximum: each row depends on its neighbours."""

    def embed(self, sequences, progress=None):
        out = super().embed(sequences, progress)
        return out / out.max() if out.size else out


class FlatWhenEmpty(Composition):
    def embed(self, sequences, progress=None):
        return super().embed(sequences, progress) if sequences else np.zeros(0, dtype=np.float32)


class ProgressOncePerCall(Composition):
    def embed(self, sequences, progress=None):
        out = super().embed(sequences)
        if progress is not None:
            progress(1)
        return out


class NaNForShort(Composition):
    def embed(self, sequences, progress=None):
        out = super().embed(sequences, progress)
        out[[len(s) < 4 for s in sequences]] = np.nan
        return out


class Constant(Composition):
    def embed(self, sequences, progress=None):
        return np.zeros_like(super().embed(sequences, progress))


class WrongDim(Composition):
    dim = 6


def test_a_correct_embedder_passes():
    check_embedder_contract(Composition(), SEQUENCES)


def test_a_correct_embedder_passes_with_two_sequences():
    check_embedder_contract(Composition(), SEQUENCES[:2])


@pytest.mark.parametrize(
    ("embedder", "message"),
    [
        (LengthSortedNoUnsort(), r"row order is wrong: sequence 1 \('GGGTTTAAAC'\) embedded at position 0 .* max \|delta\| 3 > 1e-05"),
        (SortsInPlace(), r"changed the list it was given \(sorted or edited it in place\)"),
        (Float64(), r"^Float64\(composition\)\.embed\(5 sequences\) returned dtype float64, expected float32$"),
        (ReturnsList(), r"returned list, expected numpy\.ndarray"),
        (BatchNormalised(), r"sequence 0 \('ACGTAC'\) embedded alone differs from its row in a batch of 5"),
        (FlatWhenEmpty(), r"embed\(\[\]\) returned shape \(0,\), expected \(0, 5\)"),
        (ProgressOncePerCall(), r"embed\(sequences\) reported progress \[1\] summing to 1, expected 5"),
        (NaNForShort(), r"returned 5 non-finite values \(NaN or inf\), first at row 2, column 0"),
        (Constant(), r"gave the same row for all 5 sequences"),
        (WrongDim(), r"returned shape \(5, 5\), expected \(5, 6\)"),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, str) else "",
)
def test_each_broken_embedder_fails_with_a_message_that_names_the_fault(embedder, message):
    with pytest.raises(AssertionError, match=message):
        check_embedder_contract(embedder, SEQUENCES)


def test_the_row_order_check_needs_two_sequences():
    with pytest.raises(AssertionError, match="needs at least two sequences"):
        check_embedder_contract(Composition(), ["ACGT"])


def test_tolerance_is_absolute_max_difference():
    class Jitter(Composition):
        """Adds 1e-6 times the batch size: a tiny batching effect, like padding in fp32."""

        def embed(self, sequences, progress=None):
            return super().embed(sequences, progress) + np.float32(1e-6 * len(sequences))

    check_embedder_contract(Jitter(), SEQUENCES)  # 4e-6 <= 1e-5
    with pytest.raises(AssertionError, match="embedded alone differs"):
        check_embedder_contract(Jitter(), SEQUENCES, atol=1e-6)


# -- descriptors ---------------------------------------------------------------------

LIGHT_PLUGIN = '''
from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend

def make(options):
    import torch  # heavy imports belong here
    raise NotImplementedError

BACKEND = Backend(family="light", version="v1", modality="nucleotide", dim=5, factory=make)

@hookimpl
def register_backends(register):
    register(BACKEND)
'''

HEAVY_PLUGIN = "import torch\n" + LIGHT_PLUGIN.replace('"light"', '"heavy"')


@pytest.fixture()
def plugin_modules(tmp_path, monkeypatch):
    """Two plugin modules on sys.path: one lazy, one that imports torch at the top."""
    (tmp_path / "light_plugin.py").write_text(textwrap.dedent(LIGHT_PLUGIN))
    (tmp_path / "heavy_plugin.py").write_text(textwrap.dedent(HEAVY_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    import light_plugin

    yield light_plugin
    monkeypatch.delitem(__import__("sys").modules, "light_plugin")


def test_a_lazy_plugin_passes(plugin_modules):
    check_backend_descriptor(plugin_modules.BACKEND)


def test_a_plugin_that_imports_torch_at_the_top_fails(plugin_modules):
    with pytest.raises(AssertionError, match=r"^backend light=v1: 'import heavy_plugin' imports torch; move those imports inside"):
        check_backend_descriptor(plugin_modules.BACKEND, module="heavy_plugin")


def test_a_module_that_cannot_be_imported_fails(plugin_modules):
    with pytest.raises(AssertionError, match=r"^backend light=v1: 'import no_such_plugin' failed in a fresh interpreter: ModuleNotFoundError: No module named 'no_such_plugin'$"):
        check_backend_descriptor(plugin_modules.BACKEND, module="no_such_plugin")


def test_not_a_backend_fails():
    with pytest.raises(AssertionError, match=r"^expected a virnucpro_core\.backends\.Backend, got builtins\.dict$"):
        check_backend_descriptor({"family": "x"})


def test_a_crashing_or_empty_availability_check_fails(plugin_modules):
    def crashes():
        raise RuntimeError("nvidia-smi not found")

    backend = plugin_modules.BACKEND
    with pytest.raises(AssertionError, match=r"check_available\(\) raised RuntimeError: nvidia-smi not found; return a reason string instead"):
        check_backend_descriptor(Backend(**{**backend.__dict__, "check_available": crashes}))
    with pytest.raises(AssertionError, match=r"check_available\(\) returned ''"):
        check_backend_descriptor(Backend(**{**backend.__dict__, "check_available": lambda: ""}))


def test_an_unavailable_backend_with_a_reason_passes(plugin_modules):
    backend = Backend(**{**plugin_modules.BACKEND.__dict__, "check_available": lambda: "needs CUDA"})
    check_backend_descriptor(backend)
