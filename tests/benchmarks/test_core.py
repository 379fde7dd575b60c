"""The trainer pieces the benchmark relies on and the speed changes it measured: the step's timer
hook, the reference's attention precision (fp32 softmax) and the patch embedding as a matmul under
autocast on CPU, multi-tensor gradient clipping."""
import contextlib

import torch
from torch import nn

from benchmarks.measure import synthetic_data
from benchmarks.ops import OTHER, kind_of
from core.distributed import DistEnv
from core.cpu_autocast import SoftmaxAttention, fp32_softmax_attention, patch_matmul_embedding
from core.model import build_network
from core.optim import clip_gradients_per_parameter
from core.train import PHASES, Trainer
from tests.helpers import micro_config


def test_step_times_every_phase_in_order():
    config = micro_config(precision="fp32")
    run = Trainer(config, synthetic_data(config, 2 * config.batch_size), DistEnv(0, 1, 0, torch.device("cpu")))
    seen = []

    @contextlib.contextmanager
    def timer(phase):
        seen.append(phase)
        yield

    images = next(iter(run.loader))[0]
    stats = run.step(images, 0, 0, timer)
    assert seen == list(PHASES)
    assert stats._fields == ("loss", "target_entropy", "kl", "student_entropy")
    assert all(torch.isfinite(v) and v.dim() == 0 for v in stats)


