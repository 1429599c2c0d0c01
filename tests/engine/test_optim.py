"""Optimizer parameter groups and the one-cycle schedule (FlatFormer's mmcv cyclic and OpenPCDet's)."""

from __future__ import annotations

import math

import pytest
import torch
from engine_toy import ToyModel
from torch import nn

from pointformer.engine import OneCycleSchedule, build_optimizer, parameter_groups


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 8, bias=False), nn.LayerNorm(8))


def test_parameter_groups_exclude_norms_and_biases():
    net = _net()
    groups = parameter_groups(net, weight_decay=0.05)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight)}
    expected = [net[0].bias, net[1].weight, net[1].bias, net[3].weight, net[3].bias]
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in expected}


def test_parameter_groups_flags_and_frozen_parameters():
    net = _net()
    net[0].weight.requires_grad_(False)
    (only,) = parameter_groups(net, weight_decay=0.1, no_decay_norm=False, no_decay_bias=False)
    assert len(only["params"]) == 6  # 7 parameters, one frozen
    norm_only = parameter_groups(net, weight_decay=0.1, no_decay_norm=True, no_decay_bias=False)
    assert len(norm_only[1]["params"]) == 4  # the BN and LN affine parameters, not the Linear bias


@pytest.mark.parametrize(
    "name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_build_optimizer(name, cls):
    opt = build_optimizer(ToyModel(), name=name, lr=0.01, weight_decay=0.05)
    assert isinstance(opt, cls)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_build_optimizer_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(ToyModel(), name="lamb")


def _mmcv_cyclic_lr(base_lr, target_ratio, step_ratio_up, total, t):
    """mmcv CyclicLrUpdaterHook (cyclic_times=1, cos), written out independently for the comparison."""
    up = int(step_ratio_up * total)
    phases = [(0, up, 1.0, target_ratio[0]), (up, total, target_ratio[0], target_ratio[1])]
    for start, end, r0, r1 in phases:
        if start <= t < end:
            frac = (t - start) / (end - start)
            a, b = base_lr * r0, base_lr * r1
            return b + 0.5 * (a - b) * (math.cos(math.pi * frac) + 1)
    raise AssertionError(t)


def test_flatformer_schedule_matches_mmcv_cyclic():
    total = 1000
    opt = build_optimizer(ToyModel(), lr=123.0)  # the schedule overrides the lr from step 0
    sched = OneCycleSchedule.from_mmcv_cyclic(opt, total, base_lr=1e-5, target_ratio=(100, 1e-3), step_ratio_up=0.1)
    seen = []
    for t in range(total):
        lr = opt.param_groups[0]["lr"]
        assert lr == pytest.approx(_mmcv_cyclic_lr(1e-5, (100, 1e-3), 0.1, total, t), rel=1e-9), t
        assert opt.param_groups[1]["lr"] == lr
        seen.append(lr)
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(1e-5)
    assert max(seen) == pytest.approx(1e-3) and seen.index(max(seen)) == 100
    assert all(a < b for a, b in zip(seen[:100], seen[1:101], strict=True))
    assert all(a > b for a, b in zip(seen[100:-1], seen[101:], strict=True))
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-8)  # after the last step: the end of the cycle


def test_openpcdet_schedule_cycles_lr_and_beta1():
    total = 100
    opt = build_optimizer(ToyModel(), name="adamw", betas=(0.9, 0.99))
    sched = OneCycleSchedule.openpcdet(opt, total, lr=0.003, div_factor=10, pct_start=0.4, moms=(0.95, 0.85))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0003)
    assert opt.param_groups[0]["betas"] == pytest.approx((0.95, 0.99))
    for _ in range(40):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.003)
    assert opt.param_groups[0]["betas"] == pytest.approx((0.85, 0.99))
    for _ in range(30):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.003 / 2 + 0.0003e-4 / 2, rel=1e-6)  # half way down
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.90)
    for _ in range(30):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0003e-4)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.95)


def test_sgd_momentum_cycles():
    opt = build_optimizer(ToyModel(), name="sgd", lr=0.1)
    sched = OneCycleSchedule(opt, 10, pct_start=0.5, momentum_range=(0.95, 0.85))
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.85)
    assert sched.get_last_lr()[0] == pytest.approx(0.1)


def test_schedule_state_dict_round_trip():
    opt = build_optimizer(ToyModel(), lr=1e-3)
    sched = OneCycleSchedule(opt, 50, div_factor=10, pct_start=0.3, momentum_range=(0.95, 0.85))
    for _ in range(17):
        sched.step()
    state = sched.state_dict()
    opt2 = build_optimizer(ToyModel(), lr=1e-3)
    sched2 = OneCycleSchedule(opt2, 50, div_factor=10, pct_start=0.3, momentum_range=(0.95, 0.85))
    sched2.load_state_dict(state)
    for _ in range(20):
        assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr(), rel=1e-12)
        assert opt2.param_groups[0]["betas"] == pytest.approx(opt.param_groups[0]["betas"])
        sched.step()
        sched2.step()


def test_schedule_resumed_into_a_longer_cycle_follows_the_new_one():
    # A 1-epoch run resumed with 2 epochs: the rest of the new cycle, not the old cycle's final lr.
    opt = build_optimizer(ToyModel(), lr=1e-3)
    short = OneCycleSchedule(opt, 10, pct_start=0.1)
    for _ in range(10):
        short.step()
    opt2 = build_optimizer(ToyModel(), lr=1e-3)
    longer = OneCycleSchedule(opt2, 20, pct_start=0.1)
    with pytest.warns(UserWarning, match="total_steps 10 -> 20"):
        longer.load_state_dict(short.state_dict())
    assert longer.last_step == 10
    assert longer.get_last_lr() == pytest.approx(longer.lr_at(10))
    assert longer.get_last_lr()[0] > 1e-4 > short.get_last_lr()[0]


def test_schedule_keeps_group_ratios_and_validates():
    net = _net()
    opt = torch.optim.SGD([{"params": net[0].parameters(), "lr": 1.0}, {"params": net[2].parameters(), "lr": 0.1}])
    sched = OneCycleSchedule(opt, 10, div_factor=10, pct_start=0.0)
    assert sched.get_last_lr() == pytest.approx([1.0, 0.1])  # pct_start 0: starts at the peak
    with pytest.raises(ValueError, match="total_steps"):
        OneCycleSchedule(opt, 0)
    with pytest.raises(ValueError, match="peak lrs"):
        OneCycleSchedule(opt, 10, peak_lr=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="momentum_range"):
        OneCycleSchedule(torch.optim.Adagrad(net.parameters()), 10, momentum_range=(0.95, 0.85))
