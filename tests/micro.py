"""A real but very small DINO config, for tests that need whole trainings in seconds."""
from core.profiles import profile_config

MICRO = {
    "backbone.embed_dim": 32, "backbone.depth": 1, "backbone.num_heads": 2, "backbone.patch_size": 8,
    "head.hidden_dim": 64, "head.bottleneck_dim": 32, "head.out_dim": 64,
    "crops.n_local": 2,
    "data.train_subset": 256, "batch_size": 64, "epochs": 3,
    "optim.warmup_epochs": 1, "loss.teacher_temp_warmup_epochs": 2, "log_every": 1,
    "eval.max_memory": 2000, "eval.max_queries": 500,
}


def micro_config(**overrides):
    """``micro_config(**{"teacher.update": "previous_epoch"})`` -> DINOConfig."""
    return profile_config("tiny", {**MICRO, **overrides})
