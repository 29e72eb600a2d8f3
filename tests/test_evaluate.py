"""The evaluation command: a JSON summary with confidence intervals, any prey, a GIF, any mode's checkpoint."""

import json

import pytest
from PIL import Image

import train
from conftest import SMOKE
from maddpg import evaluate
from maddpg.checkpoint import list_checkpoints

FIELDS = ("predator_return", "capture_rate", "prey_return")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A toy run whose prey learned (600 steps, checkpoints at 300 and 600)."""
    root = tmp_path_factory.mktemp("runs")
    train.main(["--config", SMOKE, f"run.dir={root}", "run.name=toy", "run.progress=false", "run.gif=false"])
    return root / "toy"


def test_summary_has_the_documented_fields(run):
    summary = evaluate.main([str(run), "--episodes", "8"])
    assert json.loads((run / "evaluation.json").read_text()) == summary
    assert (summary["env_steps"], summary["episodes"], summary["prey"], summary["seed"]) == (600, 8, "learned", 0)
    for field in FIELDS:
        low, high = summary[field]["ci95"]
        assert low <= summary[field]["mean"] <= high


def test_the_run_evaluation_is_replayed_from_its_seed(run):
    """Against its own prey, from the run's seed, with the run's episode count: the run's last metrics row."""
    summary = evaluate.main([str(run), "--episodes", "2", "--out", str(run / "replay.json")])
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    for field in FIELDS:
        assert summary[field]["mean"] == pytest.approx(last[field])


def test_other_prey_and_an_older_checkpoint(run, tmp_path):
    older = list_checkpoints(run, 1)[0]
    out = ["--episodes", "4", "--out", str(tmp_path / "summary.json")]
    random_prey = evaluate.main([str(older), "--prey", "random", *out])
    assert random_prey["env_steps"] == 300 and random_prey["prey"] == "random"
    fixed = evaluate.main([str(run), "--prey", str(run / "prey.pt"), *out])
    learned = evaluate.main([str(run), *out])
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
