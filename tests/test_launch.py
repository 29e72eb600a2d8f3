"""Two torchrun nodes on one machine, in network namespaces joined by a veth pair (launch/netns_two_nodes.sh)."""

import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, SMOKE
from maddpg.core.checkpoint import checkpoint_dir, load_checkpoint
from maddpg.core.metrics import METRICS_FILE, SYNCS_FILE, read_rows
from maddpg.scaling import netns_unavailable

SCRIPT = ROOT / "launch" / "netns_two_nodes.sh"
STEPS = 200


@pytest.fixture(scope="module")
def netns():
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)


def two_nodes(out, mode: str, *overrides: str, shaping: dict[str, str] | None = None) -> None:
    """Run the script to completion (`shaping`: its RATE / DELAY); past the timeout, stop it (its trap
    removes the namespaces) and fail."""
    args = ["--config", SMOKE, "run.name=two", "run.progress=false", "run.gif=false", "run.threads=1"]
    args += [f"train.total_steps={STEPS}", "train.eval_every=100", *overrides]
    job = subprocess.Popen(
        ["bash", str(SCRIPT), mode, str(out), *args], env={**os.environ, "PYTHON": sys.executable, **(shaping or {})}
    )
    try:
        returncode = job.wait(timeout=300)
    except subprocess.TimeoutExpired:
        job.terminate()
        returncode = job.wait()
    logs = [out / f"node{n}.log" for n in (0, 1)]
    assert returncode == 0, "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}" for log in logs if log.exists())


@pytest.mark.usefixtures("netns")
@pytest.mark.parametrize(
    "mode, overrides, shaping", [("data", (), {"RATE": "1gbit"}), ("genetic", ("genetic.sync_every=50",), None)]
)
def test_two_nodes_train_to_the_end_over_a_veth_link(tmp_path, mode, overrides, shaping):
    two_nodes(tmp_path, mode, *overrides, shaping=shaping)
    # Each node has its own directory, as it would have its own disk: rank 0 writes the run,
    # and every rank writes its own checkpoint file where it runs.
    runs = [tmp_path / f"node{n}" / "runs" / "two" for n in (0, 1)]
    assert read_rows(runs[0])[-1]["env_steps"] == STEPS
    assert not (runs[1] / METRICS_FILE).exists()
    final = [load_checkpoint(checkpoint_dir(run, STEPS), rank)["learner"] for rank, run in enumerate(runs)]
    if mode == "data":  # the averaged gradients crossed the link: the replicas end identical
        for key, value in final[0]["actor"].items():
            assert torch.equal(value, final[1]["actor"][key]), key
    else:  # each learner's fitness crossed the link at every sync
        syncs = read_rows(runs[0], SYNCS_FILE)
        assert syncs and all(len(sync["fitness"]) == 2 for sync in syncs)
