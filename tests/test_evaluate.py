"""The evaluation command: a JSON summary with confidence intervals, any prey, a GIF, any mode's checkpoint."""

import json

import pytest
from PIL import Image

import train
from conftest import SMOKE, evaluated
from maddpg import evaluate
from maddpg.core import pretrained
from maddpg.core.checkpoint import list_checkpoints, load_checkpoint, sha256, verify

FIELDS = ("predator_return", "capture_rate", "prey_return")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A toy run whose prey learned (600 steps, checkpoints at 300 and 600)."""
    root = tmp_path_factory.mktemp("runs")
    train.main(["--config", SMOKE, f"run.dir={root}", "run.name=toy", "run.progress=false", "run.gif=false"])
    return root / "toy"


def test_summary_has_the_documented_fields(run):
    summary = evaluated([str(run), "--episodes", "8"])
    assert (summary["env_steps"], summary["episodes"], summary["prey"], summary["seed"]) == (600, 8, "learned", 0)
    for field in FIELDS:
        low, high = summary[field]["ci95"]
        assert low <= summary[field]["mean"] <= high


def test_the_run_evaluation_is_replayed_from_its_seed(run):
    """Against its own prey, from the run's seed, with the run's episode count: the run's last metrics row."""
    summary = evaluated([str(run), "--episodes", "2", "--out", str(run / "replay.json")])
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    for field in FIELDS:
        assert summary[field]["mean"] == pytest.approx(last[field])


def test_other_prey_and_an_older_checkpoint(run, tmp_path):
    older = list_checkpoints(run, 1)[0]
    out = ["--episodes", "4", "--out", str(tmp_path / "summary.json")]
    random_prey = evaluated([str(older), "--prey", "random", *out])
    assert random_prey["env_steps"] == 300 and random_prey["prey"] == "random"
    fixed = evaluated([str(run), "--prey", str(run / "prey.pt"), *out])
    learned = evaluated([str(run), *out])
    assert fixed["predator_return"] == learned["predator_return"]  # the exported prey is the learned one


def test_a_gif_has_one_frame_per_state_of_the_episode(run, tmp_path):
    evaluate.main([str(run), "--episodes", "1", "--gif", str(tmp_path / "e.gif"), "--out", str(tmp_path / "e.json")])
    with Image.open(tmp_path / "e.gif") as gif:
        assert gif.n_frames == 25 + 1  # smoke.yaml: 25-step episodes, plus the start


def test_a_bad_target_or_prey_exits_with_one_line(run, tmp_path, capsys):
    for argv in ([str(tmp_path)], [str(run), "--prey", "no/such.pt"]):
        with pytest.raises(SystemExit) as info:
            evaluate.main(argv)
        assert info.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_shipped_predators_play_as_their_run_did_and_a_changed_file_is_refused(run, tmp_path, capsys):
    shipped = pretrained.ship_predators(run, "toy", "python train.py --config smoke.yaml", dest=tmp_path)
    entry = pretrained.manifest(tmp_path / "manifest.json")["toy"]
    rank0 = tmp_path / entry["checkpoint"] / "rank0.pt"
    assert (entry["env_steps"], entry["mode"], entry["seed"]) == (600, "single", 0)
    assert entry["sha256"] == {"rank0.pt": sha256(rank0)} == verify(rank0.parent).sha256  # its record's
    shipped_state = load_checkpoint(rank0.parent, 0)
    assert "data" not in shipped_state["buffer"]  # shipped without the replay buffer
    where = shipped_state["config"]["run"]  # and without the training machine's paths
    assert (where["dir"], where["name"]) == (tmp_path.name, "toy") == (entry["config"]["run"]["dir"], "toy")
    out = ["--episodes", "4", "--out", str(tmp_path / "summary.json")]
    assert evaluated([str(shipped), *out])["predator_return"] == evaluated([str(run), *out])["predator_return"]
    rank0.write_bytes(rank0.read_bytes()[:-1])
    with pytest.raises(SystemExit) as info:
        evaluate.main([str(shipped), *out])
    assert info.value.code == 2 and "sha256" in capsys.readouterr().err


def test_the_shipped_predators_match_their_manifest():
    entries = pretrained.manifest(pretrained.PREDATORS_DIR / "manifest.json")
    assert entries, "no shipped predators: make predators ships them"
    for entry in entries.values():
        checkpoint = pretrained.PREDATORS_DIR / entry["checkpoint"]
        assert {name: sha256(checkpoint / name) for name in entry["sha256"]} == entry["sha256"]
        assert verify(checkpoint).sha256 == entry["sha256"]  # complete: its record lists the same files
