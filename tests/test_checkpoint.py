"""What rewrites or prunes checkpoints: a mix run's buffers dropped, its predators shipped without
transitions (or refused), a rewrite cut short, and pruning that keeps the newest recorded checkpoints."""

import os
import shutil

import pytest

import train
from conftest import SMOKE
from maddpg.core import pretrained
from maddpg.core.buffer import MixedBuffer, buffer_class
from maddpg.core.checkpoint import (
    RECORD_FILE,
    Record,
    buffered_transitions,
    checkpoint_dir,
    checkpoint_dirs,
    drop_buffer,
    list_checkpoints,
    load_checkpoint,
    prune,
    rank_file,
    read_record,
    record_file,
    rewrite,
    sha256,
    verify,
)
from maddpg.core.errors import ConfigError

MIX = ("prey.mode=mix", "prey.mix=[still,random]", "env.n_envs=2", "train.checkpoint_buffer=true",
       "train.total_steps=100", "train.checkpoint_every=50", "train.eval_every=50", "run.gif=false")  # fmt: skip


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory):
    """A toy run against a mix of prey (a MixedBuffer), its checkpoints with the buffers' contents."""
    root = tmp_path_factory.mktemp("runs")
    train.main(["--config", SMOKE, f"run.dir={root}", "run.name=mix", "run.progress=false", *MIX])
    return root / "mix"


def test_a_mix_runs_checkpoint_drops_every_prey_buffer_and_stays_resumable(mix_run, tmp_path, capsys):
    run = shutil.copytree(mix_run, tmp_path / "mix")
    checkpoint = list_checkpoints(run, 1)[-1]
    state = load_checkpoint(checkpoint, 0)
    assert buffer_class(state["buffer"]) is MixedBuffer and buffered_transitions(state) == 100
    drop_buffer(checkpoint)
    assert buffered_transitions(load_checkpoint(checkpoint, 0)) == 0
    assert list_checkpoints(run, 1)[-1] == checkpoint  # complete: its record was rewritten with the files
    capsys.readouterr()
    train.main(["--resume", str(run), "train.total_steps=150", "run.progress=false"])
    assert "warning" not in capsys.readouterr().err
    assert list_checkpoints(run, 1)[-1] == checkpoint_dir(run, 150)


def test_a_mix_runs_predators_ship_without_transitions_listed_by_their_record(mix_run, tmp_path):
    pretrained.ship_predators(mix_run, "mix", "python train.py ...", dest=tmp_path)
    entry = pretrained.manifest(tmp_path / "manifest.json")["mix"]
    checkpoint = tmp_path / entry["checkpoint"]
    assert buffered_transitions(load_checkpoint(checkpoint, 0)) == 0
    assert entry["sha256"] == verify(checkpoint).sha256 == {"rank0.pt": sha256(rank_file(checkpoint, 0))}
    assert sorted(path.name for path in checkpoint.iterdir()) == [RECORD_FILE, "rank0.pt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["manifest.json", "mix"]


def test_shipping_refuses_predators_that_still_hold_transitions_and_keeps_what_was_shipped(
    mix_run, tmp_path, monkeypatch
):
    pretrained.ship_predators(mix_run, "mix", "python train.py ...", dest=tmp_path)
    shipped = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    # The drop before buffers said how: a MixedBuffer keeps its data under "buffers"
    monkeypatch.setattr(pretrained, "without_buffer_data", lambda state: state["buffer"].pop("data", None))
    with pytest.raises(ConfigError) as refused:
        pretrained.ship_predators(mix_run, "mix", "python train.py ...", dest=tmp_path)
    message = str(refused.value)
    assert "ckpt_000000000100 still holds replay buffer transitions once dropped ({'rank0.pt': 100})" in message
    assert "\n" not in message and "nothing was shipped" in message
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == shipped


def test_a_rewrite_cut_short_leaves_the_checkpoint_as_it_was_or_incomplete(mix_run, tmp_path, monkeypatch):
    """Every file is prepared before the first rename: a failure before it changes nothing; one between
    the renames leaves files that no longer match the record."""
    run = shutil.copytree(mix_run, tmp_path / "mix")
    checkpoint = list_checkpoints(run, 1)[-1]
    before = rank_file(checkpoint, 0).read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    replace = os.replace
    for renames, complete in ((0, True), (1, False)):
        done = []

        def replace_then_fail(src, dst, renames=renames, done=done):
            if len(done) == renames:
                fail()
            done.append(dst)
            replace(src, dst)

        monkeypatch.setattr(os, "replace", replace_then_fail)
        with pytest.raises(OSError, match="No space left"):
            rewrite(checkpoint, lambda state: state["buffer"].clear())
        monkeypatch.setattr(os, "replace", replace)
        assert (list_checkpoints(run, 1)[-1:] == [checkpoint]) == complete
        assert (rank_file(checkpoint, 0).read_bytes() == before) == complete


def test_pruning_keeps_the_newest_recorded_checkpoints_and_drops_leftovers_older_than_the_new_one(tmp_path):
    for step, recorded in ((10, True), (20, False), (30, True), (40, True), (50, False)):
        checkpoint = checkpoint_dir(tmp_path, step)
        checkpoint.mkdir(parents=True)
        rank_file(checkpoint, 0).write_bytes(b"weights")
        if recorded:
            Record(1, step, {"rank0.pt": sha256(rank_file(checkpoint, 0))}).write(record_file(checkpoint))
    prune(tmp_path, checkpoint_dir(tmp_path, 40), keep=2)
    # 10 is beyond the 2 kept, 20 a save that never finished; 50, newer (a run resumed before it), is left
    assert [c.name[5:] for c in checkpoint_dirs(tmp_path)] == ["000000000030", "000000000040", "000000000050"]
    assert read_record(checkpoint_dir(tmp_path, 40)).env_steps == 40
