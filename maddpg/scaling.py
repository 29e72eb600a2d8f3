"""Scaling (`make bench` writes it beside bench.json): where each distributed mode pays, 4 to 48 agents.

For teams of 4, 8, 16, 32 and 48 agents (3 predators to 1 prey, every agent learning, the default
schedule of one update per env transition, batch 240), ms per env transition and per update of
  - single mode on one core (one thread): the reference;
  - data, model and pipeline mode on 2 ranks of one thread each: does a second core help?
  - single mode on 2 threads: the same two cores, no messages;
  - the three modes again across a network link: two network namespaces joined by a veth pair,
    shaped like a same-zone link between t2.2xlarge instances (`LINK`; root only).
Each point says whether it oversubscribes the machine (more threads than cores).

A cost model (`predict`) prices a transition from measured parts alone: the one-core run's time per
transition outside updates, update times of agent blocks and batch sizes timed here, and the
latency and bandwidth of each collective timed on 2 ranks (`collectives`). It is checked against
every measured point, then predicts the study's deployment (5 t2.2xlarge nodes) at its size and at
64 agents (`ec2_predictions`).

maddpg-scaling --out runs/scaling.json [--teams 4,8,16,32,48] [--no-link] [--plot PNG]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from maddpg.bench import ROOT, run_train
from maddpg.core.buffer import ReplayBuffer, States
from maddpg.core.config import Config, load_config
from maddpg.core.envs import make_env
from maddpg.core.learner import Maddpg
from maddpg.core.metrics import read_rows
from maddpg.core.twin import ACT_DIM, Observer
from maddpg.distributed.pipeline import layout

TEAMS = (4, 8, 16, 32, 48)  # agents: a quarter of them prey, all learning
BATCH = 240  # the study's 256 rounded to split evenly over data mode's 2 ranks
WARM = BATCH  # transitions per rank before updates begin (maddpg.learning_starts)
# Each run measures two intervals of this many transitions (per rank) once every rank updates: fewer
# at large teams, whose updates are slow. Each divides WARM, so that rows fall on the warm-up's end.
INTERVAL = {4: 240, 8: 120, 16: 60, 32: 40, 48: 24}
# A same-zone link between two t2.2xlarge instances: ~1 Gbit/s ("Moderate"; iperf measurements
# collected at https://stackoverflow.com/q/18507405), 0.26 ms mean round trip inside one zone
# (https://orensol.com/2009/05/24/network-latency-inside-and-across-amazon-ec2-availability-zones/).
LINK = {"rate": "1gbit", "bytes_per_s": 1e9 / 8, "one_way_delay_s": 0.13e-3}
SIZES = (16, 1024, 65536, 1 << 20, 1 << 23)  # float32 per collective timed
OPS = ("all_gather", "all_reduce", "broadcast")
# The study's deployment: 5 t2.2xlarge nodes of 8 vCPUs; one rank per node, or one per vCPU.
EC2_NODES, EC2_VCPUS = 5, 8


def team(agents: int) -> list[str]:
    prey = agents // 4
    return [f"env.num_adversaries={agents - prey}", f"env.num_good={prey}", "prey.mode=learn"]


def overrides(agents: int, replicas: int) -> list[str]:
    """The team, the batch, a small buffer; warm-up, then two measured intervals per rank, each
    evaluated with one episode (not timed)."""
    every = INTERVAL[agents] * replicas
    return [
        *team(agents),
        f"maddpg.batch_size={BATCH}",
        f"maddpg.learning_starts={WARM}",
        "maddpg.buffer_size=20000",
        f"train.total_steps={WARM * replicas + 2 * every}",
        f"train.eval_every={every}",
        "train.eval_episodes=1",
    ]


# -- measuring ------------------------------------------------------------------------------


def timings(rows: list[dict], every: int, replicas: int) -> dict:
    """ms per env transition and per update (None where the rows hold none: pipeline's rank 0) over the
    rows whose interval of `every` transitions began once every rank had warmed up."""
    steady = [r for r in rows if (r["env_steps"] - every) // replicas >= WARM]

    def mean(key: str) -> float | None:
        return sum(r[key] for r in steady) / len(steady) if key in steady[0] else None

    return {"ms_per_transition": 1000 / mean("steps_per_s"), "ms_per_update": mean("update_ms"),
            "comm_share": mean("comm_share")}  # fmt: skip


@dataclass
class Point:
    config: str  # single_1core, single_2threads, data, model, pipeline
    network: str  # loopback, or link: the shaped veth between two namespaces
    ranks: int
    threads: int  # per rank
    ms_per_transition: float
    ms_per_update: float | None  # rank 0's (pipeline: None, rank 0 does not update)
    comm_share: float
    oversubscribed: bool = False
    predicted_ms: float | None = None
    error: float | None = None  # predicted / measured - 1


def measure(agents: int, config: str, link: bool = False) -> Point:
    """One `train.py` run of `config` at a team of `agents`."""
    ranks = 1 if config.startswith("single") else 2
    threads = 2 if config == "single_2threads" else 1
    replicas = ranks if config == "data" else 1
    args = [*overrides(agents, replicas), f"run.threads={threads}"]
    if link:
        rows = run_over_link(config, args)
    else:
        rows = run_train([*args, f"mode={config}"] if ranks > 1 else args, ranks)[0]
    point = Point(
        config, "link" if link else "loopback", ranks, threads, **timings(rows, INTERVAL[agents] * replicas, replicas)
    )
    point.oversubscribed = ranks * threads > (os.cpu_count() or 1)
    return point


def netns_unavailable() -> str | None:
    """Why this machine cannot make a network namespace, or None when it can (found by trying)."""
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"probe{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    except FileNotFoundError:
        return "iproute2's `ip` is not installed"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], check=True)
    return None


def run_over_link(mode: str, overrides: list[str]) -> list[dict]:
    """Metrics rows of a 2-node run (one rank each) across launch/netns_two_nodes.sh's veth, shaped to LINK's rate."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [*overrides, "run.name=scaling", "run.progress=false", "run.gif=false"]
        env = {**os.environ, "PYTHON": sys.executable, "RATE": LINK["rate"], "ID": f"sc{os.getpid()}"}
        command = ["bash", str(ROOT / "launch" / "netns_two_nodes.sh"), mode, tmp, *args]
        subprocess.run(command, check=True, env=env, capture_output=True)
        return read_rows(Path(tmp) / "node0" / "runs" / "scaling")


def collectives_worker() -> None:
    """Under torchrun: seconds per blocking collective at SIZES float32, idle ranks, one thread.
    Rank 0 prints one JSON line: {op: {floats: seconds}}."""
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    result: dict[str, dict[int, float]] = {op: {} for op in OPS}
    for size in SIZES:
        message = torch.zeros(size)
        parts = [torch.empty_like(message) for _ in range(dist.get_world_size())]
        calls = {"all_gather": lambda m=message, p=parts: dist.all_gather(p, m),
                 "all_reduce": lambda m=message: dist.all_reduce(m),
                 "broadcast": lambda m=message: dist.broadcast(m, 0)}  # fmt: skip
        repeats = max(5, min(300, 20_000_000 // size))
        for op, call in calls.items():
            call()
            dist.barrier()
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            result[op][size] = (time.perf_counter() - start) / repeats
    if dist.get_rank() == 0:
        print(json.dumps(result))
    dist.destroy_process_group()


@dataclass
class Net:
    """Collectives' cost on R ranks in a ring (gloo's all-gather and all-reduce) or from the root
    (broadcast): R - 1 steps (all-reduce: 2 (R - 1), each moving 1/R of the message), each paying
    a latency and a time per byte. Fitted on 2 ranks of this machine; a link adds its one-way delay
    to every step's latency and its time per byte to the machine's (the copies and the wire in series)."""

    latency_s: dict[str, float]  # per step
    s_per_byte: dict[str, float]
    delay_s: float = 0.0
    link_s_per_byte: float = 0.0

    @classmethod
    def fit(cls, timed: dict[str, dict[int, float]]) -> Net:
        """From 2-rank timings ({op: {floats: seconds}}): the step latency from the smallest message,
        the time per byte from the largest (2-rank all-reduce: 2 steps of half the message each)."""
        steps = {"all_gather": 1, "all_reduce": 2, "broadcast": 1}
        latency, per_byte = {}, {}
        for op, by_size in timed.items():
            smallest, largest = min(by_size), max(by_size)
            latency[op] = by_size[smallest] / steps[op]
            per_byte[op] = (by_size[largest] - by_size[smallest]) / (4 * (largest - smallest))
        return cls(latency, per_byte)

    def over(self, delay_s: float, bytes_per_s: float) -> Net:
        return Net(self.latency_s, self.s_per_byte, delay_s, 1 / bytes_per_s)

    def cost(self, op: str, nbytes: float, ranks: int) -> float:
        """Seconds of one `op` on `ranks` ranks; nbytes: all-gather, each rank's part; else the whole message."""
        if ranks == 1:
            return 0.0
        step = self.latency_s[op] + self.delay_s
        per_byte = self.s_per_byte[op] + self.link_s_per_byte
        if op == "all_reduce":
            return 2 * (ranks - 1) * (step + nbytes / ranks * per_byte)
        return (ranks - 1) * (step + nbytes * per_byte)


def collectives() -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "maddpg.scaling", "--collectives-worker"]
    result = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    timed = json.loads(result.stdout.strip().splitlines()[-1])
    return {op: {int(size): seconds for size, seconds in by_size.items()} for op, by_size in timed.items()}


def timed_update_ms(cfg: Config, agents: int, batch: int, repeats: int) -> float:
    """ms of sampling a batch (observations included) and updating the first `agents` learning
    agents on it, one thread, this process; the other learners' actions padded in (a gather's copy)."""
    torch.set_num_threads(1)
    env = make_env(cfg.env)
    observer, n, n_obstacles = Observer(cfg.env), env.n_agents, cfg.env.num_obstacles
    g = torch.Generator().manual_seed(0)
    buffer = ReplayBuffer(4096, observer, n_obstacles, ACT_DIM, seed=0)
    size = buffer.capacity

    def uniform(*shape: int) -> torch.Tensor:
        return 2 * torch.rand(size, *shape, generator=g) - 1

    buffer.add(States(uniform(n + n_obstacles, 2), 0.1 * uniform(n, 2), torch.rand(size, n, ACT_DIM, generator=g),
                      uniform(n), uniform(n, 2), 0.1 * uniform(n, 2), torch.zeros(size)))  # fmt: skip
    learners = cfg.n_learners

    def pad(acts: torch.Tensor) -> torch.Tensor:
        return torch.cat([acts, acts.new_zeros(acts.shape[0], learners - acts.shape[1], *acts.shape[2:])], 1)

    # Continuous actions: the updates draw no Gumbel noise from the second generator.
    learner = Maddpg(env.obs_dims, env.act_dim, learners, cfg.maddpg, None, g, torch.Generator(), agents=range(agents),
                     gather=pad)  # fmt: skip
    for _ in range(3):
        learner.update(buffer.sample(batch))
    start = time.perf_counter()
    for _ in range(repeats):
        learner.update(buffer.sample(batch))
    return 1000 * (time.perf_counter() - start) / repeats


# -- the cost model -------------------------------------------------------------------------


@dataclass
class Parts:
    """What the model prices a team's transition from, all measured on one core (ms, bytes)."""

    agents: int
    act_ms: float  # per transition outside updates: env step, acting, episode bookkeeping (the one-core run)
    update_ms: float  # sampling and updating every agent on a full batch (the one-core run)
    # Timed here: one agent and every agent on the full batch, every agent on a quarter batch. The
    # model interpolates agents and batch linearly between them (a fixed part plus a part per agent
    # or per sample), scaled to the run's update_ms.
    micro_one_ms: float
    micro_all_ms: float
    micro_quarter_batch_ms: float
    action_bytes: int  # every agent's action, one env
    actor_bytes: int  # one agent's actor parameters
    critic_bytes: int  # one agent's critic parameters
    batch_bytes: int  # one batch of world states as pipeline mode ships it

    def update(self, agents: float, batch_share: float = 1.0) -> float:
        """ms of an update of `agents` of the team on `batch_share` of the batch."""
        one_agent = self.micro_one_ms + (self.micro_all_ms - self.micro_one_ms) * (agents - 1) / max(self.agents - 1, 1)
        per_sample = (self.micro_all_ms - self.micro_quarter_batch_ms) / 0.75
        micro = one_agent - per_sample * (1 - batch_share) * agents / self.agents
        return self.update_ms * micro / self.micro_all_ms


def predict(parts: Parts, mode: str, ranks: int, net: Net, cfg: Config | None = None) -> float:
    """ms per env transition of `mode` on `ranks` ranks of one core each (default schedule: one update
    per transition; pipeline mode's rounds of dist.round_updates, acting at most one round behind)."""
    cfg = cfg or load_config()
    ms = 1000.0
    ag, ar, bc = (lambda b, o=op: ms * net.cost(o, b, ranks) for op in OPS)  # ms of each collective
    episode_vote = ar(8) / cfg.env.max_cycles  # the stop / checkpoint flags, once per episode
    if mode == "single":
        return parts.act_ms + parts.update_ms
    if mode == "model":  # every rank steps the env and samples; updates split in blocks; actions gathered
        block = math.ceil(parts.agents / ranks)
        soft = ag(block * parts.actor_bytes) / cfg.maddpg.target_update_every
        return parts.act_ms + ag(block * parts.action_bytes / parts.agents) + parts.update(block) + soft + episode_vote
    if mode == "data":  # ranks collect side by side; each update on 1/R of the batch, gradients all-reduced
        grads = ar(parts.agents * parts.critic_bytes) + ar(parts.agents * parts.actor_bytes)
        return parts.act_ms / ranks + parts.update(parts.agents, 1 / ranks) + grads + episode_vote / ranks
    if mode == "pipeline":  # rank 0 acts and ships batches; the learners update; the slower side sets the pace
        learners = ranks - 1
        block = math.ceil(parts.agents / learners)
        shipping = bc(parts.batch_bytes)
        weights = ag(block * parts.actor_bytes) / cfg.dist.round_updates
        return max(parts.act_ms, parts.update(block)) + shipping + weights
    raise ValueError(f"no cost model for mode {mode!r}")


def parts_of(agents: int, single: Point) -> Parts:
    cfg = load_config(None, team(agents))
    repeats = max(5, 400 // agents)
    env = make_env(cfg.env)
    generators = torch.Generator().manual_seed(0), torch.Generator()  # acting; updates (continuous: never drawn)
    learner = Maddpg(env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, None, *generators)
    state_floats = sum(math.prod(shape) for shape in layout(env.n_agents, cfg.env.num_obstacles, env.act_dim))
    return Parts(
        agents, single.ms_per_transition - single.ms_per_update, single.ms_per_update,
        timed_update_ms(cfg, 1, BATCH, repeats), timed_update_ms(cfg, cfg.n_learners, BATCH, repeats),
        timed_update_ms(cfg, cfg.n_learners, BATCH // 4, repeats),
        4 * env.n_agents * env.act_dim, 4 * learner.actor.rows().shape[1], 4 * learner.critic.rows().shape[1],
        4 * BATCH * state_floats,
    )  # fmt: skip


def extrapolate(teams: list[Parts], agents: int) -> Parts:
    """Parts at a larger team: each time and size a power of the team size through the two largest
    measured teams (the actions, one per agent, in proportion)."""
    a, b = teams[-2], teams[-1]

    def power(name: str) -> float:
        x, y = getattr(a, name), getattr(b, name)
        return y * (agents / b.agents) ** (math.log(y / x) / math.log(b.agents / a.agents))

    values = {f: power(f) for f in ("act_ms", "update_ms", "micro_one_ms", "micro_all_ms", "micro_quarter_batch_ms",
                                    "actor_bytes", "critic_bytes", "batch_bytes")}  # fmt: skip
    return Parts(agents, action_bytes=b.action_bytes * agents // b.agents, **values)


def ec2_predictions(teams: list[Parts], net: Net) -> list[dict]:
    """ms per transition on EC2_NODES t2.2xlarge nodes, at the study's size (3 predators and a learning
    prey) and at 64 agents: one rank per node, or one per vCPU; every step of a collective pays LINK."""
    link = net.over(LINK["one_way_delay_s"], LINK["bytes_per_s"])
    study = next(p for p in teams if p.agents == 4)
    rows = []
    for parts in (study, extrapolate(teams, 64)):
        single = predict(parts, "single", 1, link)
        for mode in ("data", "model", "pipeline"):
            most = {"data": math.inf, "model": parts.agents, "pipeline": parts.agents + 1}[mode]
            for ranks in sorted({min(EC2_NODES, most), min(EC2_NODES * EC2_VCPUS, most)}):
                ms = predict(parts, mode, ranks, link)
                rows.append({"agents": parts.agents, "mode": mode, "ranks": ranks, "ms_per_transition": ms,
                             "single_1core_ms": single, "speedup": single / ms})  # fmt: skip
    return rows


def scaling(teams: tuple[int, ...], link: bool) -> dict:
    net_timed = collectives()
    net = Net.fit(net_timed)
    linked = net.over(0.0, LINK["bytes_per_s"])  # the veth adds no delay here (no netem); tbf sets the rate
    why_not = netns_unavailable() if link else "--no-link"
    result = {"collectives_s": net_timed, "net": asdict(net), "link": LINK | {"measured": why_not is None,
              "why_not": why_not}, "teams": []}  # fmt: skip
    all_parts = []
    for agents in teams:
        single = measure(agents, "single_1core")
        parts = parts_of(agents, single)
        all_parts.append(parts)
        points = [single, measure(agents, "single_2threads")]
        points += [measure(agents, mode) for mode in ("data", "model", "pipeline")]
        if why_not is None:
            points += [measure(agents, mode, link=True) for mode in ("data", "model", "pipeline")]
        for p in points[2:]:
            p.predicted_ms = predict(parts, p.config, p.ranks, linked if p.network == "link" else net)
            p.error = p.predicted_ms / p.ms_per_transition - 1
        for p in points:
            print(json.dumps({"agents": agents} | asdict(p)), file=sys.stderr)
        result["teams"].append({"agents": agents, "parts": asdict(parts), "points": [asdict(p) for p in points]})
    errors = [abs(p["error"]) for t in result["teams"] for p in t["points"] if p["error"] is not None]
    result["model_error"] = {"points": len(errors), "mean_abs": sum(errors) / len(errors), "max_abs": max(errors),
                             "within_25_percent": sum(e <= 0.25 for e in errors)}  # fmt: skip
    if len(all_parts) >= 2 and all_parts[0].agents == 4:
        result["ec2_predictions"] = ec2_predictions(all_parts, net)
    return result


def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    agents = [t["agents"] for t in result["teams"]]
    lines: dict[tuple[str, str], list[float]] = {}
    for t in result["teams"]:
        for p in t["points"]:
            lines.setdefault((p["config"], p["network"]), []).append(p["ms_per_transition"])
    reference = lines["single_1core", "loopback"]
    for (config, network), ms in lines.items():
        label = config if network == "loopback" else f"{config} (1 Gbit/s link)"
        style = "--" if network == "link" else "-"
        left.plot(agents, ms, style, marker="o", label=label)
        right.plot(agents, [r / m for r, m in zip(reference, ms, strict=True)], style, marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="agents", ylabel="ms per env transition", title="time per transition")
    right.axhline(1.0, color="grey", lw=0.8)
    right.set(xscale="log", xlabel="agents", ylabel="speed-up over single on one core", title="2 cores: speed-up")
    for axis in (left, right):
        axis.minorticks_off()
        axis.set_xticks(agents, [str(a) for a in agents])
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/scaling.json")
    parser.add_argument("--plot", type=Path, help="the figure (default: --out with .png)")
    parser.add_argument("--teams", default=",".join(map(str, TEAMS)), help="agents per team, comma-separated")
    parser.add_argument("--link", action=argparse.BooleanOptionalAction, default=True, help="the shaped-link points")
    parser.add_argument("--collectives-worker", action="store_true", help=argparse.SUPPRESS)  # one rank of the above
    args = parser.parse_args()
    if args.collectives_worker:
        collectives_worker()
        return
    teams = tuple(int(t) for t in args.teams.split(","))
    if unknown := [t for t in teams if t not in INTERVAL]:
        parser.error(f"--teams: no schedule for {unknown}; choose among {sorted(INTERVAL)}")
    result = {"threads_per_rank": 1, "cores": os.cpu_count()} | scaling(teams, args.link)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.plot or out.with_suffix(".png"))
    print(json.dumps(result.get("model_error"), indent=2))


if __name__ == "__main__":
    main()
