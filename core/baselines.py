"""The two numbers a learned representation must beat, measured exactly like a trained teacher:
k-NN on a randomly initialised network of the same shape, and k-NN on raw standardised pixels.

``python -m core.baselines --profile tiny`` prints both (on Fashion-MNIST: raw pixels 86.2 %,
random 4-layer ViT about 64 %, measured on this project's reference machine).
"""
from __future__ import annotations

import json
import sys

import torch
from torch import nn

from core import cli, preflight
from core.config import ConfigError, DINOConfig
from core.data import DataNotFoundError, build_data
from core.distributed import init_distributed
from core.evaluate import knn_evaluate
from core.model import build_backbone
from core.precision import autocast, prepare
from core.profiles import profile_config


def baselines(config: DINOConfig) -> dict[str, dict[str, float]]:
    """k-NN top-1/top-5 of a random-init backbone (seeded like a run) and of raw pixels."""
    env = init_distributed()
    data = build_data(config.data)
    torch.manual_seed(config.seed)
    backbone = prepare(build_backbone(config.backbone, data.channels, 0.0).to(env.device),
                       config.precision, env.device)
    features_under = autocast(config.precision, env.device)  # as a trained run extracts them
    return {"random_init": knn_evaluate(backbone, data, config, env, features_under),
            "raw_pixels": knn_evaluate(nn.Flatten(), data, config, env)}


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m core.baselines", description=__doc__.split("\n\n")[0])
    cli.add_profile(parser)
    cli.add_data(parser)
    parser.add_argument("--seed", type=int, default=0)
    cli.add_set(parser, "override a config value, e.g. --set backbone.patch_size=16")
    try:
        args = parser.parse_args(argv)
        overrides = {**cli.data_overrides(args.data), **cli.assignments(args.set), "seed": args.seed}
        config = profile_config(args.profile, overrides)
        preflight.check_data(config.data)  # before the network is built
        preflight.require_labels(config.data, "a baseline (a k-NN accuracy)")
        result = baselines(config)
    except (ConfigError, DataNotFoundError) as error:
        return cli.refuse(str(error))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
