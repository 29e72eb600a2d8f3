"""Typed configuration: the schema with every default documented once, YAML and CLI overrides."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from maddpg.core.errors import ConfigError

SCHEMA_FILE = "maddpg/core/config.py"


class Mode(StrEnum):
    single = "single"  # one process does everything
    data = "data"  # any W ranks: full replicas, own envs and buffers, gradients averaged
    model = "model"  # one rank per learning agent: its actor and critic; actions all-gathered
    pipeline = "pipeline"  # model mode's learners on ranks 1..n, plus rank 0 stepping the envs and owning the buffer
    genetic = "genetic"  # any P ranks: P independent learners that periodically share the best one's critic


class DataBatch(StrEnum):
    split = "split"  # each rank samples batch_size / W: the union is one single-mode batch
    per_rank = "per_rank"  # each rank samples batch_size: the effective batch grows with W


class Schedule(StrEnum):
    constant = "constant"  # a sync every genetic.sync_every env steps per learner (the study)
    adaptive = "adaptive"  # period k is sync_every * growth**k, clamped to [min_period, max_period]


class Strategy(StrEnum):
    critic = "critic"  # the best learner's critic and target critic go to every learner (the study)
    pbt = "pbt"  # Population Based Training: the bottom quantile copies a top learner whole, then perturbs it
    none = "none"  # never sync: the same learners, each on its own (the control that separates sharing from numbers)


class FitnessOpponent(StrEnum):
    """Whom a genetic learner's predators are scored against when the population syncs."""

    own = "own"  # against its own prey (its own prey actors when the prey learns: the study)
    pool = "pool"  # every learner's prey in turn, averaged; with a prey that does not learn, the same as own
    weak = "weak"  # the shipped weak prey (discrete actions: weak_discrete)
    strong = "strong"  # the shipped strong prey (discrete actions: strong_discrete)
    random = "random"  # a uniformly random prey


class PreyMode(StrEnum):
    learn = "learn"  # the prey is a MADDPG agent too
    fixed = "fixed"  # a pretrained prey actor, loaded from `prey.checkpoint` and frozen
    random = "random"  # uniform random actions in [0, 1]^5
    still = "still"  # scripted: never pushes (maddpg/core/scripted.py)
    flee = (
        "flee"  # scripted: flees the predators, round obstacles, away from the arena's edge (maddpg/core/scripted.py)
    )
    mix = "mix"  # env copy e plays prey.mix[e % K], each into a buffer of its own (maddpg.core.opponents.py)


class Actions(StrEnum):
    continuous = "continuous"  # 5 force components in [0, 1]: sigmoid actors, Gaussian and uniform exploration
    discrete = "discrete"  # one of 5 moves: actors give logits, trained through the Gumbel-softmax (Lowe et al. 2017)


class Backend(StrEnum):
    torch = "torch"  # the batched PyTorch twin: mpe2's semantics, all copies stepped as tensors
    mpe2 = "mpe2"  # mpe2 itself, the reference, stepped copy by copy


@dataclass
class EnvConfig:
    backend: Backend = Backend.torch  # torch (the twin, checked against mpe2 in the tests) or mpe2
    num_adversaries: int = 3  # predators
    num_good: int = 1  # prey
    num_obstacles: int = 2
    max_cycles: int = 50  # episode length; episodes end only by this truncation
    n_envs: int = 1  # copies stepped together; each contributes one transition per step
    actions: Actions = Actions.continuous  # discrete: the replay buffer holds one-hot actions

    @property
    def discrete(self) -> bool:
        return self.actions == Actions.discrete


@dataclass
class PreyConfig:
    mode: PreyMode = PreyMode.learn
    checkpoint: str | None = None  # mode=fixed: a shipped prey (weak, strong) or a prey file (a run's prey.pt)
    mix: list[str] = field(default_factory=lambda: ["still", "random", "flee"])  # mode=mix: still, random, flee,
    # a shipped prey or a prey file, each any number of times


