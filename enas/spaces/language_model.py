"""What the language models of the recurrent spaces share around their cells: the config keys
of the embedding, the hidden size and the dropouts, and the tied embedding and decoder.

A model holds `embedding` (V, H), `decoder_bias` (V,) and `cfg`, and runs
    x = embed(tokens) -> its cell over time -> decode(outputs, targets)
with these dropouts in training: whole words of the embedding, locked (one mask per sequence)
on the embedded input and on the cell output, and a variational mask on the recurrent state
(the recurrent space also puts it on every node's input: recurrent.dropout_every_node).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from enas.fields import option
from enas.spaces.decoder_loss import decoded_cross_entropy


@dataclass
class LanguageModelConfig:
    hidden: int = option(64, "embedding and hidden size (tied embeddings need them equal)", min=1)
    init_range: float = option(0.1, "uniform initialisation range of all weights", min=0.0)
    dropout_embedding: float = option(0.0, "probability of dropping a whole word embedding", min=0.0, max=0.99)
    dropout_input: float = option(0.0, "locked dropout on the embedded input", min=0.0, max=0.99)
    dropout_hidden: float = option(0.0, "variational dropout on the recurrent state h_{t-1} (the recurrent space: "
                                   "also on every node's input, recurrent.dropout_every_node)", min=0.0, max=0.99)
    dropout_output: float = option(0.0, "locked dropout on the cell output before the decoder", min=0.0, max=0.99)


def dropout_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted-dropout mask shaped like `like`, broadcast over the dims where `like` has size 1."""
    return like.new_empty(like.shape).bernoulli_(1 - p) / (1 - p)


class TiedLanguageModel(nn.Module):
    """The embedding and decoder half of a language model; a subclass creates `embedding`,
    `decoder_bias` and `cfg` (in its own parameter order) and runs its cell between the two."""

    embedding: nn.Parameter
    decoder_bias: nn.Parameter
    cfg: LanguageModelConfig

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (T, B) -> embedded (T, B, H), with the embedding and input dropouts in training."""
        cfg, embedding = self.cfg, self.embedding
        if self.training and cfg.dropout_embedding > 0:  # drop whole words (same word, same mask)
            embedding = embedding * dropout_mask(embedding[:, :1], cfg.dropout_embedding)
        x = F.embedding(tokens, embedding)
        if self.training and cfg.dropout_input > 0:
            x = x * dropout_mask(x[:1], cfg.dropout_input)
        return x

    def hidden_mask(self, state: torch.Tensor) -> torch.Tensor | None:
        """The variational mask of the recurrent state (B, H) for this sequence, or None."""
        p = self.cfg.dropout_hidden
        return dropout_mask(state, p) if self.training and p > 0 else None

    def decode(self, output: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Cell outputs (T, B, H) -> their mean cross-entropy against targets (T, B), computed
        without the logits (decoder_loss.py), or the logits (T, B, V) when targets is None."""
        cfg = self.cfg
        dropped = output * dropout_mask(output[:1], cfg.dropout_output) \
            if self.training and cfg.dropout_output > 0 else output
        if targets is not None:
            return decoded_cross_entropy(dropped.flatten(0, 1), self.embedding, self.decoder_bias, targets.flatten())
        # the bias is added inside the matmul (addmm): one (T, B, V) tensor instead of two
        return F.linear(dropped, self.embedding, self.decoder_bias)
