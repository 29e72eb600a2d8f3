"""The benchmark's own arithmetic: buffer size, the profile summary and the comparison of two results."""

from maddpg import bench


def test_the_default_buffer_is_each_transition_once_in_float32():
    # simple_tag, 3 predators and a prey: observations padded to 16, 5 actions, a reward each, a flag.
    floats = 2 * 4 * 16 + 4 * 5 + 4 + 1
    assert bench.buffer_mb() == 500_000 * floats * 4 / 2**20


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
