"""The LSTM controller (ENAS section 2.2), one implementation for every search space.

The controller walks the space's decision list, one LSTM step per decision, and samples a whole
batch of architectures at once. Op decisions use a softmax over a linear head; index and skip
decisions use anchor attention over the nodes decided so far:
    logits_i = v^T tanh(W_prev h_i + W_curr h_current)
(a softmax for an index, an independent bit per anchor for skips). All logits are divided by
the temperature and clipped with C * tanh(.). The inputs a space has before any decision (a
cell's two inputs) are anchors whose attention keys come from the LSTM and whose values, fed on
when one is chosen, are zeros, as in the official micro controller.

Switches that follow one official controller or another (ControllerConfig says which preset
uses which):
- `skip_form`: a skip bit is drawn with P = sigmoid(2q) (the official general_controller.py's
  softmax over [-q, q]) or sigmoid(q); the KL penalty toward the target rate reads sigmoid(q),
  summed over a layer's bits and averaged over layers.
- `entropy_form`: the entropy bonus counts every option (full) or only the chosen one (sampled).
- `node_step`: one more LSTM step makes each node's anchor; the next node starts afresh.
- `separable_bias`: op heads start biased toward separable convolutions (official micro).
- `position_prior` (the official PTB controllers): an index decision's logits lose distance^2 / 6,
  the distance counted back from the node being decided, and the chosen anchor enters the next
  step divided by 0.1 + its distance.
Training is REINFORCE with a moving-average baseline; the entropy bonus is added to the reward as
in the official code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from enas.config import ControllerConfig
from enas.errors import UserError
from enas.spaces.architecture import Architecture
from enas.spaces.base import Decision, SearchSpace
from enas.tasks import BYTES_PER_PARAMETER, available_memory


@dataclass
class Samples:
    """A batch of n sampled architectures with the differentiable terms REINFORCE needs."""

    architectures: list[Architecture]
    decision_log_prob: torch.Tensor  # (n, D) log p(choice) of each decision (a skip set's: its bits' sum)
    decision_entropy: torch.Tensor   # (n, D) the entropy of each decision's distribution (a skip set's: its bits')
    sampled_entropy: torch.Tensor    # (n,) -p(a) log p(a) of each chosen option (each skip bit), summed
    skip_penalty: torch.Tensor       # (n,) KL(skip probability || target rate): a layer's sum, averaged over layers

    @property
    def log_prob(self) -> torch.Tensor:
        """(n,) log p(architecture): the sum over its decisions."""
        return self.decision_log_prob.sum(1)

    @property
    def entropy(self) -> torch.Tensor:
        """(n,) the entropy of each sample's whole policy: the sum over its decisions."""
        return self.decision_entropy.sum(1)

    def bonus_entropy(self, form: str) -> torch.Tensor:
        """(n,) the entropy the reward's bonus counts: `full` or `sampled` (ControllerConfig.entropy_form)."""
        return self.entropy if form == "full" else self.sampled_entropy


@dataclass
class _Walk:
    """What the controller carries while it walks the decision list for a batch of samples."""

    h: torch.Tensor                  # (n, H) LSTM state
    c: torch.Tensor                  # (n, H)
    inputs: torch.Tensor             # (n, H) the next step's input
    anchors: list[torch.Tensor] = field(default_factory=list)   # per node (n, H): what a chosen node feeds on
    keys: list[torch.Tensor] = field(default_factory=list)      # per node (n, H): its attention key
    # width -> (position, logits, choice) per categorical decision
    drawn: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    # (position, bit logits, KL logits, bits) per skip set
    skips: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    columns: list[torch.Tensor] = field(default_factory=list)   # per decision (n,) or (n, k): the choices