def test_fp32_softmax_attention_leaves_fp32_alone_and_is_as_close_under_autocast():
    config = micro_config(**{"backbone.depth": 2})
    torch.manual_seed(0)
    net = build_network(config.backbone, config.head, 1, 0.0).eval()
    views = [torch.randn(8, 1, 32, 32), torch.randn(8, 1, 32, 32), torch.randn(16, 1, 16, 16)]
    with torch.no_grad():
        reference = net(views)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            timm_bf16 = net(views).float()
        assert fp32_softmax_attention(net) == 2
        assert torch.equal(net(views), reference)  # outside autocast: timm's own forward
        with torch.autocast("cpu", dtype=torch.bfloat16):
            block = net.backbone.blocks[0].attn
            x = torch.randn(4, 17, block.qkv.in_features)
            q, k, v = block.qkv(x).reshape(4, 17, 3, block.num_heads, block.head_dim).permute(2, 0, 3, 1, 4)
            # the attention by its definition: softmax(q k^T / sqrt(d)) v, the softmax on fp32 scores
            weights = torch.softmax((q @ k.transpose(-2, -1)).float() / block.head_dim ** 0.5, dim=-1)
            by_hand = block.proj((weights.to(v.dtype) @ v).transpose(1, 2).reshape(4, 17, -1))
            assert torch.allclose(block(x).float(), by_hand.float(), atol=2e-2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours_bf16 = net(views).float()
        assert fp32_softmax_attention(net, enabled=False) == 2
        assert torch.equal(net(views), reference)
    assert (ours_bf16 - reference).abs().max() < 0.05
    assert (ours_bf16 - reference).abs().mean() <= 1.5 * (timm_bf16 - reference).abs().mean()


def _attention_by_definition(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v per head, the softmax over the keys, from [B, T, 3, H, D]."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    weights = torch.softmax((q @ k.transpose(-2, -1)).float() * scale, dim=-1).to(v.dtype)
    return (weights @ v).transpose(1, 2).flatten(2)


def test_softmax_attention_backward_is_the_derivative_numerically_and_by_the_definition():
    torch.manual_seed(0)
    qkv = torch.randn(2, 5, 3, 2, 4, dtype=torch.float64, requires_grad=True)
    # fp64: the hand-written backward against finite differences of the forward
    assert torch.autograd.gradcheck(lambda t: SoftmaxAttention.apply(t, 0.37), (qkv,))
    assert torch.allclose(SoftmaxAttention.apply(qkv, 0.37), _attention_by_definition(qkv, 0.37), atol=1e-12)
    for tokens in (17, 5):  # bf16, the profile's two sequence lengths: against autograd of the definition
        qkv = torch.randn(8, tokens, 3, 4, 32).bfloat16().requires_grad_()
        up = torch.randn(8, tokens, 128)
        (SoftmaxAttention.apply(qkv, 32 ** -0.5).float() * up).sum().backward()
        ours, qkv.grad = qkv.grad, None
        (_attention_by_definition(qkv, 32 ** -0.5).float() * up).sum().backward()
        assert ours.dtype == torch.bfloat16
        assert (ours.float() - qkv.grad.float()).abs().max() <= 0.03 * qkv.grad.float().abs().max()


def test_fp32_softmax_attention_normalises_q_and_k_and_falls_back_for_attention_dropout():
    from timm.models.vision_transformer import Attention
    torch.manual_seed(0)
    block = Attention(64, num_heads=2, qkv_bias=True, qk_norm=True, attn_drop=0.5, norm_layer=nn.LayerNorm)
    nn.init.normal_(block.q_norm.weight, 1.0, 0.5)
    x = torch.randn(3, 9, 64)
    assert fp32_softmax_attention(block) == 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        block.eval()  # no dropout: ours, with the per-head norms of q and k
        qkv = block.qkv(x).reshape(3, 9, 3, 2, 32)
        q, k, v = qkv.unbind(2)
        by_hand = torch.stack((block.q_norm(q).to(v.dtype), block.k_norm(k).to(v.dtype), v), dim=2)
        by_hand = block.proj(_attention_by_definition(by_hand, 32 ** -0.5))
        assert torch.allclose(block(x).float(), by_hand.float(), atol=2e-2)
        block.train()  # attention dropout in training: timm's own forward, which drops weights
        torch.manual_seed(1)
        dropped = block(x)
        torch.manual_seed(1)
        assert torch.equal(dropped, type(block).forward(block, x))


def test_patch_matmul_embedding_is_the_convolution_by_its_definition_forward_and_backward():
    torch.manual_seed(0)
    config = micro_config(**{"backbone.depth": 1})
    net = build_network(config.backbone, config.head, 2, 0.0)
    conv = net.backbone.patch_embed.proj
    p = conv.kernel_size[0]
    x = torch.randn(3, 2, 4 * p, 2 * p)
    with torch.no_grad():  # out[b, d, i, j] = sum over c, u, v of w[d, c, u, v] x[b, c, i p + u, j p + v] + bias[d]
        by_hand = torch.empty(3, conv.out_channels, 4, 2)
        for i in range(4):
            for j in range(2):
                patch = x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p]
                by_hand[:, :, i, j] = torch.einsum("bcuv,dcuv->bd", patch, conv.weight) + conv.bias
    reference = conv(x)
    reference.square().sum().backward()
    conv_grad, conv.weight.grad = conv.weight.grad.clone(), None
    assert patch_matmul_embedding(net) == 1  # the patch embedding, the network's only convolution
    assert torch.equal(conv(x), reference)  # outside autocast: torch's own convolution
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = conv(x)
    assert ours.shape == by_hand.shape and ours.dtype == torch.bfloat16
    assert torch.allclose(ours.float(), by_hand, atol=3e-2, rtol=2e-2)
    ours.float().square().sum().backward()
    assert torch.allclose(conv.weight.grad, conv_grad, rtol=3e-2, atol=3e-2 * conv_grad.abs().max().item())
    assert patch_matmul_embedding(net, enabled=False) == 1
    assert "forward" not in conv.__dict__


def test_trainer_changes_attention_and_patch_embedding_only_under_cpu_autocast():
    data = synthetic_data(micro_config(), 128)
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    fast = Trainer(micro_config(precision="bf16"), data, env)
    plain = Trainer(micro_config(precision="fp32"), data, env)
    for net in (fast.student_module, fast.teacher):
        assert "forward" in net.backbone.blocks[0].attn.__dict__
        assert "forward" in net.backbone.patch_embed.proj.__dict__
    assert "forward" not in plain.student_module.backbone.blocks[0].attn.__dict__
    assert "forward" not in plain.student_module.backbone.patch_embed.proj.__dict__


def test_each_operator_of_a_step_is_counted_under_the_kind_of_work_it_does():
    kinds = {"aten::mm": "matmul", "aten::addmm": "matmul", "aten::bmm": "matmul",
             "aten::_scaled_dot_product_flash_attention_for_cpu_backward": "attention",
             "aten::_softmax": "attention", "aten::_softmax_backward_data": "attention",
             "aten::_log_softmax": "loss (log-softmax)", "aten::_to_copy": "casts and copies", "aten::copy_": "casts and copies",
             "aten::native_layer_norm_backward": "layer norm", "aten::gelu_backward": "activation",
             "aten::_fused_adamw_": "optimizer and clipping", "aten::mkldnn_convolution":
             "convolutions (patch embedding, blur)", "aten::grid_sampler_2d": "crops (grid sampling)",
             "aten::add_": OTHER, "aten::add": OTHER, "aten::sum": OTHER}
    assert {op: kind_of(op) for op in kinds} == kinds


def test_multi_tensor_clipping_equals_the_per_parameter_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 3))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * torch.rand(()) * 6
    expected = []
    for p in model.parameters():
        g = p.grad.clone()
        expected.append(g.mul_(torch.clamp(3.0 / (g.norm(2) + 1e-6), max=1.0)))
    clip_gradients_per_parameter(model, 3.0)
    for p, g in zip(model.parameters(), expected):
        assert torch.equal(p.grad, g)
        assert p.grad.norm() <= 3.0 + 1e-4
