"""Per-agent MLPs held as one stack: agent k's weights are slice k, evaluated with batched matmuls."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn


class StackedLinear(nn.Module):
    """`n` independent linear layers: x (n, B, in) -> (n, B, out)."""

    def __init__(self, n: int, in_features: int, out_features: int, fan_in: Sequence[int] | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n, 1, out_features))
        # nn.Linear's default init, per agent; `fan_in` gives each agent's real input width
        # when inputs are zero-padded, and the padded rows start (and stay) at zero.
        fan_in = fan_in or [in_features] * n
        with torch.no_grad():
            for k, width in enumerate(fan_in):
                bound = 1.0 / math.sqrt(width)
                self.weight[k].uniform_(-bound, bound)
                self.weight[k, width:] = 0.0
                self.bias[k].uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[2] == 1:  # a critic's output: a dot product per row runs faster than a matrix-vector bmm
            return (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class StackedMLP(nn.Module):
    """`n` MLPs with ReLU hidden layers: x (n, B, in) -> (n, B, out), optional sigmoid output."""

    def __init__(
        self,
        n: int,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        sigmoid_output: bool = False,
        fan_in: Sequence[int] | None = None,
    ):
        super().__init__()
        widths = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(
            StackedLinear(n, w_in, w_out, fan_in if i == 0 else None)
            for i, (w_in, w_out) in enumerate(itertools.pairwise(widths))
        )
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_first(self.layers[0](x))

    def forward_shared(self, x: torch.Tensor, first_offset: torch.Tensor | None = None) -> torch.Tensor:
        """Every network on the same input x (B, in) -> (n, B, out). `first_offset` (n, B, width of the
        first layer), if given, is added to the first layer's output: a per-network change of input
        that is linear in the first layer costs only its own columns (see `Maddpg.actor_losses`).
        The input is broadcast, not copied; one wide (B, in) x (in, n * out) matmul was tried instead
        and was slower, its output's layout costing more than the wider product saved."""
        first = self.layers[0](x.expand(len(self.layers[0].weight), *x.shape))
        return self.after_first(first if first_offset is None else first + first_offset)

    def after_first(self, x: torch.Tensor) -> torch.Tensor:
        """The rest of the MLP, from the first layer's output (before its activation)."""
        for layer in itertools.islice(self.layers, 1, None):  # slicing a ModuleList builds a new one
            x = layer(torch.relu(x))
        return torch.sigmoid(x) if self.sigmoid_output else x

    def rows(self) -> torch.Tensor:
        """Every agent's parameters as one row: (n, P)."""
        return torch.cat([p.detach().flatten(1) for p in self.parameters()], dim=1)

    def row_views(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """(n', P) rows as `rows` lays them out -> tensors shaped like the parameters, with n' agents."""
        params = list(self.parameters())
        parts = rows.split([p[0].numel() for p in params], dim=1)
        return [part.reshape(len(rows), *p.shape[1:]) for part, p in zip(parts, params, strict=True)]

    @torch.no_grad()
    def load_rows(self, rows: torch.Tensor) -> None:
        """Set every agent's parameters from `rows` (n, P), laid out as `rows()` lays them."""
        torch._foreach_copy_(list(self.parameters()), self.row_views(rows))

    def select(self, agents: Sequence[int]) -> StackedMLP:
        """A copy holding only the networks of `agents` (indices into the stack)."""
        index = torch.tensor(list(agents), device=self.layers[0].weight.device)
        subset = copy.deepcopy(self)
        for layer in subset.layers:
            layer.weight = nn.Parameter(layer.weight.detach()[index].clone())
            layer.bias = nn.Parameter(layer.bias.detach()[index].clone())
        return subset
