"""The scaling bench's cost model and measurements (maddpg/scaling.py), at toy scale."""

import math

import pytest

from maddpg.core.config import load_config
from maddpg.scaling import (
    OPS,
    Net,
    Parts,
    collectives,
    ec2_predictions,
    extrapolate,
    predict,
    team,
    timed_update_ms,
    timings,
)

NET = Net({op: 1e-4 for op in OPS}, {op: 1e-9 for op in OPS})


def parts(agents: int = 8, scale: float = 1.0) -> Parts:
    return Parts(agents, act_ms=2.0 * scale, update_ms=30.0 * scale, micro_one_ms=10.0 * scale,
                 micro_all_ms=24.0 * scale, micro_quarter_batch_ms=9.0 * scale, action_bytes=20 * agents,
                 actor_bytes=24_000, critic_bytes=10_000 * agents, batch_bytes=60_000 * agents)  # fmt: skip


def test_collective_costs_follow_a_ring_and_a_link_adds_its_delay_and_time_per_byte():
    assert NET.cost("all_gather", 1e6, 1) == 0.0
    assert NET.cost("all_gather", 1e6, 2) == pytest.approx(1e-4 + 1e-3)
    assert NET.cost("all_reduce", 1e6, 2) == pytest.approx(2e-4 + 1e-3)  # 2 steps of half the message
    assert NET.cost("all_reduce", 1e6, 5) == pytest.approx(8 * (1e-4 + 2e5 * 1e-9))
    linked = NET.over(delay_s=1e-3, bytes_per_s=1e8)
    assert linked.cost("broadcast", 1e6, 3) == pytest.approx(2 * (1e-4 + 1e-3 + 1e6 * (1e-9 + 1e-8)))


def test_fitting_recovers_the_latency_and_time_per_byte_of_timings_the_model_made():
    timed = {op: {floats: NET.cost(op, 4 * floats, 2) for floats in (16, 1 << 20)} for op in OPS}
    fitted = Net.fit(timed)
    for op in OPS:
        assert fitted.latency_s[op] == pytest.approx(1e-4, rel=1e-3)
        assert fitted.s_per_byte[op] == pytest.approx(1e-9, rel=1e-3)


def test_update_times_interpolate_between_the_timed_blocks_and_batches():
    p = parts()
    assert p.update(8) == pytest.approx(30.0)  # every agent, full batch: the run's own time
    assert p.update(1) == pytest.approx(30.0 * 10 / 24)
    assert p.update(8, 0.25) == pytest.approx(30.0 * 9 / 24)
    assert p.update(1) < p.update(4) < p.update(8)


def test_every_mode_on_one_rank_costs_what_single_mode_does():
    p = parts()
    single = predict(p, "single", 1, NET)
    assert single == pytest.approx(32.0)
    assert predict(p, "model", 1, NET) == pytest.approx(single)
    assert predict(p, "data", 1, NET) == pytest.approx(single)
    with pytest.raises(ValueError, match="no cost model"):
        predict(p, "genetic", 2, NET)


def test_model_mode_halves_the_updates_and_pays_only_small_messages():
    p = parts(agents=48, scale=20.0)
    two = predict(p, "model", 2, NET)
    assert two < predict(p, "single", 1, NET)
    assert two == pytest.approx(p.act_ms + p.update(24), rel=0.01)  # the gathers are tiny next to compute


def test_steady_rows_start_after_every_ranks_warm_up():
    rows = [{"env_steps": s, "steps_per_s": 100.0 if s >= 480 + 240 else 1.0, "comm_share": 0.5}
            for s in range(0, 480 * 3 + 1, 240)]  # fmt: skip
    assert timings(rows, every=240, replicas=2) == {"ms_per_transition": 10.0, "ms_per_update": None, "comm_share": 0.5}


def test_extrapolation_follows_the_power_of_the_two_largest_teams():
    small, large = parts(16), parts(32, scale=4.0)  # times grow as N^2 between them
    assert extrapolate([small, large], 64).update_ms == pytest.approx(30.0 * 16)
    assert extrapolate([small, large], 64).action_bytes == 20 * 64


def test_ec2_predictions_cap_the_ranks_at_what_each_mode_can_use():
    rows = ec2_predictions([parts(4), parts(8, 2.0)], NET)
    ranks = {(r["agents"], r["mode"]): [] for r in rows}
    for r in rows:
        ranks[r["agents"], r["mode"]].append(r["ranks"])
    assert ranks[4, "model"] == [4] and ranks[4, "pipeline"] == [5] and ranks[4, "data"] == [5, 40]
    assert ranks[64, "model"] == [5, 40]
    assert all(math.isfinite(r["speedup"]) and r["speedup"] > 0 for r in rows)


def test_a_timed_update_of_part_of_the_team_is_cheaper():
    cfg = load_config(None, team(8))
    assert 0 < timed_update_ms(cfg, 1, 64, repeats=2) < timed_update_ms(cfg, 8, 64, repeats=2)


def test_collectives_are_timed_on_two_ranks_for_every_op_and_size():
    timed = collectives()
    assert set(timed) == set(OPS)
    net = Net.fit(timed)
    assert all(net.latency_s[op] > 0 and net.s_per_byte[op] > 0 for op in OPS)
