"""The benchmark's own arithmetic: buffer size, the profile summary, the comparison of two results and the
thread policy section's runs."""

import os
import time
from pathlib import Path

from conftest import children
from maddpg import bench
from maddpg.config import Backend, load_config


def test_the_default_buffer_is_each_transition_once_in_float32():
    # simple_tag, 3 predators, a prey, 2 obstacles: positions of all 6 entities and the agents' velocities
    # before the step, the agents' positions and velocities after it, 5 actions and a reward each, a flag.
    floats = 6 * 2 + 4 * 2 + 4 * 2 * 2 + 4 * 5 + 4 + 1
    assert bench.buffer_mb() == 500_000 * floats * 4 / 2**20


def test_storing_world_states_grows_with_the_team_where_observations_grew_with_its_square():
    def sizes(predators, prey):
        cfg = load_config(None, [f"env.num_adversaries={predators}", f"env.num_good={prey}"])
        return bench.buffer_mb(cfg), bench.observations_buffer_mb(cfg)

    (small, small_before), (large, large_before) = sizes(3, 1), sizes(24, 8)
    assert small_before == 500_000 * (2 * 4 * 16 + 4 * 6 + 1) * 4 / 2**20  # the buffer before world states
    assert small < small_before and large < 1024 < 10_000 < large_before
    assert large / small < 9 and large_before / small_before > 30  # 8x the agents


def test_the_update_profile_ranks_operators_by_their_own_time():
    ops = bench.update_profile(threads=1, updates=5, top=4)
    assert len(ops) == 4
    assert [op["ms_per_update"] for op in ops] == sorted((op["ms_per_update"] for op in ops), reverse=True)
    assert 0 < sum(op["share"] for op in ops) <= 1
    assert any("mm" in op["op"] for op in ops)  # the matmuls lead a default update


def test_compare_prints_every_shared_figure_as_a_ratio():
    old = {"update": [{"ms": 4.0}], "gone": 1.0}
    new = {"update": [{"ms": 3.0}], "added": 2.0}
    assert bench.compare(old, new) == ["update.0.ms: 4 -> 3 (0.75x)"]


def spinning_children(wait_for: int = 0, timeout: float = 30.0) -> int:
    """This process's children running the bench's busy loop. A child just started shows this
    process's command line until it has exec'd (long on a busy machine): wait up to `timeout` for
    `wait_for` of them."""
    deadline = time.monotonic() + timeout
    while True:
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children(os.getpid())]
        count = sum(b"while True: pass" in command for command in commands)
        if count >= wait_for or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def test_the_thread_policy_times_the_configs_threads_and_torchs_idle_then_the_configs_beside_a_busy_process(
    monkeypatch,
):
    # train_speed (the `train` section's timed train.py runs) is stood in for, so the test takes no run.
    monkeypatch.setitem(bench.PRESETS, "toy", ["--config", "configs/smoke.yaml", "run.threads=1"])
    calls = []

    def train_speed(preset, backend, threads):
        calls.append((preset, backend, threads, spinning_children(wait_for=1 if len(calls) == 2 else 0)))
        return {"steps_per_s": [100.0, 125.0, 60.0][len(calls) - 1]}

    monkeypatch.setattr(bench, "train_speed", train_speed)
    result = bench.thread_policy("toy")
    # The config's threads idle, PyTorch's (run.threads=0) idle, the config's beside one spinning process.
    assert calls == [("toy", Backend.torch, 1, 0), ("toy", Backend.torch, 0, 0), ("toy", Backend.torch, 1, 1)]
    assert spinning_children() == 0  # stopped afterwards
    assert result["run_threads"] == result["torch_threads"] == 1 and result["mode"] == "single"
    assert result["busy_over_idle"] == 0.6 and result["idle_over_torch_default_idle"] == 0.8