@dataclass
class MaddpgConfig:
    actor_lr: float = 1e-3
    critic_lr: float = 1e-4
    gamma: float = 0.95
    tau: float = 0.01  # soft-update rate of the target networks
    target_update_every: int = 10  # soft-update the targets every this many updates
    batch_size: int = 256
    buffer_size: int = 500_000  # transitions; the oldest is overwritten when full
    hidden: list[int] = field(default_factory=lambda: [64, 64])  # MLP widths, actor and critic
    updates_per_step: float = 1.0  # updates of every learning agent per env transition (may be < 1)
    learning_starts: int = 256  # transitions in the buffer before updates begin (>= batch_size)
    # Discrete actions only. Critic targets and the actor loss use a Gumbel-softmax sample of the
    # (target) actor's logits at this temperature: relaxed, or with straight_through the one-hot of
    # its argmax with the relaxed sample's gradient. The actor loss adds logit_penalty times the
    # mean squared logit, as the paper's code does (1e-3), so logits cannot grow without bound.
    gumbel_temperature: float = 1.0
    straight_through: bool = False
    logit_penalty: float = 1e-3


@dataclass
class ExploreConfig:
    epsilon: float = 0.1  # probability of a uniform random action, per agent and step
    noise_std: float = 0.1  # Gaussian noise added to the actor's action otherwise
    decay: float = 5e-7  # both decrease linearly by this much per env transition ...
    floor: float = 0.05  # ... down to this floor


@dataclass
class DistConfig:
    data_batch: DataBatch = DataBatch.split  # data mode: how the batch relates to the world size
    staleness: int = 1  # pipeline mode: rounds of updates rank 0 may act ahead of the learners' weights
    round_updates: int = 8  # pipeline mode: updates shipped together in one round (1: every update)


@dataclass
class GeneticConfig:
    sync_every: int = 5000  # env steps per learner between syncs (the study's 5000); adaptive: the first period
    # Fitness is measured afresh at every sync: the noise-free predator_return of a learner's predators
    # against this opponent, on the evaluation start states, a random prey's draws the same for every
    # learner of a round. Against a learning prey a learner's own predator_return rewards a weak partner
    # as much as strong predators, so by default every learner's predators face every learner's prey.
    fitness_opponent: FitnessOpponent = FitnessOpponent.pool
    diverse_init: bool = True  # each learner its own initial weights (seeding.Streams); false: all alike, as the study
    strategy: Strategy = Strategy.critic
    sync_optimizer: bool = False  # strategy critic: also send the critic's Adam state
    schedule: Schedule = Schedule.constant
    growth: float = 1.5  # adaptive: each period is the previous one times this (< 1: periods shrink) ...
    min_period: int = 1000  # ... clamped to [min_period, max_period] env steps per learner
    max_period: int = 40_000
    quantile: float = 0.25  # pbt: the bottom ceil(P * quantile) learners copy one of the top as many
    perturb: list[float] = field(default_factory=lambda: [0.8, 1.2])  # pbt: factors drawn for each hyperparameter
    # Every learner's buffer also receives the others' transitions, all-gathered at every episode end,
    # whatever the strategy; its buffer then holds P * maddpg.buffer_size, as far back per learner as alone.
    share_experience: bool = False
    # At the end, every learner's predators play this many noise-free episodes against each prey of
    # evaluation.SUITE, on start states of their own, and the best is named in best_learner.json.
    select_episodes: int = 100


@dataclass
class TrainConfig:
    seed: int = 0
    total_steps: int = 2_000_000  # env transitions, all copies together
    eval_every: int = 1000  # env transitions between evaluations
    eval_episodes: int = 20  # noise-free episodes per evaluation, same start states every time
    checkpoint_every: int = 100_000  # env transitions; written at the next episode boundary
    checkpoint_minutes: float = 0.0  # also checkpoint at the first episode boundary this long after the last (0: off)
    keep_checkpoints: int = 2  # newest checkpoints kept in runs/<name>/checkpoints
    checkpoint_buffer: bool = False  # include the replay buffer, so a resume is exact


@dataclass
class RunConfig:
    name: str | None = None  # run directory name; default: a timestamp
    dir: str = "runs"  # parent of run directories
    device: str = "cpu"
    # torch intra-op threads per process. One: these networks are small, and a second thread gained
    # ~15% on an idle 2-core machine but lost 4-100x as soon as another process shared the cores
    # (docs/speed.md, "Threads"). 0 keeps PyTorch's default, a thread per core.
    threads: int = 1
    progress: bool = True  # tqdm progress bar
    gif: bool = True  # at the end, write episode.gif: one noise-free evaluation episode, drawn by mpe2


