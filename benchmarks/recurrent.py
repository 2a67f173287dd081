"""Speed of the recurrent path: shared-weight steps of the supernet against a fixed cell written in
plain PyTorch, and against the matrix products alone.

At each size, these run interleaved on the same synthetic text (so the machine's load hits them
alike), each through the real training step (`TextTask.train_loss` + `train_step`: forward,
cross-entropy, backward, gradient clipping, SGD):
  supernet  `RecurrentLM` with a freshly sampled architecture per step (drawn by a real, untrained
            controller, as the search draws them)
  plain     one fixed architecture, node by node with autograd (`PlainCellLM`): the straightforward
            implementation the supernet's overhead is measured against
  matmuls   every matrix product of one supernet step at its real shapes, and nothing else
  reward    the supernet's reward of one validation window (forward only), for the projection
MFU is the matmuls' time over the supernet step's time: the share of the step spent in matrix
products at the speed this machine reaches on exactly those products. Dropout is off throughout,
so that the supernet and the plain cell compute the same thing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.steps import rewarder, trainer
from benchmarks.timing import Timing, interleaved, kernels_per_call, synchronizer
from enas.config import Config, load_config, preset_path
from enas.data.text import Corpus
from enas.spaces.base import Model
from enas.spaces.recurrent import RecurrentPlan
from enas.strategies.controller import draw_architectures
from enas.tasks.text import TextTask

PTB_VOCAB = 10_000          # Penn Treebank (Mikolov's preprocessing)
PTB_TRAIN_TOKENS = 929_589  # ptb.train.txt with one <eos> per line
PTB_VALID_TOKENS = 73_760   # ptb.valid.txt with one <eos> per line


@dataclass(frozen=True)
class RnnSize:
    """The shapes that decide the cost of a step."""

    name: str
    nodes: int
    hidden: int
    batch: int
    bptt: int
    vocab: int

    @property
    def tokens(self) -> int:
        return self.batch * self.bptt

    def forward_flops(self) -> int:
        """Matrix-product FLOPs of one forward pass: per step, node 1's x and h products and one
        product per other node, each (B, H) x (H, 2H); then the tied decoder (T*B, H) x (H, V)."""
        cell = 2 * self.batch * self.hidden * 2 * self.hidden * (self.nodes + 1)
        decoder = 2 * self.batch * self.hidden * self.vocab
        return self.bptt * (cell + decoder)


def preset_config(name: str, overrides: Sequence[str] = ()) -> Config:
    # ptb reads a data folder that the benchmarks never open; validation only needs it named.
    extra = ["data.root=unused-by-benchmarks"] if name == "ptb" else []
    return load_config([preset_path(name)], extra + list(overrides))


def sizes() -> dict[str, RnnSize]:
    """default: the default preset; paper: the ptb preset (the paper's PTB search) with PTB's
    vocabulary; reference: the paper's cell and batch at hidden 200, the size PyTorch ports quote."""
    default, ptb = preset_config("default"), preset_config("ptb")
    paper = RnnSize("paper", ptb.recurrent.nodes, ptb.recurrent.hidden, ptb.search.batch_size,
                    ptb.search.bptt, PTB_VOCAB)
    return {
        "default": RnnSize("default", default.recurrent.nodes, default.recurrent.hidden,
                           default.search.batch_size, default.search.bptt, default.data.vocab_size),
        "reference": RnnSize("reference", paper.nodes, 200, paper.batch, paper.bptt, paper.vocab),
        "paper": paper,
    }


def size_config(size: RnnSize) -> Config:
    """The default preset's training settings at this size, without dropout."""
    return preset_config("default", [
        f"recurrent.nodes={size.nodes}", f"recurrent.hidden={size.hidden}",
        f"search.batch_size={size.batch}", f"search.bptt={size.bptt}",
        *(f"recurrent.dropout_{kind}=0.0" for kind in ("embedding", "input", "hidden", "output"))])


def synthetic_corpus(size: RnnSize, windows: int, generator: torch.Generator) -> Corpus:
    """Uniformly random tokens: the speed of a step does not depend on what the text says."""
    def split() -> torch.Tensor:
        return torch.randint(size.vocab, (size.batch * (size.bptt * windows + 1),), generator=generator)
    return Corpus(split(), split(), split(), tuple(str(i) for i in range(size.vocab)), None)


class PlainCellLM(nn.Module):
    """One fixed ENAS cell, node by node in plain PyTorch, with separate c and h weights per node
    (ENAS eqs. 1-2) and the decoder tied to the embedding. Same math and FLOPs as `RecurrentLM`."""

    def __init__(self, vocab_size: int, plan: RecurrentPlan, hidden: int, init_range: float):
        super().__init__()
        self.plan = plan

        def weight(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-init_range, init_range))

        self.embedding = weight(vocab_size, hidden)
        self.w_xc, self.w_xh, self.w_hc, self.w_hh = (weight(hidden, hidden) for _ in range(4))
        self.w_c = nn.ParameterList(weight(hidden, hidden) for _ in plan.inputs)
        self.w_h = nn.ParameterList(weight(hidden, hidden) for _ in plan.inputs)
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (T, B) -> logits (T, B, V), or with targets (T, B) their mean cross-entropy;
        last hidden (B, H); cell outputs (T, B, H)."""
        plan, x = self.plan, F.embedding(tokens, self.embedding)
        h = hidden if hidden is not None else x.new_zeros(x.shape[1:])
        outputs = []
        for x_t in x:
            c = torch.sigmoid(x_t @ self.w_xc + h @ self.w_hc)
            nodes = [c * _ACTIVATIONS[plan.activations[0]](x_t @ self.w_xh + h @ self.w_hh) + (1 - c) * h]
            for j, (w_c, w_h) in enumerate(zip(self.w_c, self.w_h), start=1):
                prev = nodes[plan.inputs[j - 1]]
                c = torch.sigmoid(prev @ w_c)
                nodes.append(c * _ACTIVATIONS[plan.activations[j]](prev @ w_h) + (1 - c) * prev)
            h = torch.stack([nodes[n] for n in plan.loose_ends]).mean(0)
            outputs.append(h)
        output = torch.stack(outputs)
        logits = output @ self.embedding.t() + self.decoder_bias
        if targets is not None:
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten()), h, output
        return logits, h, output


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x, "sigmoid": torch.sigmoid}


class MatmulPass:
    """Every matrix product of one supernet training step, at its shapes, and nothing else:
    per time step and node the forward (B, H) x (H, 2H) and its input gradient (with one weight
    per node, so that the weights stream through the caches as in the step); the x projection and
    the decoder over the whole window with both their gradients; one weight gradient
    (H, T*B) x (T*B, 2H) per cell weight. That is exactly 3x `RnnSize.forward_flops`."""

    def __init__(self, size: RnnSize, device: torch.device):
        b, h, v, tb = size.batch, size.hidden, size.vocab, size.tokens
        self.size = size

        def values(*shape: int) -> torch.Tensor:  # moderate values: no denormals to slow the products
            return torch.rand(*shape, device=device) * 0.1

        self.weights = values(size.nodes, h, 2 * h)
        self.weights_t = values(size.nodes, 2 * h, h)  # the cell's backward uses contiguous transposes
        self.step_in, self.step_out, self.step_grad = values(b, h), values(b, 2 * h), values(b, h)
        self.window_in, self.window_out = values(tb, h), values(tb, 2 * h)
        self.window_grad, self.weight_grad = values(tb, h), values(h, 2 * h)
        self.embedding, self.logits, self.embedding_grad = values(v, h), values(tb, v), values(v, h)

    def __call__(self) -> None:
        size = self.size
        for _ in range(size.bptt):
            for weight, weight_t in zip(self.weights, self.weights_t):
                torch.mm(self.step_in, weight, out=self.step_out)
                torch.mm(self.step_out, weight_t, out=self.step_grad)
        weight = self.weights[0]
        torch.mm(self.window_in, weight, out=self.window_out)          # x projection
        torch.mm(self.window_out, weight.t(), out=self.window_grad)    # its input gradient
        for _ in range(size.nodes + 1):                                # w_x, w_h, N-1 edges
            torch.mm(self.window_in.t(), self.window_out, out=self.weight_grad)
        torch.mm(self.window_in, self.embedding.t(), out=self.logits)       # decoder
        torch.mm(self.logits, self.embedding, out=self.window_grad)
        torch.mm(self.logits.t(), self.window_in, out=self.embedding_grad)


@dataclass
class RnnResult:
    size: RnnSize
    timings: dict[str, Timing]
    kernels: int   # per supernet training step

    @property
    def supernet_tokens_per_s(self) -> float:
        return self.size.tokens / self.timings["supernet"].median

    @property
    def plain_tokens_per_s(self) -> float:
        return self.size.tokens / self.timings["plain"].median

    @property
    def overhead_ratio(self) -> float:
        """Supernet step time over the plain fixed cell's: below 1 the supernet is the faster."""
        return self.timings["supernet"].median / self.timings["plain"].median

    @property
    def mfu(self) -> float:
        return self.timings["matmuls"].median / self.timings["supernet"].median

    @property
    def matmul_bound_tokens_per_s(self) -> float:
        return self.size.tokens / self.timings["matmuls"].median

    @property
    def achieved_gflops(self) -> float:
        return 3 * self.size.forward_flops() / self.timings["supernet"].median / 1e9

    @property
    def reward_s(self) -> float:
        return self.timings["reward"].median

    def config(self) -> dict:
        return {**asdict(self.size), "dropout": 0.0, "reps": self.timings["supernet"].reps}


