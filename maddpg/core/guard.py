"""The non-finite guard: a NaN or Inf loss or parameter stops the run before it writes another checkpoint.

Both checks run where values already reach the host: the per-agent losses of a metrics row (summed
on the device between rows, see metrics.Tally) and every parameter before a checkpoint, in one
fused isfinite over all of them. The update itself gains no host sync.
"""

from __future__ import annotations

import math

import torch

from maddpg.core.comm import Comm, stop_together
from maddpg.core.errors import NonFiniteError
from maddpg.core.learner import Maddpg

NETWORKS = ("actor", "critic", "target_actor", "target_critic")


def nonfinite_loss(row: dict, agent_names: list[str]) -> str | None:
    """The first per-agent loss of a metrics row that is NaN or Inf, as "AGENT's NETWORK loss is nan"."""
    for name in agent_names:
        for network in ("critic", "actor"):
            value = row.get(f"{network}_loss/{name}")
            if value is not None and not math.isfinite(value):
                return f"{name}'s {network} loss is {value}"
    return None


def nonfinite_parameter(learner: Maddpg, agent_names: list[str]) -> str | None:
    """The first network of `learner` with a NaN or Inf parameter, as "AGENT's NETWORK has ...".
    `agent_names` names every learning agent; local networks hold `learner.agents`, the target actor all."""
    networks = [getattr(learner, name) for name in NETWORKS]
    every = torch.cat([p.detach().flatten() for network in networks for p in network.parameters()])
    if bool(every.isfinite().all()):  # the one host sync of the common case
        return None
    for name, network in zip(NETWORKS, networks, strict=True):
        bad = (~network.rows().isfinite().all(dim=1)).nonzero().flatten().tolist()  # rows: one per held agent
        if bad:
            agent = bad[0] if name == "target_actor" else learner.agents[bad[0]]
            return f"{agent_names[agent]}'s {name.replace('_', ' ')} has a non-finite parameter"
    raise AssertionError("a non-finite parameter outside the four networks")


def nonfinite_error(problem: str | None, env_steps: int, comm: Comm) -> NonFiniteError | None:
    """The error that stops the run for `problem` (None: no problem), for stop_together."""
    if problem is None:
        return None
    where = f"rank {comm.rank}: " if comm.world_size > 1 else ""
    return NonFiniteError(
        f"{where}{problem} at env step {env_steps}: the run stops and keeps its last good checkpoint; "
        "lower maddpg.actor_lr / maddpg.critic_lr or check the prey and env settings, then start again"
    )


def stop_on_nonfinite_loss(row: dict, agent_names: list[str], env_steps: int, comm: Comm) -> None:
    """Every rank stops with exit code 3 if some rank's metrics row holds a non-finite loss (collective)."""
    stop_together(comm, nonfinite_error(nonfinite_loss(row, agent_names), env_steps, comm))


def stop_on_nonfinite_parameter(learner: Maddpg, agent_names: list[str], env_steps: int, comm: Comm) -> None:
    """Every rank stops with exit code 3 if some rank's learner holds a non-finite parameter (collective)."""
    stop_together(comm, nonfinite_error(nonfinite_parameter(learner, agent_names), env_steps, comm))
