"""VirNucPro's re-statement of DNABERT-S's ``configuration_bert.py`` (see ``bert_layers.py``)."""

from transformers import BertConfig as _TransformersBertConfig


class BertConfig(_TransformersBertConfig):
    """transformers' ``BertConfig`` plus the ALiBi starting size DNABERT-S's config carries.

    Attention dropout defaults to 0, as in MosaicBERT's own config class.
    """

    def __init__(self, alibi_starting_size=512, attention_probs_dropout_prob=0.0, **kwargs):
        super().__init__(attention_probs_dropout_prob=attention_probs_dropout_prob, **kwargs)
        self.alibi_starting_size = alibi_starting_size
