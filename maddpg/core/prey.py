"""Prey that do not learn: a frozen pretrained actor, or uniform random actions; the prey file format;
and `python -m maddpg.core.prey export`, which ships a run's prey (see maddpg/core/pretrained.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from maddpg.core.checkpoint import checkpoint_dir, load_checkpoint, load_file, require_complete, save_atomic
from maddpg.core.config import Config, EnvConfig, Mode, PreyMode, load_config, to_dict
from maddpg.core.envs import make_env
from maddpg.core.errors import ConfigError, command_errors
from maddpg.core.networks import StackedMLP
from maddpg.core.pretrained import MANIFEST, PREY_DIR, record, resolve_prey
from maddpg.core.scripted import FleeingPrey, Scripted, StillPrey

PREY_FILE_VERSION = 1
Generators = tuple[torch.Generator, torch.Generator]  # a random prey's: acting, and its critics' targets


class FrozenPrey(nn.Module):
    """A pretrained prey. It never learns, so its target actor *is* its actor: critics bootstrap
    with the loaded policy, never with a leftover random initialisation. A discrete prey's actor
    gives logits; the learner plays their argmax."""

    def __init__(self, actor: StackedMLP):
        super().__init__()
        self.actor = actor.requires_grad_(False)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, n_prey, O) -> actions (B, n_prey, A) (discrete: logits), noise-free."""
        return self.actor(obs.transpose(0, 1)).transpose(0, 1)

    target_act = act

    def with_streams(self, generators: Generators) -> FrozenPrey:
        """Itself: it draws nothing."""
        return self


