"""The teachers' attention maps: the 60 % mask on hand-made attention vectors, the CLS attention
timm's hook gives against the attention's definition, and a report whose arms hold a real
checkpoint (a micro training of seconds), none, a torn one, or one whose images are not here."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from core.collapse import CollapseRule
from core.model import build_backbone
from core.train import train
from reports import attention, build, page
from reports.load import load_study
from reports.plots.attention import attention_figure
from tests.helpers import micro_config
from tests.reports.by_hand import TAU_AXIS, baselines_by_hand, write_results  # noqa: F401 (an autouse fixture)


@pytest.mark.parametrize("weights, kept", [
    ([0.05, 0.5, 0.1, 0.3, 0.05], [False, True, False, True, False]),  # 0.5 falls short, 0.5 + 0.3 = 0.8
    ([0.6, 0.4], [True, False]),  # exactly 60 % with one patch
    ([0.2] * 5, [True, True, True, False, False]),  # three of five equal ones: 0.6; ties go to the first
    ([2.0, 0.0, 6.0, 2.0], [False, False, True, False]),  # not normalised: 6 of 10 is 60 %
    ([0.25] * 4, [True, True, True, False]),  # two hold 50 %, three 75 %
])
def test_the_mask_keeps_the_fewest_patches_holding_60_percent(weights, kept):
    assert attention.mass_mask(torch.tensor(weights)).tolist() == kept


def test_the_mask_is_per_head_and_image():
    maps = torch.tensor([[[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]], [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]])
    assert attention.mass_mask(maps).tolist() == [[[False, True, False], [True, False, True]],
                                                  [[True, False, False], [False, True, True]]]


@pytest.fixture(scope="module")
def backbone():
    config = micro_config(**{"backbone.num_heads": 2, "backbone.depth": 2})
    torch.manual_seed(0)
    return build_backbone(config.backbone, 1, 0.0).eval()


def test_cls_attention_is_the_last_blocks_softmax_of_q_k(backbone):
    """softmax(q k^T / sqrt(d)) of the last block, from its own qkv on its input, CLS row."""
    images = torch.randn(3, 1, 32, 32)
    block = backbone.blocks[-1]
    seen = {}
    handle = block.norm1.register_forward_hook(lambda module, args, out: seen.update(x=out))
    with torch.no_grad():
        features = backbone(images)
        maps = attention.cls_attention(backbone, images)
        handle.remove()
        q, k, _ = block.attn.qkv(seen["x"]).reshape(3, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
        expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(16), dim=-1)[:, :, 0, 1:]
        assert torch.allclose(backbone(images), features, atol=1e-5)  # the unfused path computes the same network
    assert maps.shape == (3, 2, 4, 4)  # 32 px / patch 8: a 4 x 4 grid of patches
    assert torch.allclose(maps.flatten(2), expected, atol=1e-6)


def test_a_teacher_that_attends_nowhere_in_particular(backbone):
    """With q = k = 0 every token gets 1 / 17 of each head's attention; the 60 % of the 16
    patches' 16 / 17 take ceil(0.6 x 16) = 10 of them."""
    with torch.no_grad():
        backbone.blocks[-1].attn.qkv.weight.zero_()
        backbone.blocks[-1].attn.qkv.bias.zero_()
    maps = attention.cls_attention(backbone, torch.randn(2, 1, 32, 32))
    assert torch.allclose(maps, torch.full((2, 2, 4, 4), 1 / 17))
    assert attention.mass_mask(maps.flatten(2)).sum(-1).tolist() == [[10, 10], [10, 10]]


# -- in a report ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real teacher: one epoch of the micro training."""
    folder = tmp_path_factory.mktemp("trained")
    train(micro_config(**{"epochs": 1, "eval.linear_probe": False, "eval.max_memory": 200, "eval.max_queries": 100}),
          folder, progress=False)
    return folder / "checkpoint.pth"


