"""Latent fusion Transformer: shapes, what each part sees, errors, save/load."""

from __future__ import annotations

import pytest
import torch

from brainmill.models import load_model, save_model
from brainmill.models.latent_fusion import LatentFusionConfig, LatentFusionTransformer


def lft(**kw) -> LatentFusionTransformer:
    torch.manual_seed(0)
    fields = dict(n_classes=3, n_layers=4, feature_dim=6, dim=16, n_heads=2, n_fusion_tokens=3,
                  depth=1, dropout=0.0)
    return LatentFusionTransformer(LatentFusionConfig(**{**fields, **kw})).eval()


def test_logits_shape_for_any_montage_and_pool_count():
    model = lft()
    for channels, pools in [(1, 1), (5, 3), (22, 7)]:
        assert model(torch.rand(2, channels, 4, 6, pools)).shape == (2, 3)


def test_every_backbone_layer_reaches_the_output():
    model = lft()
    x = torch.rand(2, 5, 4, 6, 3)
    base = model(x)
    for layer in range(4):
        changed = x.clone()
        changed[:, :, layer] += 1.0 + torch.rand_like(changed[:, :, layer])
        assert not torch.allclose(model(changed), base), f"layer {layer} is ignored"


def test_epochs_do_not_mix_and_pools_are_fused_separately():
    model = lft()
    x = torch.rand(3, 4, 4, 6, 2)
    alone = model(x[1:2])
    torch.testing.assert_close(model(x)[1:2], alone, atol=1e-6, rtol=1e-5)
    fused = model.fused(x)
    assert fused.shape == (3, 2, 3, 16)
    # the fusion module is shared across pools: pool 1 alone gives the same fused tokens
    torch.testing.assert_close(model.fused(x[:, ..., 1:2])[:, 0], fused[:, 1], atol=1e-6,
                               rtol=1e-5)


def test_bad_inputs_are_clear_errors():
    model = lft(max_channels=4)
    with pytest.raises(ValueError, match="4 layers, 6 features"):
        model(torch.rand(2, 3, 5, 6, 2))
    with pytest.raises(ValueError, match="max_channels=4"):
        model(torch.rand(2, 5, 4, 6, 2))
    with pytest.raises(ValueError, match="LatentFusionConfig.n_heads"):
        LatentFusionConfig(n_classes=2, n_layers=1, feature_dim=4, dim=10, n_heads=4)


def test_save_and_load_round_trip(tmp_path):
    model = lft()
    loaded = load_model(save_model(tmp_path / "lft.pt", model))
    x = torch.rand(2, 3, 4, 6, 2)
    assert torch.equal(loaded(x), model(x))


def test_fused_tokens_equal_an_explicit_loop_over_epochs_and_pools():
    """Written out per epoch and pool: layer l's channel tokens feed fusion block l only."""
    model = lft()
    with torch.no_grad():
        model.layer_bias.normal_()
    x = torch.rand(2, 5, 4, 6, 3)  # 5 channels, 4 layers, 6 features, 3 pools
    want = torch.empty(2, 3, 3, 16)
    for b in range(2):
        for p in range(3):
            q = model.fusion_tokens[None]
            for layer, block in enumerate(model.fusion):
                tokens = model.in_norm(x[b, :, layer, :, p]) @ model.layer_proj[layer]
                tokens = tokens + model.layer_bias[layer] + model.channel_embed.weight[:5]
                q = block(q, context=model.context_norm(tokens)[None])
            want[b, p] = q[0]
    torch.testing.assert_close(model.fused(x), want, atol=1e-5, rtol=1e-5)
