"""virnucpro-kmer passes the contract kit every backend's tests should call."""

from virnucpro_core.testing.contract import check_backend_descriptor, check_embedder_contract
from virnucpro_kmer.embedder import KmerEmbedder
from virnucpro_kmer.plugin import KMER_V1

SEQUENCES = ["ACGTACGTTGCA", "GATTACA", "ttgacNNNacgtgg", "CCCCGGGGAAAATTTTAC", "ACG", "ATATATATATATATATATATAT"]


def test_embedder_keeps_the_contract():
    check_embedder_contract(KmerEmbedder(), SEQUENCES)


def test_embedder_keeps_the_contract_across_many_small_batches():
    check_embedder_contract(KmerEmbedder(batch_size=2), SEQUENCES)


def test_embedder_keeps_the_contract_for_another_k():
    check_embedder_contract(KmerEmbedder(3), SEQUENCES)


def test_descriptor_is_valid_and_importing_the_plugin_stays_light():
    check_backend_descriptor(KMER_V1)
    assert KMER_V1.factory.__module__ == "virnucpro_kmer.plugin"