class RandomPrey:
    """Uniform random actions in [0, 1]^A. Acting and the critics' targets draw from two streams of
    their own, so the joint actions never depend on how many updates ran between env steps (pipeline
    mode's rank 0 acts while its learner ranks compute targets) and exploration draws stay apart."""

    def __init__(self, act_dim: int, generator: torch.Generator, target_generator: torch.Generator | None = None):
        self.act_dim, self.generator = act_dim, generator
        self.target_generator = generator if target_generator is None else target_generator

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, n_prey, O) -> actions (B, n_prey, A)."""
        return self._draw(obs, self.generator)

    def target_act(self, obs: torch.Tensor) -> torch.Tensor:
        return self._draw(obs, self.target_generator)

    def with_streams(self, generators: Generators) -> RandomPrey:
        """A random prey drawing from `generators` (acting, targets), leaving this one's streams alone."""
        return RandomPrey(self.act_dim, *generators)

    def _draw(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.rand((*obs.shape[:2], self.act_dim), generator=generator, device=obs.device)

    def state_dict(self) -> dict:
        return {"act": self.generator.get_state(), "target": self.target_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["act"])
        self.target_generator.set_state(state["target"])


def prey_payload(actor: StackedMLP, env: EnvConfig, obs_dim: int, act_dim: int, hidden: list[int]) -> dict:
    """What a prey file holds: the prey actors' weights and the shapes they were trained for."""
    return {
        "version": PREY_FILE_VERSION,
        "num_adversaries": env.num_adversaries,
        "num_good": env.num_good,
        "num_obstacles": env.num_obstacles,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "actions": env.actions.value,
        "hidden": list(hidden),
        "actor": {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()},
    }


def prey_actor(rows: torch.Tensor, obs_dim: int, hidden: list[int], act_dim: int, discrete: bool) -> StackedMLP:
    """The prey actors from their parameter rows (n_prey, P), laid out as StackedMLP.rows lays them."""
    actor = StackedMLP(len(rows), obs_dim, hidden, act_dim, sigmoid_output=not discrete).to(rows.device)
    actor.load_rows(rows)
    return actor


def load_prey(path: str, env: EnvConfig, obs_dim: int, act_dim: int, device: torch.device | str) -> FrozenPrey:
    """Load a shipped prey (by name) or a prey file written by a run with prey.mode=learn; its teams
    must match `env`."""
    payload = load_file(resolve_prey(path), device)
    if not isinstance(payload, dict) or payload.get("version") != PREY_FILE_VERSION:
        raise ConfigError(f"prey.checkpoint {path} is not a prey file: use a run's prey.pt")
    trained = tuple(payload.get(k) for k in ("num_adversaries", "num_good", "num_obstacles", "obs_dim", "act_dim"))
    wanted = (env.num_adversaries, env.num_good, env.num_obstacles, obs_dim, act_dim)
    if trained != wanted:
        raise ConfigError(
            f"prey.checkpoint {path} was trained for (adversaries, good, obstacles, obs, act) = {trained}, "
            f"this run has {wanted}: set env.* to match or train a prey for these teams"
        )
    actions = payload.get("actions", "continuous")  # files written before discrete actions existed
    if actions != env.actions:
        raise ConfigError(
            f"prey.checkpoint {path} plays {actions} actions, this run env.actions={env.actions}: "
            f"set env.actions={actions} or use a prey trained with env.actions={env.actions}"
        )
    try:
        actor = StackedMLP(env.num_good, obs_dim, payload["hidden"], act_dim, sigmoid_output=not env.discrete)
        actor = actor.to(device)
        actor.load_state_dict(payload["actor"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a header or weights that do not fit
        raise ConfigError(
            f"prey.checkpoint {path} is a damaged prey file ({error!r:.200}): use a run's prey.pt"
        ) from None
    return FrozenPrey(actor)


def write_prey_file(run_dir: Path, env_steps: int, path: Path) -> Config:
    """The prey actor of a single-process run's complete checkpoint at `env_steps` -> a prey file at
    `path`; -> the run's config."""
    checkpoint = checkpoint_dir(run_dir, env_steps)
    if not checkpoint.is_dir():
        raise ConfigError(f"{run_dir} has no checkpoint at {env_steps} env steps: train it further or pick a step")
    require_complete(checkpoint, "pick another step")
    state = load_checkpoint(checkpoint, 0)
    if state["config"]["mode"] != Mode.single or state["config"]["prey"]["mode"] != PreyMode.learn:
        raise ConfigError(f"{run_dir} is not a single-mode run whose prey learns: export needs one")
    cfg = load_config(base=state["config"])
    env = make_env(cfg.env)
    actor = StackedMLP(cfg.n_learners, env.obs_dim, cfg.maddpg.hidden, env.act_dim, sigmoid_output=not cfg.env.discrete)
    actor.load_state_dict(state["learner"]["actor"])
    prey_actor = actor.select(range(cfg.env.num_adversaries, cfg.n_agents))
    save_atomic(prey_payload(prey_actor, cfg.env, env.obs_dim, env.act_dim, cfg.maddpg.hidden), path)
    return cfg


def prey_policy(
    name: str, env: EnvConfig, obs_dim: int, act_dim: int, device: torch.device | str, generators: Generators
) -> FrozenPrey | RandomPrey | Scripted:
    """A prey that does not learn, by name: `still` or `flee` (scripted), `random` (drawing its actions
    and its critics' target actions from `generators`), or a shipped prey or prey file (load_prey)."""
    if name == PreyMode.still:
        return StillPrey()
    if name == PreyMode.flee:
        return FleeingPrey(env)
    if name == PreyMode.random:
        return RandomPrey(act_dim, *generators)
    return load_prey(name, env, obs_dim, act_dim, device)


def export(
    run_dir: Path, env_steps: int, name: str, command: str, prey_dir: Path = PREY_DIR, entry: dict | None = None
) -> Path:
    """The prey actor of a single-process run's checkpoint at `env_steps` -> the shipped prey `name`
    (prey_dir/NAME.pt), recorded in prey_dir's manifest with its sha256, provenance and `entry`."""
    path = prey_dir / f"{name}.pt"
    cfg = write_prey_file(run_dir, env_steps, path)
    provenance = {"env_steps": env_steps, "seed": cfg.train.seed, "command": command, "config": to_dict(cfg)}
    record(name, path, provenance | (entry or {}), prey_dir / MANIFEST.name)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Ship a run's prey: python -m maddpg.core.prey export RUN_DIR ...")
    parser.add_argument("action", choices=["export"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, required=True, help="the checkpoint's env steps")
    parser.add_argument("--name", required=True, help="the shipped prey's name, e.g. weak or strong")
    parser.add_argument("--command", required=True, help="the command that trained the run, for the manifest")
    args = parser.parse_args()
    with command_errors():
        print(export(args.run_dir, args.steps, args.name, args.command))


if __name__ == "__main__":
    main()
