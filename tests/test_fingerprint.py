"""Fingerprints of short training runs: a change to any random stream, to the order of the updates or
to the data they see changes what a run learns, and the full-budget experiments compare runs trained
by different commits only if none did. Each run below (the fast preset, a few hundred updates) must
end where it ended when FINGERPRINTS was recorded: every learner's parameter sums and its last
evaluation. A change meant to alter training records them again (`python tests/test_fingerprint.py`
prints the current ones) and says so in its commit message.

The values are exact on one machine and PyTorch build (a run is bitwise reproducible there); the
tolerance allows the last bits of another CPU's kernels, far below what a perturbed stream moves
(tested below).
"""

import json
import sys

import pytest
import torch

import train
from conftest import ROOT, torchrun
from maddpg.core import seeding
from maddpg.core.buffer import ReplayBuffer, States
from maddpg.core.checkpoint import list_checkpoints, load_checkpoint
from maddpg.core.metrics import read_rows

FAST = str(ROOT / "configs" / "fast.yaml")
TOLERANCE = 1e-4  # relative
RUNS = {  # name: (ranks, overrides); 64 env copies, so 12,800 env steps are 4 episodes per learner
    "single": (1, ("train.total_steps=12800",)),
    "genetic": (2, ("--mode", "genetic", "genetic.strategy=pbt", "genetic.share_experience=true",
                    "genetic.sync_every=4800", "genetic.select_episodes=4", "train.total_steps=25600")),
}  # fmt: skip
FINGERPRINTS = {
    "single": {"rank0_actor": 798.1894986148291, "rank0_critic": 134.22367793077865, "predator_return": [22.5]},
    "genetic": {"rank0_actor": 853.0851468743776, "rank0_critic": 159.30373633031104, "rank1_actor": 850.2199283478876,
                "rank1_critic": 148.0227394885287, "predator_return": [30.0, 30.0]},
}  # fmt: skip


def arguments(tmp_path, name: str, overrides: tuple[str, ...]) -> list[str]:
    where = [f"run.dir={tmp_path}", f"run.name={name}", "run.progress=false", "run.gif=false"]
    return ["train.py", "--config", FAST, "train.eval_every=6400", "train.eval_episodes=4", *where, *overrides]


def fingerprint(run_dir) -> dict:
    """Per rank: the sums of its actor and critic parameters; and every learner's last predator_return."""
    checkpoint = list_checkpoints(run_dir)[-1]
    ranks = len(list(checkpoint.glob("rank*.pt")))
    sums = {}
    for rank in range(ranks):
        learner = load_checkpoint(checkpoint, rank)["learner"]
        for part in ("actor", "critic"):
            sums[f"rank{rank}_{part}"] = sum(value.double().sum().item() for value in learner[part].values())
    last = read_rows(run_dir)[-1]
    returns = [last.get(f"predator_return/rank{rank}", last["predator_return"]) for rank in range(ranks)]
    return sums | {"predator_return": returns}


def train_single(tmp_path) -> dict:
    _, overrides = RUNS["single"]
    train.main(arguments(tmp_path, "single", overrides)[1:])
    return fingerprint(tmp_path / "single")


def matches(measured: dict, recorded: dict) -> bool:
    return measured.keys() == recorded.keys() and all(
        measured[key] == pytest.approx(recorded[key], rel=TOLERANCE, abs=TOLERANCE) for key in recorded
    )


def test_a_single_run_ends_where_it_always_did(tmp_path):
    measured = train_single(tmp_path)
    assert matches(measured, FINGERPRINTS["single"]), measured


def test_a_genetic_run_with_pbt_and_shared_experience_ends_where_it_always_did(tmp_path):
    ranks, overrides = RUNS["genetic"]
    result = torchrun(ranks, *arguments(tmp_path, "genetic", overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    measured = fingerprint(tmp_path / "genetic")
    assert matches(measured, FINGERPRINTS["genetic"]), measured


def flipped_add(add):
    """ReplayBuffer.add storing each step's env copies in reverse order: the same data, other indices."""
    return lambda self, batch: add(self, States(*(field.flip(0) for field in batch)))


@pytest.mark.parametrize("perturb", ["sample stream", "data order"])
def test_the_fingerprint_sees_a_perturbed_stream_or_data_order(tmp_path, monkeypatch, perturb):
    if perturb == "sample stream":
        monkeypatch.setattr(seeding, "SAMPLE", seeding.INIT)  # the buffer samples from another stream
    else:
        monkeypatch.setattr(ReplayBuffer, "add", flipped_add(ReplayBuffer.add))
    assert not matches(train_single(tmp_path), FINGERPRINTS["single"])


if __name__ == "__main__":  # print the current fingerprints, to record them after a deliberate change
    import tempfile
    from pathlib import Path

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as directory:
        printed = {"single": train_single(Path(directory))}
        ranks, overrides = RUNS["genetic"]
        result = torchrun(ranks, *arguments(directory, "genetic", overrides))
        if result.returncode:
            sys.exit(result.stderr[-3000:])
        printed["genetic"] = fingerprint(Path(directory) / "genetic")
    print(json.dumps(printed, indent=4))
