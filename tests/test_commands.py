"""The console commands of pyproject.toml: each installed, each --help saying what it does with an example
of itself, and a smoke call of those that run in seconds."""

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, SMOKE
from maddpg.core.pretrained import PREDATORS_DIR

COMMANDS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent  # the environment's console scripts


def command(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    path = shutil.which(name, path=str(BIN))
    assert path, f"{name} is not installed: pip install -e . installs the console commands"
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_commands_are_the_trainer_and_every_tool():
    tools = ("evaluate", "plot", "experiments", "bench", "scaling", "speedup", "difficulty")
    assert set(COMMANDS) == {"maddpg-train"} | {f"maddpg-{tool}" for tool in tools}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_says_what_a_command_does_with_an_example_of_it(name):
    result = command(name, "--help")
    assert result.returncode == 0, result.stderr
    usage, _, description = result.stdout.partition("\n\n")
    assert usage.startswith(f"usage: {name}") and len(description) > 200  # the module's docstring
    examples = [line for line in description.splitlines() if line.strip().startswith(f"{name} ")]
    assert examples, f"{name} --help shows no example command line"


def test_maddpg_train_and_maddpg_evaluate_run_a_toy_run_from_anywhere(tmp_path):
    result = command("maddpg-train", "--config", SMOKE, f"run.dir={tmp_path}", "run.name=toy", "run.progress=false",
                     "run.gif=false", "train.total_steps=200", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "final evaluation at 200 env steps" in result.stdout
    out = tmp_path / "summary.json"
    result = command("maddpg-evaluate", str(tmp_path / "toy"), "--prey", "still", "--episodes", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text())["prey"] == "still"
    result = command("maddpg-plot", str(tmp_path / "toy"), "--out", str(tmp_path / "curve.png"))
    assert result.returncode == 0 and (tmp_path / "curve.json").is_file(), result.stderr[-2000:]


def test_maddpg_evaluate_plays_the_shipped_predators(tmp_path):
    out = tmp_path / "suite.json"
    result = command("maddpg-evaluate", str(PREDATORS_DIR / "random_prey_8m"), "--suite", "--episodes", "4",
                     "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(json.loads(out.read_text())["suite"]) == ["still", "random", "flee", "weak", "strong"]


def test_a_commands_bad_input_exits_2_with_one_line(tmp_path):
    result = command("maddpg-evaluate", str(tmp_path / "nothing"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
