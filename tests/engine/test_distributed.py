"""Two CPU processes (gloo, torchrun's environment variables) train like one process with the global batch."""

from __future__ import annotations

import socket

import torch
import torch.multiprocessing as mp
from engine_toy import ToyModel, distributed_worker, train_toy

from pointformer.engine import list_checkpoints, load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    world = 2
    dist_dir, out_dir = tmp_path / "dist", tmp_path / "out"
    out_dir.mkdir()
    mp.spawn(distributed_worker, args=(world, _free_port(), str(dist_dir), str(out_dir)), nprocs=world, join=True)
    ranks = [torch.load(out_dir / f"rank{r}.pth", weights_only=True) for r in range(world)]

    torch.set_num_threads(1)
    single = train_toy(tmp_path / "single", batch_size=2, batchnorm=False)  # 1 process x batch 2 == 2 ranks x batch 1
    expected = single.module.state_dict()
    assert single.iteration == 8  # 2 epochs x 4 steps of 2 samples

    for name, value in expected.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between ranks"
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6, msg=f"{name} vs single process")
    torch.manual_seed(0)
    initial = ToyModel(batchnorm=False).state_dict()
    moved = max(float((expected[n] - initial[n]).abs().max()) for n in expected)
    assert moved > 1e-2  # training moved the parameters: the comparison is not vacuous

    # Rank 0 alone wrote the checkpoints; they hold both ranks' random states.
    assert [e for e, _ in list_checkpoints(dist_dir)] == [1, 2]
    state = load_checkpoint(dist_dir / "epoch_002.pth")
    assert state["iteration"] == 8 and len(state["rng"]) == world
    assert (dist_dir / "scalars.jsonl").exists()
