"""The MADDPG math: targets, losses, which parameters each loss reaches, soft updates, exploration."""

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import random_batch, toy_learner
from maddpg.bench import update_flops
from maddpg.core.config import ExploreConfig
from maddpg.core.learner import Maddpg, exploration_scale, explore

OBS_DIMS = (6, 6, 6, 5)


def reference_losses(learner, batch):
    """MADDPG written per agent with plain loops, as in the paper, to check the stacked version."""
    n, gamma = learner.n_learners, learner.cfg.gamma

    def actor_k(actor, k, obs):  # agent k's own network on its own observation
        x = obs[:, k]
        for i, layer in enumerate(actor.layers):
            x = x @ layer.weight[k] + layer.bias[k]
            x = torch.relu(x) if i < len(actor.layers) - 1 else torch.sigmoid(x)
        return x

    def critic_k(critic, k, obs, act):
        flat = obs.flatten(1)[:, learner.obs_cols]
        x = torch.cat([flat, act.flatten(1)], dim=1)
        for i, layer in enumerate(critic.layers):
            x = x @ layer.weight[k] + layer.bias[k]
            x = torch.relu(x) if i < len(critic.layers) - 1 else x
        return x.squeeze(-1)

    with torch.no_grad():
        next_act = torch.stack([actor_k(learner.target_actor, k, batch.next_obs) for k in range(n)], dim=1)
        critic_losses = []
        for i in range(n):
            y = batch.rew[:, i] + gamma * critic_k(learner.target_critic, i, batch.next_obs, next_act)
            critic_losses.append(((critic_k(learner.critic, i, batch.obs, batch.act) - y) ** 2).mean())
        actor_losses = []
        for i in range(n):
            act = batch.act.clone()
            act[:, i] = actor_k(learner.actor, i, batch.obs)
            actor_losses.append(-critic_k(learner.critic, i, batch.obs, act).mean())
    return torch.stack(critic_losses), torch.stack(actor_losses)


def perturb(module, agent=None):
    with torch.no_grad():
        for p in module.parameters():
            target = p if agent is None else p[agent]
            target.add_(0.3 * torch.randn_like(target))


