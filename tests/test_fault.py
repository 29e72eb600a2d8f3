"""Fault tolerance: checkpoint integrity, hostile files, bad input, the non-finite guard, elastic restarts."""

import ast
import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import train
from conftest import ROOT, fails, torchrun, toy_learner, train_args
from maddpg.core.checkpoint import (
    RECORD_FILE,
    checkpoint_dir,
    checkpoint_dirs,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rank_file,
    read_record,
    record_file,
    sha256,
    verify,
)
from maddpg.core.comm import Comm
from maddpg.core.config import EnvConfig
from maddpg.core.guard import nonfinite_error, nonfinite_loss, nonfinite_parameter
from maddpg.core.learner import Maddpg
from maddpg.core.metrics import SYNCS_FILE, read_rows
from maddpg.core.prey import load_prey
from maddpg.distributed.elastic import RUN_ID_FILE

NAMES = ["adversary_0", "adversary_1", "adversary_2", "agent_0"]


def steps(run_dir, name="metrics.jsonl"):
    return [row["env_steps"] for row in read_rows(run_dir, name)]


class RunsCode:
    """Unpickling this would run a shell command: a file holding it must be refused unread."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def record_as_is(checkpoint):
    """Record a checkpoint's rank files as they are now: a file damaged before its save was recorded."""
    record = read_record(checkpoint)
    replace(record, sha256={name: sha256(checkpoint / name) for name in record.sha256}).write(record_file(checkpoint))


# -- checkpoint integrity ---------------------------------------------------------------------