class Controller(nn.Module):
    def __init__(self, space_name: str, decisions: Sequence[Decision], initial_anchors: int,
                 cfg: ControllerConfig):
        super().__init__()
        self.space_name, self.decisions, self.initial_anchors, self.cfg = \
            space_name, list(decisions), initial_anchors, cfg
        hidden = cfg.hidden
        # One LSTM cell, as a single (x, h) -> gates product: nn.LSTMCell costs twice as much at
        # these tiny sizes, where the controller's time is the number of ops, not their size.
        self.lstm_weight = nn.Parameter(torch.empty(2 * hidden, 4 * hidden))   # gates i, f, g, o
        # biases off: the official LSTMs have none (stack_lstm in melodyguan/enas src/common_ops.py,
        # enas_lm src/controller.py _lstm), nor have their macro and PTB op heads (w_soft alone)
        self.lstm_bias = nn.Parameter(torch.empty(4 * hidden)) if cfg.biases else None
        self.start = nn.Parameter(torch.zeros(1, hidden))
        # Decisions over the same op names share one head and one embedding table.
        vocabularies = sorted({d.options for d in decisions if d.kind == "op"})
        self._vocabulary = {options: i for i, options in enumerate(vocabularies)}
        head_bias = cfg.biases or cfg.separable_bias   # separable_bias is the official micro's b_soft
        self.op_heads = nn.ModuleList(nn.Linear(hidden, len(v), bias=head_bias) for v in vocabularies)
        self.op_embeddings = nn.ModuleList(nn.Embedding(len(v), hidden) for v in vocabularies)
        self.attn_prev = nn.Linear(hidden, hidden, bias=False)
        self.attn_curr = nn.Linear(hidden, hidden, bias=False)
        self.attn_v = nn.Linear(hidden, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
        # separable_bias: the fixed offset after the clipping in the normal cell, per vocabulary
        self._normal_offsets: dict[int, torch.Tensor] = {}
        if cfg.separable_bias:
            with torch.no_grad():
                for options, vocab in self._vocabulary.items():
                    self.op_heads[vocab].bias.copy_(10.0 * _separable(options))
                    self._normal_offsets[vocab] = 0.25 * (2 * _separable(options) - 1)

    @classmethod
    def for_space(cls, space: SearchSpace, cfg: ControllerConfig) -> Controller:
        """The controller of a search space (its `name`, `decisions()` and `initial_anchors`); a one-line
        error naming controller.hidden when its weights and gradients would not fit in the memory free
        (counted on torch's meta device first, which allocates nothing)."""
        with torch.device("meta"):
            size = sum(p.numel() for p in cls(space.name, space.decisions(), space.initial_anchors, cfg).parameters())
        available = available_memory()
        if available and BYTES_PER_PARAMETER * size > available:
            raise UserError(f"the controller's weights need {BYTES_PER_PARAMETER * size / 2**30:,.1f} GiB ({size:,} "
                            f"parameters), more than the {available / 2**30:,.1f} GiB of memory free; lower "
                            f"controller.hidden={cfg.hidden}")
        return cls(space.name, space.decisions(), space.initial_anchors, cfg)

    def forward(self, n: int, generator: torch.Generator | None = None, greedy: bool = False) -> Samples:
        """Sample n architectures (or the n-fold most likely one when `greedy`).

        The loop only draws: each decision's log-probability and entropy are computed once it is
        over, for all decisions of one kind and width at once (a few ops instead of a few per
        decision: the controller's cost is the number of small ops, not their size)."""
        zeros = self.start.new_zeros(n, self.cfg.hidden)
        walk = _Walk(zeros, zeros, self.start.expand(n, self.cfg.hidden))
        for _ in range(self.initial_anchors):
            walk.h, walk.c = self._lstm(walk.inputs, walk.h, walk.c)
            walk.anchors.append(torch.zeros_like(walk.h))   # an input's key is the LSTM's, its value zeros
            walk.keys.append(self.attn_prev(walk.h))
        for position, decision in enumerate(self.decisions):
            walk.h, walk.c = self._lstm(walk.inputs, walk.h, walk.c)
            if decision.kind == "op":
                choice = self._draw_op(walk, position, decision, generator, greedy)
            elif decision.kind == "index":
                choice = self._draw_index(walk, position, decision, generator, greedy)
            else:
                choice = self._draw_skips(walk, position, decision, generator, greedy)
            walk.columns.append(choice)
            if decision.ends_node:
                self._end_node(walk)
        return self._samples(walk)

    def _draw_op(self, walk: _Walk, position: int, decision: Decision, generator: torch.Generator | None,
                 greedy: bool) -> torch.Tensor:
        """An op decision through its vocabulary's head -> the choices (n,)."""
        cfg = self.cfg
        vocab = self._vocabulary[decision.options]
        logits = self._clip(self.op_heads[vocab](walk.h), cfg.tanh_constant / cfg.op_tanh_reduce)
        if cfg.separable_bias and decision.name.startswith("normal."):   # official: the first cell's sampler
            logits = logits + self._normal_offsets[vocab]
        choice = _draw_categorical(logits, generator, greedy)
        walk.drawn.setdefault(logits.shape[1], []).append((position, logits, choice))
        walk.inputs = self.op_embeddings[vocab](choice)
        return choice

    def _attend(self, walk: _Walk, decision: Decision) -> tuple[torch.Tensor, torch.Tensor]:
        """The anchors (n, k, H) a decision chooses among and their clipped attention logits (n, k)."""
        positions = decision.anchors or range(decision.size)
        stacked = torch.stack([walk.anchors[p] for p in positions], dim=1)
        scores = torch.tanh(torch.stack([walk.keys[p] for p in positions], dim=1) + self.attn_curr(walk.h)[:, None])
        return stacked, self._clip(self.attn_v(scores).squeeze(-1), self.cfg.tanh_constant)

    def _draw_index(self, walk: _Walk, position: int, decision: Decision, generator: torch.Generator | None,
                    greedy: bool) -> torch.Tensor:
        """One earlier node by anchor attention -> the choices (n,)."""
        stacked, logits = self._attend(walk, decision)
        rows = torch.arange(logits.shape[0])
        if self.cfg.position_prior:   # the official PTB controllers' prior toward recent nodes
            distance = torch.arange(logits.shape[1], 0, -1, dtype=logits.dtype)
            logits = logits - distance ** 2 / 6
        choice = _draw_categorical(logits, generator, greedy)
        walk.drawn.setdefault(logits.shape[1], []).append((position, logits, choice))
        walk.inputs = stacked[rows, choice]
        if self.cfg.position_prior:
            walk.inputs = walk.inputs / (0.1 + distance[choice])[:, None]
        return choice

    def _draw_skips(self, walk: _Walk, position: int, decision: Decision, generator: torch.Generator | None,
                    greedy: bool) -> torch.Tensor:
        """An independent bit per anchor -> the bits (n, k), as floats."""
        stacked, logits = self._attend(walk, decision)
        # the official ENAS code draws a bit from a softmax over [-q, q]: P(skip) = sigmoid(2q)
        bit_logits = 2 * logits if self.cfg.skip_form == "enas" else logits
        choice = _draw_bernoulli(bit_logits, generator, greedy)
        walk.skips.append((position, bit_logits, logits, choice))
        walk.inputs = (choice[:, :, None] * stacked).sum(1) / (1 + choice.sum(1, keepdim=True))
        return choice

    def _end_node(self, walk: _Walk) -> None:
        """The state after a node's last decision becomes that node's anchor."""
        if self.cfg.node_step:   # the official micro controller: one more step makes the node's anchor
            walk.h, walk.c = self._lstm(walk.inputs, walk.h, walk.c)
            walk.inputs = self.start.expand(*walk.h.shape)
        walk.anchors.append(walk.h)
        walk.keys.append(self.attn_prev(walk.h))

    def _samples(self, walk: _Walk) -> Samples:
        """The walk's architectures with every decision's log-probability and entropy."""
        n = walk.h.shape[0]
        # position -> (n,) log p(choice) and entropy of that decision; the sampled entropy's sum
        log_probs: dict[int, torch.Tensor] = {}
        entropies: dict[int, torch.Tensor] = {}
        sampled_entropy = self.start.new_zeros(n)
        for group in walk.drawn.values():
            positions = [p for p, _, _ in group]
            lp, ent = _categorical_terms(torch.stack([lg for _, lg, _ in group], 1),
                                         torch.stack([ch for _, _, ch in group], 1))
            log_probs.update(zip(positions, lp.unbind(1)))
            entropies.update(zip(positions, ent.unbind(1)))
            sampled_entropy = sampled_entropy - (lp.exp() * lp).sum(1)
        skip_penalty = self.start.new_zeros(n)
        if walk.skips:
            skips = walk.skips
            lp, ent, kl = _bernoulli_terms(torch.cat([lg for _, lg, _, _ in skips], 1),
                                           torch.cat([q for _, _, q, _ in skips], 1),
                                           torch.cat([bits for *_, bits in skips], 1), self.cfg.skip_target)
            widths = [q.shape[1] for _, _, q, _ in skips]
            positions = [p for p, *_ in skips]
            for table, terms in ((log_probs, lp), (entropies, ent)):
                table.update((p, t.sum(1)) for p, t in zip(positions, terms.split(widths, 1)))
            sampled_entropy = sampled_entropy - (lp.exp() * lp).sum(1)   # each bit's -p(b) log p(b)
            skip_penalty = torch.stack([t.sum(1) for t in kl.split(widths, 1)], 1).mean(1)
        order = range(len(self.decisions))
        return Samples(_architectures(self.space_name, walk.columns, n), torch.stack([log_probs[p] for p in order], 1),
                       torch.stack([entropies[p] for p in order], 1), sampled_entropy, skip_penalty)

    @property
    def max_entropy(self) -> float:
        """The entropy of a whole architecture under the uniform policy: its most exploring."""
        return sum(max_entropy(d) for d in self.decisions)

    @torch.no_grad()
    def make_uniform(self) -> Controller:
        """Zero the heads and the attention's output, so that every logit is 0: each option of a
        decision equally likely, each skip bit a fair coin (the random-search baselines)."""
        for head in self.op_heads:
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
        self.attn_v.weight.zero_()
        return self

    @property
    def is_uniform(self) -> bool:
        """Whether every logit is 0, as make_uniform leaves it: a random baseline's controller."""
        heads = [p for head in self.op_heads for p in head.parameters()] + [self.attn_v.weight]
        return not any(p.any() for p in heads)

    def _lstm(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xh = torch.cat([x, h], 1)
        gates = xh @ self.lstm_weight if self.lstm_bias is None else torch.addmm(self.lstm_bias, xh, self.lstm_weight)
        hidden = h.shape[1]
        activated = gates.sigmoid()   # i, f and o use theirs; g is tanh of its own quarter
        c = torch.addcmul(activated[:, hidden:2 * hidden] * c, activated[:, :hidden],
                          gates[:, 2 * hidden:3 * hidden].tanh())
        return activated[:, 3 * hidden:] * c.tanh(), c

    def _clip(self, logits: torch.Tensor, tanh_constant: float) -> torch.Tensor:
        logits = logits / self.cfg.temperature
        return tanh_constant * torch.tanh(logits) if tanh_constant > 0 else logits


def _architectures(space_name: str, columns: Sequence[torch.Tensor], n: int) -> list[Architecture]:
    """The n architectures whose choices are `columns` (one per decision: (n,) or (n, k) skip bits)."""
    values = [col.long().tolist() for col in columns]   # one conversion per decision, not per sample
    return [Architecture(space_name, tuple(tuple(column[i]) if isinstance(column[i], list) else column[i]
                                           for column in values)) for i in range(n)]


def max_entropy(decision: Decision) -> float:
    """The entropy of one decision under the uniform policy, in nats."""
    if decision.kind == "op":
        return math.log(len(decision.options))
    choices = len(decision.anchors) or decision.size
    return math.log(choices) if decision.kind == "index" else choices * math.log(2)   # a fair coin per skip bit


@torch.no_grad()
def _draw_categorical(logits: torch.Tensor, generator: torch.Generator | None, greedy: bool) -> torch.Tensor:
    """One choice per row of logits (n, k): the most likely, or drawn by inverting the cumulative
    distribution at a uniform number (torch.multinomial costs ten times more at these sizes)."""
    if greedy:
        return logits.argmax(-1)
    cumulative = torch.softmax(logits, -1).cumsum(-1)
    uniform = torch.rand(logits.shape[0], 1, generator=generator)
    return (cumulative < uniform * cumulative[:, -1:]).sum(-1).clamp_max(logits.shape[1] - 1)


@torch.no_grad()
def _draw_bernoulli(logits: torch.Tensor, generator: torch.Generator | None, greedy: bool) -> torch.Tensor:
    """Independent bits with probabilities sigmoid(logits), as floats."""
    threshold = torch.full_like(logits, 0.5) if greedy else torch.rand(logits.shape, generator=generator)
    return (torch.sigmoid(logits) > threshold).float()


def _separable(options: tuple[str, ...]) -> torch.Tensor:
    """1.0 for each separable convolution among op `options`, else 0.0."""
    return torch.tensor([float(name.startswith("sep_conv")) for name in options])


def _categorical_terms(logits: torch.Tensor, choices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (n, D, k) of D decisions, choices (n, D) -> log p(choice) (n, D) and the entropy of
    each decision (n, D)."""
    log_p = torch.log_softmax(logits, dim=-1)
    chosen = log_p.gather(-1, choices[..., None]).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(2)
    return chosen, entropy


def _bernoulli_terms(logits: torch.Tensor, kl_logits: torch.Tensor, bits: torch.Tensor, target: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits and bits (n, m) of m independent skips -> per bit log p(bit), its entropy, and
    KL(sigmoid(kl_logits) || target), each (n, m)."""
    log_p1, log_p0 = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
    chosen = bits * log_p1 + (1 - bits) * log_p0
    entropy = -(log_p1.exp() * log_p1 + log_p0.exp() * log_p0)
    # KL(q || target) pulls the skip rate toward the target (ENAS macro space); the official code
    # takes q = sigmoid of the clipped logit, not the probability it draws with
    q1, q0 = nn.functional.logsigmoid(kl_logits), nn.functional.logsigmoid(-kl_logits)
    kl = q1.exp() * (q1 - math.log(target)) + q0.exp() * (q0 - math.log(1 - target))
    return chosen, entropy, kl


def draw_architectures(space: SearchSpace, n: int, seed: int = 0, cfg: ControllerConfig | None = None
                       ) -> list[Architecture]:
    """n architectures of `space` from a freshly initialised controller (of `cfg`, default settings
    if None), as a search's first epoch draws them (for benchmarks and tests)."""
    with torch.no_grad():
        controller = Controller.for_space(space, cfg or ControllerConfig())
        return controller(n, torch.Generator().manual_seed(seed)).architectures


@dataclass
class UpdateStats:
    reward: float      # mean raw reward of the update's samples
    baseline: float    # baseline after the update
    entropy: float     # mean entropy of the sampled policies
    loss: float


def reinforce_update(controller: Controller, optimizer: torch.optim.Optimizer, samples: Samples,
                     rewards: Sequence[float], baseline: float | None) -> tuple[float, UpdateStats]:
    """One controller update from sampled architectures and their rewards; returns the new baseline.

    REINFORCE (ENAS section 2.2): grad = (R - b) grad log p(arch), where R is the reward plus the
    entropy bonus and b the exponential moving average of R. `samples` come from the controller in
    training mode, with their graph. With `entropy_floor`, samples whose mean entropy is below that
    share of the maximum also climb the entropy's gradient, by the shortfall in nats.
    """
    cfg = controller.cfg
    raw = torch.tensor(rewards)
    bonus_rewards = raw + cfg.entropy_weight * samples.bonus_entropy(cfg.entropy_form).detach()
    advantages = torch.empty_like(bonus_rewards)
    for i, reward in enumerate(bonus_rewards.tolist()):
        baseline = reward if baseline is None else baseline  # start from the first reward
        advantages[i] = reward - baseline
        baseline = baseline - (1 - cfg.baseline_decay) * (baseline - reward)
    loss = -(advantages * samples.log_prob).mean() + cfg.skip_weight * samples.skip_penalty.mean()
    if cfg.entropy_floor > 0:
        loss = loss + (cfg.entropy_floor * controller.max_entropy - samples.entropy.mean()).clamp_min(0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return baseline, UpdateStats(raw.mean().item(), baseline, samples.entropy.mean().item(),
                                 loss.item())


def build_optimizer(controller: Controller) -> torch.optim.Adam:
    """Adam with the config's beta1 and eps: melodyguan/enas's 0 and 1e-3 (src/utils.py:218) by default,
    TensorFlow's 0.9 and 1e-8 in enas_lm (src/controller.py _build_train_op: AdamOptimizer(learning_rate))."""
    cfg = controller.cfg
    # fused: one kernel for all the small tensors (foreach still took some 40 ops per update)
    return torch.optim.Adam(controller.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, 0.999), eps=cfg.adam_eps,
                            fused=True)