@dataclass
class Config:
    mode: Mode = Mode.single
    env: EnvConfig = field(default_factory=EnvConfig)
    prey: PreyConfig = field(default_factory=PreyConfig)
    maddpg: MaddpgConfig = field(default_factory=MaddpgConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    genetic: GeneticConfig = field(default_factory=GeneticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def n_agents(self) -> int:
        return self.env.num_adversaries + self.env.num_good

    @property
    def n_learners(self) -> int:
        """Learning agents: the predators, plus the prey when it learns (predators come first)."""
        return self.n_agents if self.prey.mode == PreyMode.learn else self.env.num_adversaries


def load_yaml(path: Path, what: str) -> dict:
    """A YAML file holding a mapping (a config file, a run's config.yaml) -> that mapping."""
    try:
        tree = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # OSError, UnicodeDecodeError, YAML errors; OmegaConf asserts on a top-level scalar
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{what} {path} is not readable YAML ({first_line}): fix or replace the file") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{what} {path} holds a {type(tree).__name__}, not a mapping of sections like train: ...")
    return tree


def load_config(
    config_file: str | None = None,
    overrides: Sequence[str] = (),
    base: dict | None = None,
    world_size: int = 1,
) -> Config:
    """Schema defaults <- `base` (a saved run's config) <- YAML file <- `key=value` overrides,
    checked against the job's `world_size` (torchrun's WORLD_SIZE)."""
    merged = OmegaConf.structured(Config)
    if base is not None:
        merged = _merge(merged, lambda: without_retired(base), "the run's saved config")
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {config_file} not found: pass an existing YAML file to --config")
        tree = load_yaml(path, "config file")
        merged = _merge(merged, lambda: tree, f"config file {config_file}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value: write it as e.g. train.total_steps=20000")
        merged = _merge(merged, lambda item=item: OmegaConf.from_dotlist([item]), f"override {item!r}")
    cfg: Config = _merge(merged, None, "the merged config")
    validate(cfg, world_size)
    return cfg


# Keys that no longer exist, which configs saved before their removal still hold: dropped from a saved
# run's config, so that such a run still resumes and evaluates; anywhere else they are unknown keys.
RETIRED = {"genetic": ("fitness_window",)}  # fitness is measured afresh at every sync (maddpg/distributed/genetic.py)


def without_retired(saved: dict) -> dict:
    """A saved run's config without the RETIRED keys."""
    return {section: {key: value for key, value in values.items() if key not in RETIRED[section]}
            if section in RETIRED and isinstance(values, dict) else values
            for section, values in saved.items()}  # fmt: skip


def _merge(merged: DictConfig, update: Callable[[], object] | None, source: str) -> DictConfig | Config:
    """`merged` with `update()` merged in (None: `merged` as a typed Config object), any failure a ConfigError
    naming `source`. OmegaConf raises its own errors on wrong keys and types, and assorted built-in ones
    (TypeError, IndexError, YAML errors) on malformed keys and values."""
    try:
        return OmegaConf.to_object(merged) if update is None else OmegaConf.merge(merged, update())
    except Exception as e:
        key = getattr(e, "full_key", None)
        message = str(getattr(e, "msg", None) or e).strip().splitlines()
        reason = f"{'config key ' + key + ': ' if key else ''}{message[0] if message else type(e).__name__}"
        raise ConfigError(f"{source}: {reason}; see {SCHEMA_FILE} for the keys and types") from None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def leaves(node: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, value) of every field of a config dataclass, nested sections included."""
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value):
            yield from leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def validate(cfg: Config, world_size: int = 1) -> None:
    """Range and consistency checks that the schema's types cannot express."""
    defaults = dict(leaves(Config()))
    for key, value in leaves(cfg):
        numeric = isinstance(value, list) and all(type(x) in (int, float) for x in defaults[key])
        if numeric:  # the schema types a list, not always its items: a list of numbers by default must stay one
            _require(all(type(x) in (int, float) for x in value), f"{key} must list numbers, got {value}")
        numbers = value if isinstance(value, list) else [value]
        finite = all(math.isfinite(x) for x in numbers if isinstance(x, float))
        _require(finite, f"{key} must be a finite number, got {value}")
    env, m, ex, tr = cfg.env, cfg.maddpg, cfg.explore, cfg.train
    _require(env.num_adversaries >= 1, "env.num_adversaries must be >= 1: set env.num_adversaries=3")
    _require(env.num_good >= 1, "env.num_good must be >= 1: set env.num_good=1")
    _require(env.num_obstacles >= 0, "env.num_obstacles must be >= 0")
    _require(env.max_cycles >= 1, "env.max_cycles must be >= 1: set env.max_cycles=50")
    _require(env.n_envs >= 1, "env.n_envs must be >= 1")
    for key in ("actor_lr", "critic_lr", "tau", "updates_per_step", "gumbel_temperature"):
        _require(getattr(m, key) > 0, f"maddpg.{key} must be > 0, got {getattr(m, key)}")
    _require(0 <= m.gamma <= 1, f"maddpg.gamma must be in [0, 1], got {m.gamma}")
    _require(m.tau <= 1, f"maddpg.tau must be in (0, 1], got {m.tau}")
    _require(m.logit_penalty >= 0, f"maddpg.logit_penalty must be >= 0, got {m.logit_penalty}")
    _require(m.target_update_every >= 1, "maddpg.target_update_every must be >= 1")
    _require(len(m.hidden) >= 1 and min(m.hidden) >= 1, "maddpg.hidden must list positive widths, e.g. [64,64]")
    _require(m.batch_size >= 1, "maddpg.batch_size must be >= 1")
    _require(
        m.batch_size <= m.buffer_size,
        f"maddpg.batch_size ({m.batch_size}) exceeds maddpg.buffer_size ({m.buffer_size}): "
        "lower the batch or grow the buffer",
    )
    _require(
        m.batch_size <= m.learning_starts <= m.buffer_size,
        f"maddpg.learning_starts ({m.learning_starts}) must lie between maddpg.batch_size ({m.batch_size}) "
        f"and maddpg.buffer_size ({m.buffer_size})",
    )
    for key in ("epsilon", "noise_std", "floor"):
        _require(getattr(ex, key) >= 0, f"explore.{key} must be >= 0, got {getattr(ex, key)}")
    _require(ex.epsilon <= 1, f"explore.epsilon is a probability, got {ex.epsilon}")
    _require(ex.decay >= 0, f"explore.decay must be >= 0, got {ex.decay}")
    for key in ("total_steps", "eval_every", "eval_episodes", "checkpoint_every", "keep_checkpoints"):
        _require(getattr(tr, key) >= 1, f"train.{key} must be >= 1, got {getattr(tr, key)}")
    _require(0 <= tr.seed < 2**31, f"train.seed must be in [0, 2**31), got {tr.seed}")
    _require(tr.checkpoint_minutes >= 0, f"train.checkpoint_minutes must be >= 0 (0: off), got {tr.checkpoint_minutes}")
    _require(cfg.run.threads >= 0, "run.threads must be >= 0 (0 keeps PyTorch's default)")
    try:
        device = torch.device(cfg.run.device)
    except RuntimeError:
        raise ConfigError(f"run.device={cfg.run.device} is not a device: use cpu, cuda or cuda:N") from None
    _require(
        device.type != "cuda" or torch.cuda.is_available(),
        f"run.device={cfg.run.device} but PyTorch sees no CUDA device: set run.device=cpu",
    )
    validate_world(cfg, world_size)
    if cfg.prey.mode == PreyMode.fixed:
        _require(
            cfg.prey.checkpoint is not None,
            "prey.mode=fixed needs a prey file: set prey.checkpoint=weak, strong (shipped) or PATH (a run's prey.pt)",
        )
        require_prey_file("prey.checkpoint", cfg.prey.checkpoint)
    if cfg.prey.mode == PreyMode.mix:
        validate_mix(cfg)


def require_prey_file(key: str, name: str) -> None:
    """A prey file's path must exist; a shipped prey's name is checked, with its sha256, where it is
    loaded (prey.load_prey)."""
    path = Path(name)
    _require(path.suffix != ".pt" or path.is_file(), f"{key} {path} not found: name a shipped prey or a run's prey.pt")


def validate_mix(cfg: Config) -> None:
    mix = cfg.prey.mix
    _require(len(mix) >= 2, f"prey.mode=mix needs two or more prey in prey.mix, got {mix}: or use that prey's mode")
    for name in mix:
        _require(name not in (PreyMode.learn, PreyMode.fixed, PreyMode.mix),
                 f"prey.mix holds prey that do not learn (still, random, flee, a shipped prey or a prey file), "
                 f"not {name}")  # fmt: skip
        require_prey_file("prey.mix entry", name)
    _require(cfg.mode not in (Mode.pipeline, Mode.genetic),
             f"prey.mode=mix trains on each prey's batches in turn, which mode {cfg.mode} does not: "
             "use mode single, data or model")  # fmt: skip
    for key, copies in (("env.n_envs", cfg.env.n_envs), ("train.eval_episodes", cfg.train.eval_episodes)):
        _require(copies >= len(mix), f"{key}={copies} leaves prey of prey.mix unplayed: set it to {len(mix)} or more")


def validate_world(cfg: Config, world_size: int) -> None:
    """The mode must fit the number of ranks torchrun started."""
    launch = "torchrun --standalone --nproc_per_node"
    if cfg.mode == Mode.single:
        _require(
            world_size == 1,
            f"mode single runs one process, but {world_size} were started: use --mode data or --mode model, "
            "or run python train.py",
        )
    elif cfg.mode == Mode.model:
        _require(
            world_size <= cfg.n_learners,
            f"mode model puts a block of one or more learning agents on each rank: {cfg.n_learners} learning "
            f"agents take at most {launch}={cfg.n_learners}, not {world_size}",
        )
    elif cfg.mode == Mode.pipeline:
        _require(
            2 <= world_size <= cfg.n_learners + 1,
            f"mode pipeline needs a rank for the envs and one per block of learning agents: {launch}=2 to "
            f"{cfg.n_learners + 1}, not {world_size}",
        )
        _require(cfg.dist.staleness >= 0, f"dist.staleness must be >= 0, got {cfg.dist.staleness}")
        _require(cfg.dist.round_updates >= 1, f"dist.round_updates must be >= 1, got {cfg.dist.round_updates}")
    elif cfg.mode == Mode.genetic:
        g = cfg.genetic
        for key in ("sync_every", "min_period"):
            _require(getattr(g, key) >= 1, f"genetic.{key} must be >= 1, got {getattr(g, key)}")
        _require(g.growth > 0, f"genetic.growth must be > 0, got {g.growth}")
        _require(
            g.min_period <= g.max_period,
            f"genetic.min_period ({g.min_period}) exceeds genetic.max_period ({g.max_period})",
        )
        _require(0 < g.quantile <= 0.5, f"genetic.quantile must be in (0, 0.5], got {g.quantile}")
        _require(g.select_episodes >= 1, f"genetic.select_episodes must be >= 1, got {g.select_episodes}")
        _require(
            len(g.perturb) >= 1 and min(g.perturb) > 0, f"genetic.perturb must list positive factors, got {g.perturb}"
        )
    elif cfg.mode == Mode.data and cfg.dist.data_batch == DataBatch.split:
        _require(
            cfg.maddpg.batch_size % world_size == 0,
            f"dist.data_batch=split divides maddpg.batch_size ({cfg.maddpg.batch_size}) over {world_size} ranks: "
            "make it a multiple of the world size or set dist.data_batch=per_rank",
        )


# What a resumed run may change: how long it goes on, how it evaluates and checkpoints, and run.*.
# Every other key shaped the checkpoint (networks, optimizers, buffer, ranks) or the training itself.
RESUMABLE = (
    "train.total_steps", "train.eval_every", "train.eval_episodes", "train.checkpoint_every",
    "train.checkpoint_minutes", "train.keep_checkpoints", "train.checkpoint_buffer", "run.",
)  # fmt: skip


def check_resumable(saved: Config, cfg: Config, run_dir: str) -> None:
    """On --resume, `cfg` may differ from the run's `saved` config in RESUMABLE keys only."""
    before = dict(leaves(saved))
    for key, value in leaves(cfg):
        if value != before[key] and not key.startswith(RESUMABLE):
            raise ConfigError(
                f"--resume {run_dir}: {key} was {before[key]}, not {value}; a resumed run may change only "
                f"{', '.join(k.rstrip('.') for k in RESUMABLE)}(.*): start a new run for another {key}"
            )


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