def test_stacked_losses_equal_the_per_agent_reference():
    learner = toy_learner()
    perturb(learner.target_actor)  # targets differ from the online networks
    perturb(learner.target_critic)
    batch = random_batch(32, OBS_DIMS)
    critic_ref, actor_ref = reference_losses(learner, batch)
    torch.testing.assert_close(learner.critic_losses(batch), critic_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(learner.actor_losses(batch), actor_ref, rtol=1e-5, atol=1e-6)


def test_critic_target_uses_target_actors_of_all_agents_on_next_obs():
    learner = toy_learner()
    batch = random_batch(16, OBS_DIMS)
    base = learner.critic_losses(batch).detach()

    other = copy.deepcopy(learner)
    perturb(other.target_actor, agent=3)  # another agent's target actor changes agent 0's target
    assert not torch.allclose(other.critic_losses(batch)[0], base[0])

    other = copy.deepcopy(learner)
    perturb(other.actor, agent=3)  # the online actors play no part in the critic loss
    assert torch.equal(other.critic_losses(batch).detach(), base)

    changed_next = batch._replace(next_obs=batch.next_obs.flip(0))
    assert not torch.allclose(learner.critic_losses(changed_next).detach(), base)


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete: through the Gumbel-softmax"])
def test_actor_loss_gradient_reaches_only_its_own_actor(discrete):
    learner = toy_learner(discrete=discrete)
    batch = random_batch(16, OBS_DIMS)
    for i in range(learner.n_learners):
        learner.actor.zero_grad(set_to_none=False)
        learner.critic.zero_grad(set_to_none=False)
        learner.actor_losses(batch)[i].backward()
        for p in learner.actor.parameters():
            norms = p.grad.flatten(1).norm(dim=1)
            assert norms[i] > 0
            assert torch.count_nonzero(norms) == 1, f"agent {i}'s actor loss reached other actors"


def test_update_trains_actors_and_critics_and_leaves_targets_to_the_soft_update():
    learner = toy_learner()
    learner.cfg.target_update_every = 2
    before = copy.deepcopy(learner)
    batch = random_batch(16, OBS_DIMS)
    learner.update(batch)
    assert not torch.equal(learner.actor.layers[0].weight, before.actor.layers[0].weight)
    assert not torch.equal(learner.critic.layers[0].weight, before.critic.layers[0].weight)
    assert torch.equal(learner.target_critic.layers[0].weight, before.target_critic.layers[0].weight)
    assert all(p.requires_grad for p in learner.critic.parameters())
    learner.update(batch)  # second update: soft update with tau
    tau = learner.cfg.tau
    expected = (1 - tau) * before.target_critic.layers[0].weight + tau * learner.critic.layers[0].weight
    torch.testing.assert_close(learner.target_critic.layers[0].weight, expected)


def test_terminal_transitions_do_not_bootstrap():
    learner = toy_learner()
    batch = random_batch(8, OBS_DIMS)
    done = batch._replace(terminal=torch.ones(8))
    q = learner.q_values(learner.critic, batch.obs, batch.act).detach()
    expected = ((q - batch.rew.T) ** 2).mean(dim=1)
    torch.testing.assert_close(learner.critic_losses(done).detach(), expected)


def test_random_prey_fills_the_prey_slots():
    learner = toy_learner(n_learners=3, prey="random")
    obs = random_batch(4, OBS_DIMS).obs
    acts = learner.act(obs)
    assert acts.shape == (4, 4, 5)
    torch.testing.assert_close(acts[:, :3], learner.learner_actions(obs))


def test_exploration_stays_in_bounds_and_uses_both_mechanisms():
    g = torch.Generator().manual_seed(0)
    actions = torch.full((2000, 3, 5), 0.98)
    out = explore(actions, epsilon=0.5, noise_std=0.1, generator=g)
    assert out.min() >= 0 and out.max() <= 1
    uniform_rows = (out < 0.6).any(-1).float().mean()  # uniform actions fall far below 0.98
    assert 0.4 < uniform_rows < 0.6
    assert torch.equal(explore(actions, 0.0, 0.0, g), actions)


def test_exploration_decays_linearly_to_the_floor():
    cfg = ExploreConfig(epsilon=0.1, noise_std=0.1, decay=5e-7, floor=0.05)
    assert exploration_scale(0.1, cfg, 0) == 0.1
    assert abs(exploration_scale(0.1, cfg, 50_000) - 0.075) < 1e-12
    assert exploration_scale(0.1, cfg, 10**7) == 0.05
    assert exploration_scale(0.0, cfg, 0) == 0.0  # switched off stays off: the floor never raises it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_update_matches_cpu():
    cpu, gpu = toy_learner(), toy_learner(device="cuda")
    batch = random_batch(64, OBS_DIMS)
    for _ in range(3):
        cpu.update(batch)
        gpu.update(batch._replace(**{k: v.cuda() for k, v in batch._asdict().items()}))
    for a, b in zip(cpu.actor.parameters(), gpu.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)


def per_agent(module, k: int) -> list[torch.Tensor]:
    """Agent k's layers of a stacked network as separate leaf tensors: [W0, b0, W1, b1, ...]."""
    return [t.detach()[k].clone().requires_grad_() for layer in module.layers for t in (layer.weight, layer.bias)]


def mlp(params, x, sigmoid):
    for i in range(0, len(params), 2):
        x = x @ params[i] + params[i + 1]
        x = torch.relu(x) if i < len(params) - 2 else (torch.sigmoid(x) if sigmoid else x)
    return x


def test_the_batched_update_equals_a_per_agent_reference_update():
    """Three updates (critic step, actor step, soft update) of the stacked learner against MADDPG
    written per agent: separate tensors and an unfused Adam per agent and network."""
    learner = toy_learner()
    n, cfg = learner.n_learners, learner.cfg
    nets = {name: [per_agent(getattr(learner, name), k) for k in range(n)]
            for name in ("actor", "critic", "target_actor", "target_critic")}  # fmt: skip
    actor_opts = [torch.optim.Adam(nets["actor"][k], lr=cfg.actor_lr, foreach=False) for k in range(n)]
    critic_opts = [torch.optim.Adam(nets["critic"][k], lr=cfg.critic_lr, foreach=False) for k in range(n)]

    def q(params, obs, act):
        return mlp(params, torch.cat([obs.flatten(1)[:, learner.obs_cols], act.flatten(1)], 1), False).squeeze(-1)

    for step in range(3):
        batch = random_batch(32, OBS_DIMS, seed=step)
        learner.update(batch)
        with torch.no_grad():
            next_act = torch.stack([mlp(nets["target_actor"][k], batch.next_obs[:, k], True) for k in range(n)], 1)
        for i in range(n):
            with torch.no_grad():
                y = batch.rew[:, i] + cfg.gamma * q(nets["target_critic"][i], batch.next_obs, next_act)
            critic_opts[i].zero_grad()
            ((q(nets["critic"][i], batch.obs, batch.act) - y) ** 2).mean().backward()
            critic_opts[i].step()
        for i in range(n):
            act = batch.act.clone()
            act[:, i] = mlp(nets["actor"][i], batch.obs[:, i], True)
            actor_opts[i].zero_grad()
            (-q([p.detach() for p in nets["critic"][i]], batch.obs, act).mean()).backward()
            actor_opts[i].step()
        with torch.no_grad():  # target_update_every=1 in toy_learner
            for online, target in (("actor", "target_actor"), ("critic", "target_critic")):
                for k in range(n):
                    for p, t in zip(nets[online][k], nets[target][k], strict=True):
                        t.lerp_(p, cfg.tau)

    for name, reference in nets.items():
        for k in range(n):
            for p, r in zip(per_agent(getattr(learner, name), k), reference[k], strict=True):
                torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def test_the_analytic_flop_count_is_the_matmul_work_of_one_update():
    """bench.update_flops, behind the GFLOP/s `make bench` reports, against the FLOPs PyTorch counts in
    the matmuls of a real update (forward and backward): every agent learning, and a random prey. The
    critics' one-column output layer runs as elementwise dot products, which the counter leaves out:
    per transition and learner, its forward in the target critic, the critic and the actor loss, the
    critic's weight and input gradients, and the actor loss's input gradient."""
    obs_dims, batch = (16, 16, 16, 14), 32  # simple_tag's observation widths
    for learner in (toy_learner(obs_dims=obs_dims), toy_learner(n_learners=3, obs_dims=obs_dims, prey="random")):
        with FlopCounterMode(display=False) as counter:
            learner.update(random_batch(batch, obs_dims))
        dots = 2 * learner.n_learners * batch * 6 * learner.cfg.hidden[-1]
        expected = update_flops(list(obs_dims), 5, learner.n_learners, learner.cfg.hidden, batch)
        assert counter.get_total_flops() == expected - dots


def test_a_process_holds_consecutive_learning_agents():
    """The learner indexes its agents with a slice (a view); every mode places consecutive agents."""
    toy_learner()  # all four
    with pytest.raises(ValueError, match="consecutive"):
        Maddpg([6, 6, 6, 5], 5, 4, toy_learner().cfg, None, torch.Generator(), torch.Generator(), agents=[0, 2])
