"""What the project ships, each listed with its sha256 and provenance in a manifest.json:

- prey files under maddpg/core/pretrained_prey/, so `prey.checkpoint=weak` or `=strong` names a verified
  file. `make prey` trains them (see the Makefile) and `python -m maddpg.core.prey export` records each one.
- predators under maddpg/core/pretrained_predators/NAME/, a run's last checkpoint as a run directory holds
  it (without its replay buffer, with its record complete.json), so `python -m maddpg.evaluate
  maddpg/core/pretrained_predators/NAME` plays them; evaluation checks every rank file against the sha256
  its record lists. `make predators` trains and ships them with `python -m maddpg.core.pretrained ship
  RUN_DIR --name NAME --command CMD`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from maddpg.core.checkpoint import (
    buffered_transitions,
    latest_good_checkpoint,
    load_checkpoint,
    rank_file,
    read_record,
    rewrite,
    sha256,
    without_buffer_data,
)
from maddpg.core.errors import ConfigError, command_errors

PREY_DIR = Path(__file__).parent / "pretrained_prey"
MANIFEST = PREY_DIR / "manifest.json"
PREDATORS_DIR = Path(__file__).parent / "pretrained_predators"


def shipped_prey(role: str, actions: str) -> str:
    """The name of the shipped `role` prey (weak, strong) for runs with `actions` (env.actions): the
    continuous ones are plain weak and strong, the discrete ones weak_discrete and strong_discrete."""
    return role if actions == "continuous" else f"{role}_{actions}"


SHIPPED = ("weak", "strong")  # the roles of the shipped prey


def for_actions(name: str, actions: str) -> str:
    """A prey's name as a run with `actions` plays it: a shipped prey's role (weak, strong) names that
    role's prey of the action type (shipped_prey); any other name stays itself."""
    return shipped_prey(name, actions) if name in SHIPPED else name


def manifest(path: Path = MANIFEST) -> dict[str, dict]:
    """{name: {file, sha256, env_steps, seed, command, config}} of the shipped prey (empty if none)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def record(name: str, prey_file: Path, entry: dict, path: Path = MANIFEST) -> None:
    """Add or replace `name` in the manifest: the file (beside the manifest), its sha256 and `entry`."""
    write_manifest(manifest(path) | {name: {"file": prey_file.name, "sha256": sha256(prey_file)} | entry}, path)


def write_manifest(entries: dict[str, dict], path: Path) -> None:
    path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


def resolve_prey(checkpoint: str, path: Path = MANIFEST) -> Path:
    """A shipped prey's name, or a path to a prey file -> the file. A shipped file must match the
    sha256 its manifest records."""
    entries = manifest(path)
    if checkpoint in entries:
        entry = entries[checkpoint]
        prey_file = path.parent / entry["file"]
        if not prey_file.is_file():
            raise ConfigError(f"prey.checkpoint={checkpoint}: {prey_file} is missing; restore it or run make prey")
        if sha256(prey_file) != entry["sha256"]:
            raise ConfigError(
                f"prey.checkpoint={checkpoint}: {prey_file} does not match the sha256 in {path} (changed or "
                "corrupted); restore it with git checkout or rebuild it with make prey"
            )
        return prey_file
    prey_file = Path(checkpoint)
    if not prey_file.is_file():
        shipped = ", ".join(sorted(entries)) or "none yet: make prey"
        raise ConfigError(
            f"prey.checkpoint {checkpoint} not found: name a shipped prey ({shipped}) or a run's prey.pt "
            "(runs with prey.mode=learn write one)"
        )
    return prey_file


def ship_predators(run_dir: Path, name: str, command: str, dest: Path = PREDATORS_DIR) -> Path:
    """A run's newest complete checkpoint -> dest/NAME/checkpoints/ (replacing what was there once it is
    ready), without its replay buffers (checked: a rank file still holding transitions is refused) and
    with run.dir and run.name set to where it now lies, recorded in dest's manifest with every rank
    file's sha256 (its record's) and the provenance: the env steps, mode, seed, config and the `command`
    that trained the run."""
    checkpoint = latest_good_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(f"{run_dir} holds no complete checkpoint: train it first")
    target, staging = dest / name, dest / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shipped = staging / "checkpoints" / checkpoint.name
    shutil.copytree(checkpoint, shipped, ignore=shutil.ignore_patterns(".*"))  # no save's temporary files

    def strip(state: dict) -> None:  # no replay buffer, and no path of the machine that trained it
        without_buffer_data(state)
        state["config"]["run"] |= {"dir": str(dest.name), "name": name}

    rewrite(shipped, strip)
    record = read_record(shipped)
    held = held_transitions(shipped, record.world_size)
    if held:
        shutil.rmtree(staging)
        raise ConfigError(
            f"{run_dir}: {checkpoint.name} still holds replay buffer transitions once dropped ({held}), and shipped "
            "predators hold none: nothing was shipped; its buffer's class must drop them "
            "(drop_data, maddpg/core/buffer.py)"
        )
    state = load_checkpoint(shipped, 0)
    entry = {
        "checkpoint": str((target / "checkpoints" / checkpoint.name).relative_to(dest)),
        "sha256": record.sha256,
        "env_steps": state["progress"]["env_steps"],
        "mode": state["config"]["mode"],
        "seed": state["config"]["train"]["seed"],
        "command": command,
        "config": state["config"],
    }
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    write_manifest(manifest(dest / MANIFEST.name) | {name: entry}, dest / MANIFEST.name)
    return target


def held_transitions(checkpoint: Path, world_size: int) -> dict[str, int]:
    """{rank file: the replay buffer transitions it holds} of the rank files of `checkpoint` that hold any."""
    counts = [buffered_transitions(load_checkpoint(checkpoint, rank)) for rank in range(world_size)]
    return {rank_file(checkpoint, rank).name: count for rank, count in enumerate(counts) if count}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Ship a run's predators: python -m maddpg.core.pretrained ship RUN_DIR ..."
    )
    parser.add_argument("action", choices=["ship"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--name", required=True, help="the shipped predators' name (maddpg/core/pretrained_predators/NAME)"
    )
    parser.add_argument("--command", required=True, help="the command that trained the run, for the manifest")
    args = parser.parse_args(argv)
    with command_errors():
        print(ship_predators(args.run_dir, args.name, args.command))


if __name__ == "__main__":
    main()
