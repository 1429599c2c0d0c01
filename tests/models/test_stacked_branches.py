"""CenterHead's train-mode stacked branches against the branches one by one: outputs, gradients,
BatchNorm running statistics and state dict."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pointformer.models.heads import CenterHead
from pointformer.models.heads import stacked_branches as stacked_module
from pointformer.models.heads.stacked_branches import stackable
from pointformer.structures import VoxelGrid

CLASSES = ["Vehicle", "Pedestrian", "Cyclist"]
GRID = VoxelGrid((-8, -8, -2, 8, 8, 4), (0.5, 0.5, 6))  # a 32 x 32 map


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def head_pair(**kwargs) -> tuple[CenterHead, CenterHead]:
    """A train-mode head (stacked) and an exact copy that runs its branches one by one."""
    torch.manual_seed(0)
    options = dict(in_channels=8, tasks=[CLASSES], grid=GRID, post_center_range=None, head_channels=16)
    options.update(kwargs)
    stacked = CenterHead(**options).train()
    # Non-trivial norms and running statistics, different per branch.
    with torch.no_grad():
        for m in stacked.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    plain = copy.deepcopy(stacked)
    plain.stack_branches = False
    return stacked, plain


def outputs_and_grads(head: CenterHead, x: torch.Tensor, seed: int):
    """The maps of ``head(x)``, and the gradients of a random (seeded) linear function of them."""
    x = x.clone().requires_grad_(True)
    maps = [m for task in head(x).tasks for m in vars(task).values() if m is not None]
    generator = torch.Generator().manual_seed(seed)
    sum((m * torch.randn(m.shape, generator=generator)).sum() for m in maps).backward()
    grads = {name: p.grad.clone() for name, p in head.named_parameters()}
    head.zero_grad(set_to_none=True)
    return maps, x.grad, grads


CASES = {
    "demo-like": dict(),
    "two tasks, bias before norm": dict(tasks=[["Vehicle"], ["Pedestrian", "Cyclist"]], bias_before_norm=True),
    "three convs per branch": dict(num_head_convs=3, with_velocity=False),
    "one conv per branch": dict(num_head_convs=1),
}


@pytest.mark.parametrize("case", CASES)
def test_stacked_equals_branches_one_by_one(case):
    stacked, plain = head_pair(**CASES[case])
    assert stackable(stacked.task_heads) is not None
    assert list(stacked.state_dict()) == list(plain.state_dict())
    generator = torch.Generator().manual_seed(1)
    for step in range(2):
        x = torch.randn(2, 8, 32, 32, generator=generator)
        got, got_x, got_grads = outputs_and_grads(stacked, x, step)
        want, want_x, want_grads = outputs_and_grads(plain, x, step)
        for g, w in zip(got, want, strict=True):
            assert g.is_contiguous()
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_x, want_x, rtol=1e-4, atol=1e-5)
        assert got_grads.keys() == want_grads.keys()
        # atol from the largest gradient: a conv bias before a norm has a zero gradient up to rounding.
        atol = 1e-6 * max(float(g.abs().max()) for g in want_grads.values())
        for name in want_grads:
            torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize("case", CASES)
def test_running_statistics_update_as_batchnorm(case):
    stacked, plain = head_pair(**CASES[case])
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        x = torch.randn(2, 8, 32, 32, generator=generator)
        stacked(x)
        plain(x)
    got, want = stacked.state_dict(), plain.state_dict()
    assert list(got) == list(want)
    counters = [name for name in want if name.endswith("num_batches_tracked")]
    assert counters and all(int(want[name]) == 3 for name in counters)
    for name in want:
        if name.endswith("num_batches_tracked"):
            assert torch.equal(got[name], want[name]), name
        else:
            torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-7, msg=name)


def test_zero_blocks_take_no_gradient():
    """The last layer's block-diagonal weight: a branch's output depends on its own channels only,
    so an upstream gradient on one branch leaves every other branch's parameters without gradient."""
    stacked, _ = head_pair()
    maps = stacked(torch.randn(1, 8, 32, 32)).tasks[0]
    maps.height.sum().backward()
    for name, p in stacked.task_heads[0].heads.named_parameters():
        if name.startswith("height."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None or p.grad.abs().sum() == 0, name


def test_eval_and_unstackable_heads_run_branch_by_branch(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "pointformer.models.heads.center_head.stacked_branches",
        lambda *args: calls.append(1) or stacked_module.stacked_branches(*args),
    )
    stacked, _ = head_pair()
    x = torch.randn(1, 8, 32, 32)
    stacked(x)
    assert calls == [1]
    stacked.eval()(x)  # eval: the modules' own forward (running statistics)
    assert calls == [1]
    stacked.train()
    stacked.task_heads[0].heads["center"][0][1].momentum = None  # a cumulative average: not stacked
    assert stackable(stacked.task_heads) is None
    stacked(x)
    assert calls == [1]
    stacked.task_heads[0].heads["center"][0][1].momentum = 0.01
    stacked.task_heads[0].heads["height"][0][1].eval()  # a frozen norm inside a training head
    assert stackable(stacked.task_heads) is None
