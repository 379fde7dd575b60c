"""Export a run's teacher backbone for use outside this project.

``python -m core.export RUN_DIR`` writes ``RUN_DIR/export/teacher_backbone.safetensors`` (the
weights, no pickled code) and ``teacher_backbone.json`` (the ``timm.create_model`` name and
keyword arguments that rebuild the same network), so that anyone with timm can do::

    spec = json.load(open("teacher_backbone.json"))
    model = timm.create_model(spec["model"], **spec["kwargs"])
    model.load_state_dict(safetensors.torch.load_file("teacher_backbone.safetensors"))

and get the CLS features the run's k-NN scored. The teacher is exported because it is what the
paper evaluates; the projection head is left out, as it serves pre-training only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from core import cli
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import DINOConfig
from core.typed import ConfigError

WEIGHTS, SPEC = "teacher_backbone.safetensors", "teacher_backbone.json"


def timm_spec(config: DINOConfig, in_chans: int) -> dict[str, Any]:
    """The ``timm.create_model`` call that builds the run's backbone (see ``core.model``)."""
    b = config.backbone
    return {"model": b.name, "kwargs": {
        "pretrained": False, "num_classes": 0, "in_chans": in_chans, "img_size": b.img_size,
        "patch_size": b.patch_size, "embed_dim": b.embed_dim, "depth": b.depth, "num_heads": b.num_heads,
        "dynamic_img_size": True}}


def teacher_weights(state: dict[str, Any]) -> tuple[DINOConfig, dict[str, Any], dict[str, Any]]:
    """The run's config, its teacher backbone's weights under timm's names, and the
    ``timm.create_model`` call that takes them, from a checkpoint's contents."""
    config = DINOConfig.from_dict(json.loads(state["config"]))
    prefix = "backbone."
    weights = {k[len(prefix):]: v.contiguous() for k, v in state["teacher"].items() if k.startswith(prefix)}
    return config, weights, timm_spec(config, weights["patch_embed.proj.weight"].shape[1])


def export_teacher(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the teacher backbone of the checkpoint in ``run_dir``; returns the folder written."""
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir / "checkpoint.pth")
    if state is None:
        raise ConfigError(f"{run_dir} holds no checkpoint.pth: give the folder of a run that has "
                          "trained at least one epoch")
    _, weights, spec = teacher_weights(state)
    out = Path(out_dir) if out_dir else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / WEIGHTS), metadata={"epochs_trained": str(state["epoch"])})
    spec = {**spec, "epochs_trained": int(state["epoch"]),
            "normalisation": "the k-NN's: images in [0, 1], minus the data set's mean, over its std",
            "feature": "the CLS token after the final norm (forward returns it with num_classes=0)"}
    (out / SPEC).write_text(json.dumps(spec, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m core.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder (holding checkpoint.pth)")
    parser.add_argument("--out", default=None, help="folder to write (default: RUN_DIR/export)")
    try:
        args = parser.parse_args(argv)
        if args.out is not None and (problem := cli.folder_problem(args.out, "--out")):
            return cli.refuse(problem)
        out = export_teacher(args.run_dir, args.out)
    except (ConfigError, CheckpointError) as error:  # cli.UsageError is a ConfigError
        return cli.refuse(str(error))
    print(f"teacher backbone -> {out / WEIGHTS} (+ {SPEC}: the timm.create_model call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
