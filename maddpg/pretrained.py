"""The prey shipped with the project: prey files under maddpg/pretrained_prey/, listed with their
sha256 in its manifest.json, so `prey.checkpoint=weak` or `=strong` names a verified file.

`make prey` trains them (see the Makefile) and `python -m maddpg.prey export` records each one.
"""

from __future__ import annotations

import json
from pathlib import Path

from maddpg.checkpoint import sha256
from maddpg.errors import ConfigError

PREY_DIR = Path(__file__).parent / "pretrained_prey"
MANIFEST = PREY_DIR / "manifest.json"


def manifest(path: Path = MANIFEST) -> dict[str, dict]:
    """{name: {file, sha256, env_steps, seed, command, config}} of the shipped prey (empty if none)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def record(name: str, prey_file: Path, entry: dict, path: Path = MANIFEST) -> None:
    """Add or replace `name` in the manifest: the file (beside the manifest), its sha256 and `entry`."""
    entries = manifest(path)
    entries[name] = {"file": prey_file.name, "sha256": sha256(prey_file)} | entry
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
