"""virnucpro-kmer: an example embedding backend for VirNucPro.

It turns each nucleotide sequence into its normalised k-mer frequency vector. It needs
no model weights and no GPU, which makes it a fast baseline and a small, complete
example of a third-party backend (see ``docs/writing-a-backend.md`` in VirNucPro).
"""

__version__ = "0.1.0"
