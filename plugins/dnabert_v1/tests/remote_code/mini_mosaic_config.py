"""Config class of the miniature MosaicBERT (see mini_mosaic_layers.py)."""

from transformers import BertConfig


class MiniMosaicConfig(BertConfig):
    """transformers' BertConfig plus the ALiBi starting size that DNABERT-S's config carries."""

    def __init__(self, alibi_starting_size=512, **kwargs):
        super().__init__(**kwargs)
        self.alibi_starting_size = alibi_starting_size
