"""The LSTM controller (ENAS section 2.2), one implementation for every search space.

The controller walks the space's decision list, one LSTM step per decision, and samples a whole
batch of architectures at once. Op decisions use a softmax over a linear head; index and skip
decisions use anchor attention over the nodes decided so far:
    logits_i = v^T tanh(W_prev h_i + W_curr h_current)
(a softmax for an index, an independent sigmoid per anchor for skips). All logits are divided by
the temperature and clipped with C * tanh(.). Training is REINFORCE with a moving-average
baseline; the entropy bonus is added to the reward as in the official code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from enas.arch import Architecture
from enas.config import ControllerConfig
from enas.spaces.base import Decision


@dataclass
class Samples:
    """A batch of n sampled architectures with the differentiable terms REINFORCE needs."""

    architectures: list[Architecture]
    log_prob: torch.Tensor       # (n,) sum over decisions of log p(choice)
    entropy: torch.Tensor        # (n,) sum over decisions of the entropy of their distribution
    skip_penalty: torch.Tensor   # (n,) KL(skip probability || target rate), summed over skips


class Controller(nn.Module):
    def __init__(self, space_name: str, decisions: Sequence[Decision], initial_anchors: int,
                 cfg: ControllerConfig):
        super().__init__()
        self.space_name, self.decisions, self.initial_anchors, self.cfg = \
            space_name, list(decisions), initial_anchors, cfg
        hidden = cfg.hidden
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.start = nn.Parameter(torch.zeros(1, hidden))
        # Decisions over the same op names share one head and one embedding table.
        vocabularies = sorted({d.options for d in decisions if d.kind == "op"})
        self._vocabulary = {options: i for i, options in enumerate(vocabularies)}
        self.op_heads = nn.ModuleList(nn.Linear(hidden, len(v)) for v in vocabularies)
        self.op_embeddings = nn.ModuleList(nn.Embedding(len(v), hidden) for v in vocabularies)
        self.attn_prev = nn.Linear(hidden, hidden, bias=False)
        self.attn_curr = nn.Linear(hidden, hidden, bias=False)
        self.attn_v = nn.Linear(hidden, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def forward(self, n: int, generator: torch.Generator | None = None, greedy: bool = False) -> Samples:
        """Sample n architectures (or the n-fold most likely one when `greedy`)."""
        cfg = self.cfg
        hidden_size = cfg.hidden
        h = c = self.start.new_zeros(n, hidden_size)
        inputs = self.start.expand(n, hidden_size)
        anchors: list[torch.Tensor] = []
        keys: list[torch.Tensor] = []
        log_prob = self.start.new_zeros(n)
        entropy = self.start.new_zeros(n)
        skip_penalty = self.start.new_zeros(n)
        columns: list[torch.Tensor] = []
        rows = torch.arange(n)

        for _ in range(self.initial_anchors):
            h, c = self.lstm(inputs, (h, c))
            anchors.append(h)
            keys.append(self.attn_prev(h))
        for decision in self.decisions:
            h, c = self.lstm(inputs, (h, c))
            if decision.kind == "op":
                vocab = self._vocabulary[decision.options]
                logits = self._clip(self.op_heads[vocab](h), cfg.tanh_constant / cfg.op_tanh_reduce)
                choice, lp, ent = _categorical(logits, generator, greedy)
                inputs = self.op_embeddings[vocab](choice)
            else:
                positions = decision.anchors or range(decision.size)
                stacked = torch.stack([anchors[p] for p in positions], dim=1)   # (n, k, H)
                scores = torch.tanh(torch.stack([keys[p] for p in positions], dim=1) + self.attn_curr(h)[:, None])
                logits = self._clip(self.attn_v(scores).squeeze(-1), cfg.tanh_constant)  # (n, k)
                if decision.kind == "index":
                    choice, lp, ent = _categorical(logits, generator, greedy)
                    inputs = stacked[rows, choice]
                else:
                    choice, lp, ent, kl = _bernoulli(logits, generator, greedy, cfg.skip_target)
                    skip_penalty = skip_penalty + kl
                    inputs = (choice[:, :, None] * stacked).sum(1) / (1 + choice.sum(1, keepdim=True))
            log_prob, entropy = log_prob + lp, entropy + ent
            columns.append(choice)
            if decision.ends_node:
                anchors.append(h)
                keys.append(self.attn_prev(h))

        architectures = [Architecture(self.space_name, tuple(
            tuple(col[i].long().tolist()) if col.dim() == 2 else int(col[i]) for col in columns))
            for i in range(n)]
        return Samples(architectures, log_prob, entropy, skip_penalty)

    def _clip(self, logits: torch.Tensor, tanh_constant: float) -> torch.Tensor:
        logits = logits / self.cfg.temperature
        return tanh_constant * torch.tanh(logits) if tanh_constant > 0 else logits


def _categorical(logits: torch.Tensor, generator: torch.Generator | None, greedy: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    log_p = torch.log_softmax(logits, dim=-1)
    with torch.no_grad():
        choice = log_p.argmax(-1) if greedy else \
            torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(-1)
    chosen = log_p.gather(-1, choice[:, None]).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return choice, chosen, entropy


def _bernoulli(logits: torch.Tensor, generator: torch.Generator | None, greedy: bool, target: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    p = torch.sigmoid(logits)
    with torch.no_grad():
        bits = (p > 0.5).float() if greedy else torch.bernoulli(p, generator=generator)
    log_p1, log_p0 = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
    chosen = (bits * log_p1 + (1 - bits) * log_p0).sum(-1)
    entropy = -(p * log_p1 + (1 - p) * log_p0).sum(-1)
    # KL(p || target) pulls the skip rate toward the target (ENAS macro space)
    kl = (p * (log_p1 - math.log(target)) + (1 - p) * (log_p0 - math.log(1 - target))).sum(-1)
    return bits, chosen, entropy, kl


@dataclass
class UpdateStats:
    reward: float      # mean raw reward of the update's samples
    baseline: float    # baseline after the update
    entropy: float     # mean entropy of the sampled policies
    loss: float


def reinforce_update(controller: Controller, optimizer: torch.optim.Optimizer,
                     reward_of: Callable[[Architecture], float], baseline: float | None,
                     generator: torch.Generator | None) -> tuple[float, UpdateStats]:
    """One controller update from `cfg.aggregate` sampled architectures; returns the new baseline.

    REINFORCE (ENAS section 2.2): grad = (R - b) grad log p(arch), where R is the reward plus the
    entropy bonus and b the exponential moving average of R.
    """
    cfg = controller.cfg
    controller.train()
    samples = controller(cfg.aggregate, generator)
    rewards = torch.tensor([reward_of(arch) for arch in samples.architectures])
    bonus_rewards = rewards + cfg.entropy_weight * samples.entropy.detach()
    advantages = torch.empty_like(bonus_rewards)
    for i, reward in enumerate(bonus_rewards.tolist()):
        baseline = reward if baseline is None else baseline  # start from the first reward
        advantages[i] = reward - baseline
        baseline = baseline - (1 - cfg.baseline_decay) * (baseline - reward)
    loss = -(advantages * samples.log_prob).mean() + cfg.skip_weight * samples.skip_penalty.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return baseline, UpdateStats(rewards.mean().item(), baseline, samples.entropy.mean().item(),
                                 loss.item())


def build_optimizer(controller: Controller) -> torch.optim.Adam:
    # The official code uses Adam with beta1 = 0 and eps = 1e-3 for the controller.
    return torch.optim.Adam(controller.parameters(), lr=controller.cfg.lr, betas=(0.0, 0.999), eps=1e-3)
