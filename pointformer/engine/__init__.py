"""Training engine: the trainer loop, optimizers and the one-cycle schedule, checkpoints, distributed helpers.

The engine knows nothing about detectors: it trains any model with ``model(batch) -> dict of losses`` in
train mode over batches with ``.to(device)`` and ``.batch_size`` (see ``pointformer.engine.trainer``).
"""

from pointformer.engine.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_weights,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pointformer.engine.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    unwrap_model,
    wrap_model,
)
from pointformer.engine.loader import build_train_loader
from pointformer.engine.log import ScalarLog, get_logger, setup_logging
from pointformer.engine.optim import OneCycleSchedule, build_optimizer, parameter_groups
from pointformer.engine.trainer import Trainer, resolve_amp, seed_everything

__all__ = [
    "CheckpointError",
    "DistInfo",
    "OneCycleSchedule",
    "ScalarLog",
    "Trainer",
    "barrier",
    "build_optimizer",
    "build_train_loader",
    "checkpoint_path",
    "cleanup_distributed",
    "get_logger",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_weights",
    "parameter_groups",
    "prune_checkpoints",
    "resolve_amp",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "setup_logging",
    "unwrap_model",
    "wrap_model",
]
