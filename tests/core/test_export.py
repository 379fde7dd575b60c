"""An exported teacher reloads with plain timm and gives the run's own features."""
import json

import safetensors.torch
import timm
import torch

from core.augment import eval_views
from core.checkpoint import load_checkpoint
from core.data import build_data
from core.export import SPEC, WEIGHTS, main
from core.model import build_network
from core.train import CHECKPOINT, train
from tests.helpers import micro_config


def test_exported_teacher_reloads_in_timm_with_the_same_features(tmp_path, capsys):
    config = micro_config(epochs=1, precision="fp32")
    train(config, tmp_path / "run", progress=False)
    assert main([str(tmp_path / "run")]) == 0
    spec = json.loads((tmp_path / "run" / "export" / SPEC).read_text())
    model = timm.create_model(spec["model"], **spec["kwargs"])
    model.load_state_dict(safetensors.torch.load_file(tmp_path / "run" / "export" / WEIGHTS))

    teacher = build_network(config.backbone, config.head, 1, 0.0)
    teacher.load_state_dict(load_checkpoint(tmp_path / "run" / CHECKPOINT)["teacher"])
    data = build_data(config.data)
    raw = torch.stack([data.queries[i][0] for i in range(16)])
    images = eval_views(raw, config.crops.global_size, config.data.eval_crop, data.mean, data.std)  # the k-NN's input
    model.eval(), teacher.eval()
    with torch.no_grad():
        assert torch.equal(model(images), teacher.backbone(images))
    assert spec["epochs_trained"] == 1


def test_export_of_a_folder_without_checkpoint_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint.pth" in err