DAMAGES = {  # damage: why the checkpoint is passed over
    "flip": "rank0.pt does not match its sha256 in complete.json",
    "truncate": "rank0.pt does not match its sha256 in complete.json",
    "truncate, no record": "no complete.json",
    "no record": "no complete.json",
    "garbage record": "complete.json is not a checkpoint record",
    "no rank file": "rank0.pt is unreadable (No such file or directory)",
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_complete_one(tmp_path, run_args, capsys, damage):
    train.main(run_args("r", "train.checkpoint_buffer=true", "run.gif=false"))
    run = tmp_path / "r"
    latest = list_checkpoints(run, 1)[-1]
    data = rank_file(latest, 0).read_bytes()
    if damage == "flip":
        rank_file(latest, 0).write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    if damage.startswith("truncate"):
        rank_file(latest, 0).write_bytes(data[: len(data) // 2])
    if damage.endswith("no record"):
        record_file(latest).unlink()
    if damage == "garbage record":
        record_file(latest).write_text('{"world_size": 1, "sha256"')
    if damage == "no rank file":
        rank_file(latest, 0).unlink()
    capsys.readouterr()
    train.main(["--resume", str(run), "train.total_steps=800", "run.progress=false", "run.gif=false"])
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and warning.startswith(f"warning: {run}: passed over ckpt_000000000600 (")
    assert DAMAGES[damage] in warning and warning.endswith("; taking ckpt_000000000300")
    assert steps(run) == [0, 200, 400, 600, 800]  # resumed from 300: the rows after it logged again, once
    assert [c.name for c in checkpoint_dirs(run)] == ["ckpt_000000000600", "ckpt_000000000800"]
    assert [c.name for c in list_checkpoints(run, 1)] == ["ckpt_000000000600", "ckpt_000000000800"]


def test_a_run_whose_checkpoints_are_all_corrupted_is_not_restarted_silently(tmp_path, run_args, capsys):
    train.main(run_args("r", "run.gif=false"))
    run = tmp_path / "r"
    for checkpoint in list_checkpoints(run, 1):
        rank_file(checkpoint, 0).write_bytes(b"garbage")
    rows = read_rows(run)
    err = fails(["--resume", str(run), "train.total_steps=800"], capsys)
    assert "every checkpoint in" in err and "corrupted" in err and "rank0.pt does not match its sha256" in err
    assert read_rows(run) == rows


def test_a_checkpoint_is_recorded_with_the_sha256_of_every_rank_file(tmp_path, run_args):
    train.main(run_args("r", "train.total_steps=300", "run.gif=false"))
    (checkpoint,) = list_checkpoints(tmp_path / "r", 1)
    assert sorted(path.name for path in checkpoint.iterdir()) == [RECORD_FILE, "rank0.pt"]
    record = json.loads(record_file(checkpoint).read_text())
    assert record == {"world_size": 1, "env_steps": 300, "sha256": {"rank0.pt": sha256(rank_file(checkpoint, 0))}}


KILLS = {  # (save, call): the step of the newest complete checkpoint after the kill (None: none)
    (1, 3): None,  # the first save: its rank file in place, no record yet
    (2, 1): 50,  # the second save (at 100), before its rank file is in place
    (2, 3): 50,  # between the rank file and the record
    (2, 6): 100,  # after the record
    (2, 8): 100,  # pruning the checkpoint at 50, before its record goes
    (2, 9): 100,  # pruning, its record gone, its rank file not yet
}


@pytest.mark.parametrize("save, call", list(KILLS))
def test_a_save_killed_anywhere_resumes_from_the_newest_complete_checkpoint(tmp_path, capsys, save, call):
    """SIGKILL at the call-th file system step (os.fsync, os.replace, os.unlink) of a run's save-th
    save (tests/kill_save.py); keep_checkpoints=1, so a save prunes the one before it."""
    args = train_args(tmp_path, "r", "train.checkpoint_every=50", "train.eval_every=50", "train.keep_checkpoints=1",
                      "train.total_steps=100", "run.gif=false")[1:]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KILL_SAVE": str(save), "KILL_CALL": str(call)}
    killed = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_save.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    run, step = tmp_path / "r", KILLS[save, call]
    resume = ["--resume", str(run), "train.total_steps=150", "run.progress=false", "run.gif=false"]
    if step is None:
        assert latest_good_checkpoint(run) is None
        assert "no complete checkpoint" in fails(resume, capsys)
        return
    assert latest_good_checkpoint(run) == checkpoint_dir(run, step)
    capsys.readouterr()
    train.main(resume)
    warning = capsys.readouterr().err
    assert ("passed over ckpt_000000000100" in warning) == (step == 50) and warning.count("\n") <= 1
    assert steps(run) == [0, 50, 100, 150]
    assert checkpoint_dirs(run) == list_checkpoints(run, 1) == [checkpoint_dir(run, 150)]  # leftovers pruned


def test_a_two_rank_run_keeps_exactly_its_checkpoints_each_recorded_by_both_ranks(tmp_path):
    """Rank 0 prunes only after every rank's file of the new checkpoint is in place and recorded."""
    overrides = ("--mode", "data", "train.total_steps=400", "train.checkpoint_every=50", "train.keep_checkpoints=2")
    result = torchrun(2, *train_args(tmp_path, "r", *overrides, "run.gif=false"))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "r"
    assert checkpoint_dirs(run) == list_checkpoints(run, 2) == [checkpoint_dir(run, 350), checkpoint_dir(run, 400)]
    for checkpoint in checkpoint_dirs(run):
        assert sorted(path.name for path in checkpoint.iterdir()) == [RECORD_FILE, "rank0.pt", "rank1.pt"]
        assert verify(checkpoint).world_size == 2


def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path, run_args, capsys):
    train.main(run_args("r", "train.total_steps=300", "run.gif=false"))
    run = tmp_path / "r"
    (checkpoint,) = list_checkpoints(run, 1)
    marker = tmp_path / "code_ran"
    for payload in ("torch.save", "pickle.dump"):  # the zip format and the legacy pickle format
        with rank_file(checkpoint, 0).open("wb") as f:
            if payload == "torch.save":
                torch.save({"learner": RunsCode(marker)}, f)
            else:
                pickle.dump({"learner": RunsCode(marker)}, f, protocol=2)  # the protocol torch's legacy files use
        record_as_is(checkpoint)  # a consistent sha256
        err = fails(["--resume", str(run), "train.total_steps=600"], capsys)
        assert "unsupported GLOBAL posix.system" in err and "nothing in it ran" in err
        assert not marker.exists()
    torch.save({"version": 1, "actor": RunsCode(marker)}, tmp_path / "prey.pt")
    with pytest.raises(train.ConfigError, match=r"unsupported GLOBAL posix\.system"):
        load_prey(str(tmp_path / "prey.pt"), EnvConfig(), obs_dim=16, act_dim=5, device="cpu")
    assert not marker.exists()


def test_every_torch_load_in_the_project_uses_weights_only():
    sources = [ROOT / "train.py", *(ROOT / "maddpg").glob("*.py"), *(ROOT / "tests").glob("*.py")]
    calls = 0
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                calls += 1
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert keywords.get("weights_only") == "True", f"{source.name}:{node.lineno} loads without weights_only"
    assert calls >= 2


# -- bad input: one line, exit code 2 ---------------------------------------------------------


def test_bad_files_and_paths_stop_with_one_line(tmp_path, run_args, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: {total_steps: [\n")
    assert "not readable YAML" in fails(run_args("a", "--config", str(bad_yaml)), capsys)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    assert "not a mapping" in fails(run_args("a", "--config", str(listed)), capsys)
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("not a checkpoint")
    err = fails(run_args("a", "prey.mode=fixed", f"prey.checkpoint={not_a_checkpoint}"), capsys)
    assert "is not a readable checkpoint" in err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "tensors.pt")
    err = fails(run_args("a", "prey.mode=fixed", f"prey.checkpoint={tmp_path / 'tensors.pt'}"), capsys)
    assert "is not a prey file" in err
    assert "no config.yaml there" in fails(["--resume", str(tmp_path / "nowhere")], capsys)
    assert not (tmp_path / "a").exists()


def test_a_prey_trained_for_other_teams_stops_the_run_with_one_line(tmp_path, run_args, capsys):
    train.main(run_args("teacher", "env.num_adversaries=2", "train.total_steps=100", "run.gif=false"))
    prey = tmp_path / "teacher" / "prey.pt"
    err = fails(run_args("student", "prey.mode=fixed", f"prey.checkpoint={prey}"), capsys)
    assert "was trained for (adversaries, good, obstacles, obs, act) = (2, 1, 2, 14, 5)" in err


def test_resume_may_change_only_the_resumable_keys(tmp_path, run_args, capsys):
    train.main(run_args("r", "train.total_steps=300", "run.gif=false"))
    run = str(tmp_path / "r")
    for override, key in [("maddpg.hidden=[8,8]", "maddpg.hidden"), ("env.num_adversaries=2", "env.num_adversaries"),
                          ("maddpg.critic_lr=0.1", "maddpg.critic_lr"), ("mode=data", "mode")]:  # fmt: skip
        err = fails(["--resume", run, override], capsys)
        assert f"{key} was" in err and "a resumed run may change only train.total_steps" in err
    config = tmp_path / "r" / "config.yaml"
    config.write_text(config.read_text().replace("- 32\n", "- 16\n"))  # edited by hand: the checkpoint no longer fits
    assert "does not fit this run" in fails(["--resume", run, "train.total_steps=600"], capsys)


# -- the non-finite guard ---------------------------------------------------------------------


def test_the_guard_names_the_agent_and_network_of_a_nonfinite_parameter():
    learner = toy_learner()
    assert nonfinite_parameter(learner, NAMES) is None
    with torch.no_grad():
        learner.target_critic.layers[1].bias[2, 0] = float("inf")
    assert nonfinite_parameter(learner, NAMES) == "adversary_2's target critic has a non-finite parameter"
    row = {"critic_loss/agent_0": 1.0, "actor_loss/agent_0": float("nan")}
    assert nonfinite_loss(row, NAMES) == "agent_0's actor loss is nan"
    error = nonfinite_error("agent_0's actor loss is nan", 400, Comm(rank=1, world_size=2))
    assert str(error).startswith("rank 1: agent_0's actor loss is nan at env step 400: the run stops")


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, run_args, capsys, monkeypatch):
    update = Maddpg.update

    def update_then_poison(self, batch):
        losses = update(self, batch)
        if self.updates == 300:  # at env step 363; the next evaluation is at 400
            with torch.no_grad():
                self.critic.layers[0].weight[0].fill_(float("nan"))
        return losses

    monkeypatch.setattr(Maddpg, "update", update_then_poison)
    err = fails(run_args("r"), capsys, code=3)
    assert "adversary_0's critic loss is nan at env step 400: the run stops and keeps its last good checkpoint" in err
    run = tmp_path / "r"
    (checkpoint,) = list_checkpoints(run, 1)
    assert checkpoint.name == "ckpt_000000000300" and verify(checkpoint).env_steps == 300
    state = load_checkpoint(checkpoint, 0)["learner"]
    assert all(torch.isfinite(v).all() for net in ("actor", "critic") for v in state[net].values())
    assert steps(run) == [0, 200, 400]


def test_a_nan_parameter_is_never_checkpointed(tmp_path, run_args, capsys, monkeypatch):
    evaluate, evaluations = train.evaluate, []

    def evaluate_then_poison(learner, *rest):
        result = evaluate(learner, *rest)
        evaluations.append(1)
        if len(evaluations) == 4:  # the row at 600 is clean; the checkpoint at 600 comes next
            with torch.no_grad():
                learner.target_actor.layers[0].bias[3, 0] = float("nan")
        return result

    monkeypatch.setattr(train, "evaluate", evaluate_then_poison)
    err = fails(run_args("r"), capsys, code=3)
    assert "agent_0's target actor has a non-finite parameter at env step 600" in err
    assert [c.name for c in list_checkpoints(tmp_path / "r", 1)] == ["ckpt_000000000300"]


# -- elastic restarts -------------------------------------------------------------------------


def elastic_env(monkeypatch, restart: int, run_id: str = "job-1") -> None:
    """The variables torchrun --max-restarts=1 sets for a worker of attempt `restart`."""
    for key, value in (("TORCHELASTIC_RESTART_COUNT", restart), ("TORCHELASTIC_MAX_RESTARTS", 1),
                       ("TORCHELASTIC_RUN_ID", run_id)):  # fmt: skip
        monkeypatch.setenv(key, str(value))


def test_an_elastic_run_needs_a_fixed_name(run_args, capsys, monkeypatch):
    elastic_env(monkeypatch, 0)
    assert "set run.name=NAME" in fails(run_args("x", "run.name=null"), capsys)


def test_a_restarted_worker_continues_its_own_jobs_run_only(tmp_path, run_args, capsys, monkeypatch):
    elastic_env(monkeypatch, 0)
    train.main(run_args("r", "train.keep_checkpoints=5", "run.gif=false"))
    run = tmp_path / "r"
    assert (run / RUN_ID_FILE).read_text().strip() == "job-1"
    list_checkpoints(run, 1)[-1].rename(run / "checkpoints" / "partial")  # as if it died after the row at 600
    elastic_env(monkeypatch, 1, run_id="another-job")
    assert "exists" in fails(run_args("r", "run.gif=false"), capsys)
    elastic_env(monkeypatch, 1)
    train.main(run_args("r", "train.keep_checkpoints=5", "run.gif=false"))
    assert "elastic restart 1: " in capsys.readouterr().err
    assert steps(run) == [0, 200, 400, 600]


def test_a_job_restarted_before_its_first_checkpoint_starts_again(tmp_path, run_args, monkeypatch):
    elastic_env(monkeypatch, 0)
    train.main(run_args("r", "train.total_steps=250", "run.gif=false"))
    run = tmp_path / "r"
    for checkpoint in list_checkpoints(run, 1):
        checkpoint.rename(run / "checkpoints" / f"partial_{checkpoint.name}")
    elastic_env(monkeypatch, 1)
    train.main(run_args("r", "train.total_steps=250", "run.gif=false"))
    assert steps(run) == [0, 200]


def test_checkpoints_every_few_minutes(tmp_path, run_args):
    overrides = ("train.total_steps=150", "train.checkpoint_minutes=1e-9", "train.keep_checkpoints=9", "run.gif=false")
    train.main(run_args("r", *overrides))
    assert [int(c.name[5:]) for c in list_checkpoints(tmp_path / "r", 1)] == [25, 50, 75, 100, 125, 150]


@pytest.mark.parametrize("mode, ranks", [("data", 2), ("genetic", 3)])
def test_a_rank_killed_mid_run_is_restarted_from_the_last_checkpoint(tmp_path, monkeypatch, mode, ranks):
    """SIGKILL to the last rank at its evaluation at ~400 env steps, after the checkpoint at 300;
    torchrun --max-restarts=1 restarts the job, which resumes from that checkpoint and finishes."""
    record = tmp_path / "killed.json"
    monkeypatch.setenv("KILL_RANK", str(ranks - 1))
    monkeypatch.setenv("KILL_AT_EVAL", "2")
    monkeypatch.setenv("KILL_RUN_DIR", str(tmp_path / mode))
    monkeypatch.setenv("KILL_RECORD", str(record))
    monkeypatch.setenv("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")  # a fresh rendezvous store per attempt
    args = train_args(tmp_path, mode, "--mode", mode, "run.gif=false", "genetic.sync_every=100")[1:]
    result = torchrun(ranks, "--max-restarts=1", str(ROOT / "tests" / "dist_kill.py"), *args, timeout=170)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "elastic restart 1: " in result.stderr and "ckpt_000000000300" in result.stderr
    run = tmp_path / mode
    rows = read_rows(run)
    evaluations = [0, 200, 400, 600] if mode == "data" else [0, 201, 402, 600]  # 3 learners step 3 at a time
    assert [r["env_steps"] for r in rows] == evaluations
    final = load_checkpoint(list_checkpoints(run, ranks)[-1], 0)["progress"]
    assert final["env_steps"] == 600
    killed = json.loads(record.read_text())["checkpoints"]
    assert sorted(killed) == [f"checkpoints/ckpt_000000000300/rank{r}.pt" for r in range(ranks)]
    for name, digest in killed.items():  # the checkpoint written before the kill is untouched
        assert sha256(run / name) == digest
    if mode == "genetic":
        assert steps(run, SYNCS_FILE) == [300, 600]


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace per rank needs root")
def test_ranks_with_run_directories_of_their_own_stop_rather_than_start_again(tmp_path, monkeypatch):
    """Nodes that each keep run.dir on a local disk (here: a mount per rank): after rank 1 dies past the
    checkpoint at 300, the restarted job must not start again at step 0 over rank 0's rows; it stops
    with the fix."""
    monkeypatch.setenv("NODE_LOCAL_DIR", str(tmp_path))  # rank r sees tmp_path/node{r} at tmp_path/runs
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("KILL_RANK", "1")
    monkeypatch.setenv("KILL_AT_EVAL", "2")
    monkeypatch.setenv("KILL_RUN_DIR", str(tmp_path / "runs" / "r"))
    monkeypatch.setenv("KILL_RECORD", str(tmp_path / "killed.json"))
    monkeypatch.setenv("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    args = train_args(tmp_path / "runs", "r", "--mode", "data", "run.gif=false")[1:]
    result = torchrun(2, "--max-restarts=1", str(ROOT / "tests" / "dist_kill.py"), *args, timeout=170)
    assert result.returncode != 0
    assert result.stderr.count("error: rank 1 on ") == 1, result.stderr[-3000:]
    assert "the nodes do not share the run directory" in result.stderr
    rows = steps(tmp_path / "node0" / "r")
    assert rows[:2] == [0, 200] and rows == sorted(set(rows))  # nothing dropped, nothing started again
    node0 = tmp_path / "node0" / "r"
    assert checkpoint_dirs(node0) == [checkpoint_dir(node0, 300)]
    assert read_record(checkpoint_dir(node0, 300)).world_size == 2  # both files listed, rank 1's on its own disk


def test_an_error_on_one_rank_stops_every_rank_with_its_code_and_rank_0_says_it_once(tmp_path):
    """Rank 1's checkpoint file alone is unreadable (exit 2), then alone holds a NaN (exit 3)."""
    first = torchrun(2, *train_args(tmp_path, "gen", "--mode", "genetic", "train.total_steps=300", "run.gif=false"))
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "gen"
    (checkpoint,) = list_checkpoints(run, 2)
    rank1 = rank_file(checkpoint, 1)
    state = load_checkpoint(checkpoint, 1)
    resume = ("train.py", "--resume", str(run), "train.total_steps=600", "run.progress=false", "run.gif=false")
    for damage, code, message in [
        ("garbage", 2, "rank1.pt is not a readable checkpoint"),
        (
            "nan",
            3,
            "error: rank 1: adversary_0's critic loss is nan at env step 600",
        ),  # updates restart with the buffer
    ]:
        if damage == "garbage":
            rank1.write_bytes(b"garbage")
        else:
            state["learner"]["critic"]["layers.0.weight"][0] = float("nan")
            torch.save(state, rank1)
        record_as_is(checkpoint)  # the damage was done before the save was recorded
        result = torchrun(2, *resume)
        assert result.stderr.count("error: ") == 1 and message in result.stderr, result.stderr[-3000:]
        assert result.stderr.count(f"exitcode  : {code} (pid") == 2, result.stderr[-3000:]


def test_a_crash_while_a_resume_drops_rows_loses_none_of_them(tmp_path, run_args, monkeypatch):
    """A resume from the checkpoint at 300 drops the rows after it by writing the rows file anew; a
    failure half-way through that write must leave the file as it was."""
    train.main(run_args("r", "run.gif=false"))
    run = tmp_path / "r"
    list_checkpoints(run, 1)[-1].rename(run / "checkpoints" / "partial")  # as if it died after the row at 600
    rows = read_rows(run)
    write_text = type(run).write_text

    def half_then_fail(path, data, *args, **kwargs):
        write_text(path, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(run), "write_text", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        train.main(["--resume", str(run), "run.progress=false", "run.gif=false"])
    assert read_rows(run) == rows