def bench_size(size: RnnSize, device: torch.device, budget_s: float, min_reps: int, seed: int = 0) -> RnnResult:
    """Supernet step, plain fixed-cell step, the step's matmuls alone and one reward, interleaved."""
    torch.manual_seed(seed)
    config = size_config(size)
    windows = 8
    corpus = synthetic_corpus(size, windows, torch.Generator().manual_seed(seed))
    supernet_task, plain_task = (TextTask(config, config.search, corpus).to(device) for _ in range(2))
    space = supernet_task.space
    architectures = draw_architectures(space, 32, seed, config.controller)
    supernet = space.supernet().to(device).train()
    plain = PlainCellLM(size.vocab, RecurrentPlan.of(architectures[0]), size.hidden,
                        config.recurrent.init_range).to(device).train()

    def sampled(index: int) -> Model:
        return Model(supernet, architectures[index % len(architectures)])

    plain_model = Model(plain)
    # each step on the next window, the task carrying the hidden state
    variants = {"supernet": trainer(supernet, supernet_task, config.search, sampled),
                "plain": trainer(plain, plain_task, config.search, lambda index: plain_model),
                "matmuls": MatmulPass(size, device),
                "reward": rewarder(supernet, supernet_task, architectures)}
    # counted first, on the first drawn architecture: counted after the timings it would be
    # whichever architecture the number of repetitions happened to reach
    kernels = kernels_per_call(variants["supernet"])
    timings = interleaved(variants, warmup=1 if size.hidden >= 500 else 2, budget_s=budget_s,
                          min_reps=min_reps, max_reps=30, sync=synchronizer(device))
    return RnnResult(size, timings, kernels)


def paper_search_seconds(paper: RnnResult, controller_s_per_arch: float, sample_s_per_arch: float) -> float:
    """Wall time of the ptb preset's whole search at the measured speeds: per epoch the shared
    steps, the controller's updates with one reward per sampled architecture, and the evaluation
    of the most likely architecture on all of PTB's validation text."""
    ptb = preset_config("ptb")
    search, controller = ptb.search, ptb.controller
    step_s = paper.timings["supernet"].median
    steps = search.steps_per_epoch or _windows(PTB_TRAIN_TOKENS, search.batch_size, search.bptt)
    eval_windows = search.eval_batches or _windows(PTB_VALID_TOKENS, search.batch_size, search.bptt)
    rewards = controller.steps * controller.aggregate
    epoch_s = (steps * (step_s + sample_s_per_arch)
               + rewards * (paper.reward_s + controller_s_per_arch)
               + eval_windows * paper.reward_s)
    return search.epochs * epoch_s


def _windows(tokens: int, batch: int, bptt: int) -> int:
    """BPTT windows in a split of `tokens` batched into `batch` columns (as `TextTask` cuts them)."""
    return math.ceil((tokens // batch - 1) / bptt)
