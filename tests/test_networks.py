"""Stacked per-agent networks: shapes, independence of agents, padding, slicing."""

import torch

from maddpg.core.networks import StackedMLP


def test_shapes_and_sigmoid_range():
    net = StackedMLP(3, 7, [16, 16], 5, sigmoid_output=True)
    out = net(torch.randn(3, 11, 7))
    assert out.shape == (3, 11, 5)
    assert out.min() >= 0 and out.max() <= 1


def test_stack_equals_separate_networks():
    torch.manual_seed(0)
    net = StackedMLP(3, 4, [8], 2)
    x = torch.randn(3, 5, 4)
    out = net(x)
    for k in range(3):
        h = torch.relu(x[k] @ net.layers[0].weight[k] + net.layers[0].bias[k])
        expected = h @ net.layers[1].weight[k] + net.layers[1].bias[k]
        torch.testing.assert_close(out[k], expected)


def test_agents_are_independent():
    torch.manual_seed(0)
    net = StackedMLP(4, 6, [8, 8], 5, sigmoid_output=True)
    x = torch.randn(4, 9, 6)
    before = net(x).detach()
    with torch.no_grad():
        for p in net.parameters():
            p[2].add_(torch.randn_like(p[2]))  # change agent 2 only
    after = net(x).detach()
    changed = [not torch.equal(before[k], after[k]) for k in range(4)]
    assert changed == [False, False, True, False]


def test_padded_inputs_start_at_zero_and_do_not_matter():
    net = StackedMLP(2, 6, [8], 3, fan_in=[6, 4])
    first = net.layers[0].weight
    assert torch.count_nonzero(first[1, 4:]) == 0
    assert torch.count_nonzero(first[0]) == first[0].numel()
    x = torch.randn(2, 5, 6)
    x_other_padding = x.clone()
    x_other_padding[1, :, 4:] = 123.0
    out, out_other = net(x), net(x_other_padding)
    assert torch.equal(out[1], out_other[1])


def test_select_copies_the_chosen_agents():
    net = StackedMLP(4, 3, [5], 2)
    sub = net.select([1, 3])
    x = torch.randn(4, 6, 3)
    torch.testing.assert_close(sub(x[[1, 3]]), net(x)[[1, 3]])
    with torch.no_grad():
        sub.layers[0].weight.zero_()
    assert torch.count_nonzero(net.layers[0].weight) > 0  # a copy, not a view


def test_a_shared_input_gives_what_each_network_gives_on_it():
    net = StackedMLP(3, 7, [8, 6], 2)
    x = torch.randn(5, 7)
    torch.testing.assert_close(net.forward_shared(x), net(x.expand(3, 5, 7)))
    # An offset of the first layer's output is a change of input through the first layer's weights.
    change = torch.randn(3, 5, 7)
    offset = torch.bmm(change, net.layers[0].weight)
    torch.testing.assert_close(net.forward_shared(x, offset), net(x + change))