@pytest.fixture(scope="module")
def arms(tmp_path_factory, checkpoint) -> Path:
    """tau 0.04: seed 0 has the checkpoint. 0.05: seed 0's folder is gone, seed 1 has it. 0.07:
    seed 0's is torn, seed 1's names Fashion-MNIST where this machine has none."""
    attempts = [{"labels": {"tau": t}, "seed": s, "state": "done", "top1": 60.0, "top5": 90.0}
                for t in TAU_AXIS["labels"] for s in (0, 1)]
    results = write_results(tmp_path_factory.mktemp("attention") / "attn", "attn", [TAU_AXIS], [0, 1], attempts)

    def folder(tau: str, seed: int) -> Path:
        path = results / "runs" / f"tau={tau} seed={seed}"
        path.mkdir(parents=True)
        return path

    for tau, seed in (("0.04", 0), ("0.05", 1)):
        (folder(tau, seed) / "checkpoint.pth").write_bytes(checkpoint.read_bytes())
    (folder("0.07", 0) / "checkpoint.pth").write_bytes(checkpoint.read_bytes()[:5000])
    state = torch.load(checkpoint, weights_only=True)
    config = json.loads(state["config"])
    state["config"] = json.dumps({**config, "data": {**config["data"], "path": str(results / "no-data")}})
    torch.save(state, folder("0.07", 1) / "checkpoint.pth")
    return results


def test_each_arm_shows_its_first_seed_with_a_checkpoint(arms):
    found = attention.arm_maps(load_study(arms))
    assert [(a.setting, a.seed, a.epoch) for a in found.arms] == [("0.04", 0, 1), ("0.05", 1, 1)]
    first, second = found.arms
    assert first.images.shape == (4, 1, 32, 32) and (first.images == second.images).all()  # the same images
    assert 0 <= first.images.min() and first.images.max() <= 1
    assert first.attention.shape == first.masks.shape == (4, 2, 4, 4)
    assert (first.attention == second.attention).all()  # the same teacher
    gone, broken = found.notes
    assert gone == f"0.05: shown with seed 1 (seed 0: no checkpoint.pth in {arms / 'runs' / 'tau=0.05 seed=0'})."
    torn = arms / "runs" / "tau=0.07 seed=0" / "checkpoint.pth"
    assert broken.startswith(f"0.07: no attention maps (seed 0: {torn} is unreadable (")
    assert "; seed 1: Fashion-MNIST not found: " in broken and str(arms / "no-data") in broken


def test_the_figure_has_a_row_per_arm_of_image_mean_and_masks(arms):
    fig = attention_figure(attention.arm_maps(load_study(arms)))
    FigureCanvasAgg(fig).draw()
    assert len(fig.axes) == 2 * 4 * 3
    assert [ax.get_title() for ax in fig.axes[:4]] == ["1: image", "1: mean attention", "1: 60% masks", "2: image"]
    assert [fig.axes[i].get_ylabel() for i in (0, 12)] == ["0.04\nseed 0, epoch 1", "0.05\nseed 1, epoch 1"]
    assert len(fig.axes[2].get_images()) == 1 + 2  # the image under one mask per head
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["head 1", "head 2"]


def test_the_report_shows_the_maps_and_says_what_is_missing(arms):
    html = build.build_report("attn", arms)
    text = html.with_name("report.md").read_text()
    assert "![The teachers' attention maps](plots/attention.png)" in text
    assert "Attention maps: 0.05: shown with seed 1" in text and "0.07: no attention maps" in text
    plotted = html.with_name("plots")
    assert plotted.joinpath("attention.png").stat().st_size > 1000 and not plotted.joinpath("attention.svg").exists()
    assert html.read_text().count('<img src="data:image/png;base64,') == 4
    results = load_study(arms)
    published = build.write_report(page.contents(results), CollapseRule(), folder=arms.parent / "published",
                                   portable=True).read_text()
    assert r"seed 0: no checkpoint.pth in \<results>/runs/tau=0.05 seed=0" in published  # Markdown escapes the <
    assert str(arms) not in published


def test_no_checkpoint_anywhere_leaves_the_figure_out(tmp_path):
    results = write_results(tmp_path / "none", "none", [TAU_AXIS], [0], [
        {"labels": {"tau": t}, "seed": 0, "state": "done", "top1": 60.0, "top5": 90.0} for t in ("0.04", "0.05")]
        + [{"labels": {"tau": "0.07"}, "seed": 0, "state": "failed"}])
    html = build.build_report("none", results)
    assert not html.with_name("plots").joinpath("attention.png").exists()
    text = html.with_name("report.md").read_text()
    assert "0.07: no attention maps (no finished run)." in text
    assert f"0.04: no attention maps (seed 0: no checkpoint.pth in {results / 'runs' / 'tau=0.04 seed=0'})." in text
