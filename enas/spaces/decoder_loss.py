"""The language models' decoder and cross-entropy in one pass over row chunks.

`decoded_cross_entropy(outputs, weight, bias, targets)` is
`F.cross_entropy(F.linear(outputs, weight, bias), targets)` without ever holding the (N, V)
logits whole. With PTB's 10,000 words a window of 2,240 tokens has 90 MB of logits, and the
plain path writes and reads them some six times (product, log-softmax, its gradient, the two
gradient products): memory traffic that costs as much as the products at hidden 200. Here each
chunk of rows is decoded, turned into its loss and its gradient while it sits in the cache, and
both gradient products are taken right away; the backward only scales the stored gradients.

When no gradient is wanted (rewards, evaluation) the chunks give just the loss.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 20   # logits per chunk: 4 MB of float32, about a core's L2 cache (measured best)


def decoded_cross_entropy(outputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          targets: torch.Tensor) -> torch.Tensor:
    """outputs (N, H), weight (V, H), bias (V,), targets (N,) int64 -> mean cross-entropy (float32)."""
    wants_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (outputs, weight, bias))
    (outputs, weight, bias), no_autocast = in_autocast_dtype(outputs, weight, bias)
    with no_autocast:
        if wants_grad:
            total = _DecodedCrossEntropy.apply(outputs, weight, bias, targets)
        else:
            total = _chunked_loss(outputs, weight, bias, targets, grads=None)
    return total / targets.numel()


def in_autocast_dtype(*tensors: torch.Tensor | None) -> tuple[tuple[torch.Tensor | None, ...], torch.autocast]:
    """For a hand-written autograd function, which computes in one dtype: the tensors cast to the
    autocast dtype if autocast is on for their device (as they are otherwise), and a context that
    turns autocast off around the function. The casts are ordinary autograd ops, so float32
    weights still get float32 gradients."""
    device_type = next(t for t in tensors if t is not None).device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        tensors = tuple(t.to(dtype) if t is not None else None for t in tensors)
    return tensors, torch.autocast(device_type, enabled=False)


class _DecodedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy whose forward also computes the gradients (see the module docstring)."""

    @staticmethod
    def forward(ctx, outputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        # the weight and bias gradients add up over chunks: in float32 even when the products are bf16
        grads = (torch.empty_like(outputs), torch.zeros_like(weight, dtype=torch.float32),
                 torch.zeros_like(bias, dtype=torch.float32))
        total = _chunked_loss(outputs, weight, bias, targets, grads)
        ctx.save_for_backward(*grads)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_outputs, grad_weight, grad_bias = ctx.saved_tensors
        return grad_outputs * grad_total, grad_weight * grad_total, grad_bias * grad_total, None


def _chunked_loss(outputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                  grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The summed loss over chunks of rows; with `grads` (outputs, weight, bias), also the gradients
    of that sum, written (outputs) or added (weight, bias) into them."""
    rows = max(1, CHUNK_ELEMENTS // weight.shape[0])
    total = outputs.new_zeros((), dtype=torch.float32)
    for start in range(0, outputs.shape[0], rows):
        x, y = outputs[start:start + rows], targets[start:start + rows]
        logits = torch.addmm(bias, x, weight.t())
        # one fused pass (in float32 whatever the products' dtype), where logsumexp takes five
        log_probs = torch.log_softmax(logits, 1, dtype=torch.float32)
        total -= log_probs.gather(1, y[:, None]).sum()
        if grads is None:
            continue
        # d(sum of losses)/d(logits) = softmax - one-hot, formed in place
        probs = log_probs.exp_().to(logits.dtype)
        probs[torch.arange(len(y), device=y.device), y] -= 1
        grad_outputs, grad_weight, grad_bias = grads
        torch.mm(probs, weight, out=grad_outputs[start:start + rows])
        if grad_weight.dtype == probs.dtype:
            grad_weight.addmm_(probs.t(), x)
        else:
            grad_weight += (probs.t() @ x).float()
        grad_bias += probs.sum(0)
    return total
