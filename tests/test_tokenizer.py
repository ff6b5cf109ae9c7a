"""Behaviour of the TrajTok tokenizer: the contract, the gradient paths, and the two attention forms."""

from __future__ import annotations

import pytest
import torch
from builders import tiny_tokenizer

from trajtok.tokenizer import (
    ConvPyramid,
    EfficientNetLite,
    HFBackbone,
    Segmenter,
    TrajTok,
    create_tokenizer,
    list_presets,
    scale_of,
    tokenizer_sizes,
)
from trajtok.tokenizer.attention import (
    SegmentLayout,
    dense_masked_attention,
    full_attention,
    standardize,
    trajectory_mask,
)
from trajtok.tokenizer.position import AxialRotary, SequenceRotary
from trajtok.tokenizer.segment_attention import segment_attention
from trajtok.tokenizer.segmenter import pool_patches
from trajtok.tokenizer.trajectory_encoder import (
    TrajectoryEncoder,
    pick_attention_form,
    soft_mean,
)
from trajtok.tokens import TrajectoryTokens


def small_tokenizer(**overrides) -> TrajTok:
    """The shared tiny tokenizer at twice its sizes (dim 64, 16 slots, heads of 32, assignment dim 32), seeded 0."""
    return tiny_tokenizer(**{"seed": 0, "dim": 64, "num_slots": 16, "head_dim": 32, "assign_dim": 32, **overrides})


@pytest.mark.parametrize("frames", [1, 8])
def test_output_contract_for_video_and_image(frames):
    model = small_tokenizer()
    out = model(torch.randn(2, frames, 3, 64, 48))
    assert isinstance(out, TrajectoryTokens)
    assert out.tokens.shape == (2, 16, 64) and out.tokens.dtype == torch.float32
    assert out.valid.shape == (2, 16) and out.valid.dtype == torch.bool
    assert out.grid == (frames, 16, 12)
    assert out.logits.shape == (2, frames * 16 * 12, 16)
    assert out.labels.shape == (2, frames, 16, 12) and out.labels.dtype == torch.long
    assert model.out_dim == 64


def test_valid_count_equals_distinct_labels():
    out = small_tokenizer()(torch.randn(3, 4, 3, 64, 64))
    for b in range(3):
        distinct = out.labels[b].unique()
        assert out.num_valid[b] == len(distinct)
        assert out.valid[b, distinct].all()
    assert torch.equal(out.labels.flatten(1), out.logits.argmax(-1))


def _attention_inputs(batch, slots, n, patches, heads=2, head_dim=8, labels=None):
    g = torch.Generator().manual_seed(slots * 31 + n)
    shape_lat, shape_ctx = (batch, slots * n, heads, head_dim), (batch, patches, heads, head_dim)
    tensors = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
               for s in (shape_lat, shape_lat, shape_lat, shape_ctx, shape_ctx)]
    if labels is None:
        labels = torch.randint(slots, (batch, patches), generator=g)
    return tensors, labels


@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "gather"])
@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("case", ["random", "single_patch", "all_patches", "empty_slots"])
def test_segment_attention_matches_dense_oracle(n, case, sparse):
    slots, patches = 6, 40
    labels = torch.randint(slots, (2, patches), generator=torch.Generator().manual_seed(1))
    if case == "single_patch":
        labels = torch.zeros(2, patches, dtype=torch.long)
        labels[:, 7] = 3  # trajectory 3 owns exactly one patch
    elif case == "all_patches":
        labels = torch.full((2, patches), 5)
    elif case == "empty_slots":
        labels = labels % 2  # slots 2..5 own nothing: they see only their own sub-tokens
    tensors, labels = _attention_inputs(2, slots, n, patches, labels=labels)
    layout = SegmentLayout(labels, slots, n, heads=2, sparse=sparse)
    dense = dense_masked_attention(*tensors, labels=labels, num_subtokens=n)
    segment = segment_attention(*tensors, labels=labels, num_subtokens=n, layout=layout)
    assert torch.isfinite(segment).all()
    assert (dense - segment).abs().max() <= 1e-5

    probe = torch.randn(dense.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads_dense = torch.autograd.grad((dense * probe).sum(), tensors)
    grads_segment = torch.autograd.grad((segment * probe).sum(), tensors)
    for gd, gs in zip(grads_dense, grads_segment):
        assert (gd - gs).abs().max() <= 1e-5


@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "gather"])
def test_segment_attention_low_precision_and_large_scores(sparse):
    """bfloat16 inputs (autocast) are attended in float32 and come back in bfloat16; saturated softmax is finite."""
    tensors, labels = _attention_inputs(2, 5, 2, 64, heads=2, head_dim=16)
    layout = SegmentLayout(labels, 5, 2, heads=2, sparse=sparse)
    big = [(30 * t).detach().requires_grad_() for t in tensors]
    dense = dense_masked_attention(*big, labels=labels, num_subtokens=2)
    segment = segment_attention(*big, labels=labels, num_subtokens=2, layout=layout)
    assert (dense - segment).abs().max() <= 1e-5
    low = [t.detach().bfloat16().requires_grad_() for t in tensors]
    out = segment_attention(*low, labels=labels, num_subtokens=2, layout=layout)
    grads = torch.autograd.grad(out.float().sum(), low)
    assert out.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads)
    reference = dense_masked_attention(*tensors, labels=labels, num_subtokens=2)
    assert (out.double() - reference).abs().max() < 0.05


def test_segment_form_under_bf16_autocast():
    """bf16-mixed training: the segment form runs (in float32 inside) and agrees with the dense form."""
    video = torch.randn(2, 2, 3, 32, 32)
    models = {form: small_tokenizer(attention=form) for form in ("segment", "dense")}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = {form: model(video) for form, model in models.items()}
    assert torch.equal(outs["segment"].labels, outs["dense"].labels)
    assert (outs["segment"].tokens.float() - outs["dense"].tokens.float()).abs().max() < 0.05
    outs["segment"].tokens.float().sum().backward()
    grads = [p.grad for p in models["segment"].parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("form", ["segment", "dense"])
def test_runs_on_meta_tensors(form):
    """Shape-only runs (FLOP counting in benchmarks/tokenizer_speed.py) need no data-dependent op."""
    with torch.device("meta"):
        model = small_tokenizer(attention=form)
    out = model(torch.empty(1, 2, 3, 32, 32, device="meta"))
    out.tokens.sum().backward()
    assert out.tokens.shape == (1, 16, 64) and out.tokens.is_meta


def test_segment_layout_must_match():
    labels = torch.randint(4, (2, 10))
    layout = SegmentLayout(labels, 4, 1, heads=2)
    tensors, _ = _attention_inputs(2, 4, 2, 10, heads=2, labels=labels)
    with pytest.raises(ValueError, match="layout"):
        segment_attention(*tensors, labels=labels, num_subtokens=2, layout=layout)


def test_auto_attention_form_follows_the_dense_work():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_attention_form("auto", cpu, 16, 128, 64) == "dense"  # the test tokenizers
    assert pick_attention_form("auto", cpu, 32, 8 * 16 * 16, 128) == "segment"  # tiny preset, 8 frames
    assert pick_attention_form("auto", cpu, 128, 8 * 56 * 56, 512) == "segment"  # base preset, 8 frames
    assert pick_attention_form("auto", cuda, 32, 8 * 16 * 16, 128) == "dense"  # tiny preset, 8 frames
    assert pick_attention_form("auto", cuda, 128, 8 * 56 * 56, 512) == "segment"
    assert pick_attention_form("dense", cpu, 128, 10**6, 512) == "dense"
    assert pick_attention_form("segment", cpu, 1, 1, 1) == "segment"


def test_trajectory_mask_semantics():
    labels = torch.tensor([[0, 1, 1, 2]])
    mask = trajectory_mask(labels, num_slots=3, num_subtokens=2)
    assert mask.shape == (1, 6, 6 + 4)
    # latent 2 (trajectory 1, sub-token 0) sees sub-tokens 2, 3 and patches 1, 2.
    assert mask[0, 2].nonzero().flatten().tolist() == [2, 3, 7, 8]


@pytest.mark.parametrize("rotary", ["axial", "sequence"])
@pytest.mark.parametrize("form", ["segment", "dense"])
def test_tokenizer_forms_agree_end_to_end(form, rotary):
    video = torch.randn(2, 2, 3, 32, 32)
    reference = small_tokenizer(attention="segment", rotary=rotary).eval()(video).tokens
    other = small_tokenizer(attention=form, rotary=rotary).eval()(video).tokens
    assert torch.allclose(reference, other, atol=1e-5)


def test_sequence_rotary_is_relative_and_rotates_queries_and_keys():
    """The released resampler's 1D rotary: latent i at index i, patch p at L + p; a score depends only on the
    offset between the two indices, and the rest of the head dimension is left alone."""
    rotary = SequenceRotary(head_dim=16)
    num_latents, grid = 3, (1, 2, 4)  # 8 patches at indices 3..10
    q = torch.randn(1, num_latents, 1, 16).expand(1, num_latents, 1, 16).clone()
    q[:] = q[:, :1]  # the same query vector at every latent index
    k_lat, k_ctx = torch.randn(1, num_latents, 1, 16), torch.randn(1, 1, 1, 16).repeat(1, 8, 1, 1)
    rq, rk_lat, rk_ctx = rotary.for_grid(grid, num_latents, q.device)(q, k_lat, k_ctx)
    scores = torch.einsum("bihd,bjhd->ij", rq, rk_ctx)  # (latent i, patch p): one vector pair at every index
    offset = torch.arange(8)[None] + num_latents - torch.arange(num_latents)[:, None]
    for value in offset.unique():
        same = scores[offset == value]
        assert torch.allclose(same, same[0].expand_as(same), atol=1e-5)
    assert not torch.allclose(scores[0, 0], scores[0, 1])  # position matters
    assert torch.equal(rq[..., 8:], q[..., 8:]) and torch.equal(rk_ctx[..., 8:], k_ctx[..., 8:])  # half rotated
    assert torch.allclose(rk_lat[:, 0], k_lat[:, 0])  # index 0: no rotation
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1))  # rotations keep norms


def test_axial_rotary_leaves_queries_and_latent_keys_alone():
    rotary = AxialRotary(head_dim=32)
    q, k_lat, k_ctx = torch.randn(1, 4, 2, 32), torch.randn(1, 4, 2, 32), torch.randn(1, 8, 2, 32)
    rq, rk_lat, rk_ctx = rotary.for_grid((2, 2, 2), 4, q.device)(q, k_lat, k_ctx)
    assert torch.equal(rq, q) and torch.equal(rk_lat, k_lat)
    assert torch.allclose(rk_ctx[:, 0], k_ctx[:, 0]) and not torch.allclose(rk_ctx[:, 7], k_ctx[:, 7])
    # Patch 7 of the (2, 2, 2) grid is (t, y, x) = (1, 1, 1): pair i of each axis turns by inv_freq[i].
    theta = torch.cat([rotary.inv_freq] * 3)
    even, odd = k_ctx[0, 7, :, 0:2 * len(theta):2], k_ctx[0, 7, :, 1:2 * len(theta):2]
    torch.testing.assert_close(rk_ctx[0, 7, :, 0:2 * len(theta):2], even * theta.cos() - odd * theta.sin())
    torch.testing.assert_close(rk_ctx[0, 7, :, 1:2 * len(theta):2], even * theta.sin() + odd * theta.cos())
    torch.testing.assert_close(rk_ctx[0, 7, :, 2 * len(theta):], k_ctx[0, 7, :, 2 * len(theta):])


def test_unknown_rotary_is_rejected():
    with pytest.raises(ValueError, match="rotary='1d'"):
        small_tokenizer(rotary="1d")


def _segmenter_grads(model: TrajTok):
    out = model(torch.randn(2, 2, 3, 32, 32))
    (out.tokens * out.valid[..., None]).pow(2).mean().backward()
    return model.segmenter


def test_soft_mean_carries_gradient_into_assignment():
    seg = _segmenter_grads(small_tokenizer(soft_mean_init=True))
    for param in (seg.queries, seg.log_scale, seg.query_head[0].weight, seg.patch_head[0].weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_without_soft_mean_assignment_gets_no_gradient():
    model = small_tokenizer(soft_mean_init=False)
    seg = _segmenter_grads(model)
    for name, param in seg.named_parameters():
        assert param.grad is None or param.grad.abs().sum() == 0, name
    # The pixel encoder still learns through the patch features of the masked attention.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.pixel_encoder.parameters())


@pytest.mark.parametrize("detach", [True, False])
def test_detach_switch(detach):
    torch.manual_seed(0)
    segmenter = Segmenter(dim=32, num_slots=8, heads=2, head_dim=16, assign_dim=16, detach_features=detach)
    patches = torch.randn(1, 2 * 4 * 4, 32, requires_grad=True)
    _, queries = segmenter(patches, (2, 4, 4))
    (grad,) = torch.autograd.grad(queries.pow(2).sum(), patches, allow_unused=True)
    reached = grad is not None and grad.abs().sum() > 0
    assert reached == (not detach)


@pytest.mark.parametrize("attention", ["segment", "dense"])
def test_deterministic_under_seed(attention):
    video = torch.randn(2, 4, 3, 32, 32)
    a, b = (small_tokenizer(subtokens=(1, 2, 4), attention=attention) for _ in range(2))
    torch.manual_seed(5)
    out_a = [a(video).tokens for _ in range(3)]
    torch.manual_seed(5)
    out_b = [b(video).tokens for _ in range(3)]
    for x, y in zip(out_a, out_b):
        assert torch.equal(x, y)


def test_matryoshka_subtokens():
    model = small_tokenizer(subtokens=(1, 2, 4), eval_subtokens=2)
    video = torch.randn(1, 2, 3, 32, 32)
    torch.manual_seed(0)
    drawn = {model(video).tokens_per_trajectory for _ in range(20)}
    assert drawn == {1, 2, 4}
    model.eval()
    out = model(video)
    assert out.tokens_per_trajectory == 2 and out.tokens.shape[1] == 16 * 2
    # Sub-tokens of one trajectory are adjacent and share validity.
    assert torch.equal(out.valid[:, 0::2], out.valid[:, 1::2])
    assert model(video, num_subtokens=4).tokens.shape[1] == 64


def test_no_nan_when_one_trajectory_owns_everything_or_one_patch():
    torch.manual_seed(0)
    encoder = TrajectoryEncoder(dim=32, num_slots=4, max_subtokens=2, heads=2, head_dim=16)
    patches = torch.randn(2, 2 * 3 * 3, 32, requires_grad=True)
    logits = torch.randn(2, 18, 4, requires_grad=True)
    for labels in (torch.zeros(2, 18, dtype=torch.long), torch.tensor([[1] + [0] * 17] * 2)):
        for form in ("segment", "dense"):
            encoder.attention = form
            tokens = encoder(patches, logits, labels, (2, 3, 3), 2)
            tokens.sum().backward()
            assert torch.isfinite(tokens).all()
            assert torch.isfinite(patches.grad).all() and torch.isfinite(logits.grad).all()


def test_chunks_equal_separate_tokenisation():
    model = small_tokenizer(chunk_frames=2).eval()
    video = torch.randn(2, 6, 3, 32, 32)
    out = model(video)
    assert out.tokens.shape == (2, 3 * 16, 64) and out.grid == (6, 8, 8)
    model.chunk_frames = None
    for c in range(3):
        part = model(video[:, 2 * c : 2 * c + 2])
        assert torch.allclose(out.tokens[:, 16 * c : 16 * (c + 1)], part.tokens, atol=1e-5)
        assert torch.equal(out.valid[:, 16 * c : 16 * (c + 1)], part.valid)
        assert torch.equal(out.labels[:, 2 * c : 2 * c + 2], part.labels + 16 * c)
    assert model.max_tokens(6) == 16
    model.chunk_frames = 2
    assert model.max_tokens(6) == 48
    with pytest.raises(ValueError, match="chunk_frames=2"):
        model(torch.randn(1, 5, 3, 32, 32))


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="subtokens"):
        small_tokenizer(subtokens=(3,))
    with pytest.raises(ValueError, match="out_dim"):
        TrajTok(dim=64, pixel_encoder=ConvPyramid(out_dim=32))
    with pytest.raises(ValueError, match="unknown preset 'huge' for tokenizer 'trajtok'"):
        create_tokenizer("huge")
    with pytest.raises(ValueError, match="unknown tokenizer kind 'vit4d'"):
        create_tokenizer("tiny", "vit4d")
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        small_tokenizer()(torch.randn(2, 3, 32, 32))


def test_presets():
    assert {"tiny", "base", "tiny_lite", "lite"} <= set(list_presets())
    tiny = create_tokenizer("tiny")
    assert tiny.num_slots == 32 and tiny.out_dim == 128
    assert create_tokenizer("tiny", num_slots=8).num_slots == 8
    with torch.device("meta"):
        lite = create_tokenizer("lite")
    assert isinstance(lite.pixel_encoder, EfficientNetLite) and (lite.dim, lite.out_dim, lite.num_slots) == (128, 512, 128)
    assert create_tokenizer("tiny_lite", "vit3d").embed.patch_size == create_tokenizer("tiny", "vit3d").embed.patch_size
    assert scale_of("lite") == "base" and scale_of("tiny") == "tiny"
    assert tokenizer_sizes("tome", "lite") == tokenizer_sizes("tome", "base")  # a peer takes its scale's sizes


@pytest.mark.parametrize("encode", [True, False])
def test_token_width_apart_from_the_per_patch_width(encode):
    """The efficient layout: per-patch work at ``dim``, tokens at ``token_dim``, in full and segmentation-only
    passes alike."""
    model = small_tokenizer(token_dim=96)
    out = model(torch.randn(2, 2, 3, 32, 32), encode=encode)
    assert model.out_dim == 96 and out.tokens.shape == (2, 16, 96)
    assert model.segmenter.patch_head[0].in_features == 64


@pytest.mark.parametrize("family", ["convnext", "dinov3_convnext", "resnet"])
def test_autobackbone_loaded_by_local_path(tmp_path, family):
    from transformers import (
        AutoBackbone,
        ConvNextConfig,
        DINOv3ConvNextConfig,
        ResNetConfig,
    )

    if family == "convnext":
        config = ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_indices=[1, 2, 3, 4])
    elif family == "dinov3_convnext":
        config = DINOv3ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_indices=[1, 2, 3, 4])
    else:
        config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                              layer_type="basic", out_indices=[1, 2, 3, 4])
    torch.manual_seed(0)
    AutoBackbone.from_config(config).save_pretrained(tmp_path)

    backbone = HFBackbone(str(tmp_path), out_dim=64, pretrained=True, frozen=True)
    model = small_tokenizer(pixel_encoder=backbone)
    out = model(torch.randn(1, 2, 3, 64, 64))
    assert out.grid == (2, 16, 16) and torch.isfinite(out.tokens).all()
    out.tokens.sum().backward()
    assert all(p.grad is None for p in backbone.backbone.parameters())
    # Built from the config alone and trainable, the backbone does learn.
    scratch = HFBackbone(str(tmp_path), out_dim=64, pretrained=False, frozen=False)
    small_tokenizer(pixel_encoder=scratch)(torch.randn(1, 1, 3, 64, 64)).tokens.sum().backward()
    assert any(p.grad is not None for p in scratch.backbone.parameters())
    assert backbone.projections[0].weight.grad is not None
    # Loaded weights are the saved ones, not a fresh init.
    reloaded = type(backbone.backbone).from_pretrained(tmp_path)
    first = next(iter(reloaded.state_dict()))
    assert torch.equal(reloaded.state_dict()[first], backbone.backbone.state_dict()[first])


# --- the state at initialisation: slots must start distinct, or training collapses them to one ------------------

def _mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine over distinct pairs of the rows of ``x (B, K, D)``, averaged over the batch."""
    x = torch.nn.functional.normalize(x, dim=-1)
    cos = x @ x.transpose(1, 2)
    k = cos.shape[-1]
    return float(((cos.sum((1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(-1)) / (k * (k - 1))).mean())


@pytest.mark.parametrize("rotary", ["axial", "sequence"])
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_queries_stay_distinct_through_every_layer_at_init(preset, rotary):
    """The segmenter's K queries must leave each Perceiver layer as distinct as they entered it, and the
    assignment must not start flat. Without per-layer normalisation of the latent stream the 0.02-scale
    Fourier queries came out of layer 1 with pairwise cosine 0.999 and a uniform softmax over K."""
    torch.manual_seed(0)
    model = create_tokenizer(preset, rotary=rotary)
    seg = model.segmenter
    video = torch.randn(2, 4, 3, 64, 64)
    a = model.assign(video)
    context, grid = seg.pool_context(a.patches, a.grid)
    rotate = seg.rotary.for_grid(grid, seg.num_slots, a.patches.device)
    queries, context = seg.queries.expand(2, -1, -1), standardize(context)
    for layer in seg.layers:
        queries = layer(queries, context, full_attention, rotate)
        assert _mean_pairwise_cosine(queries.detach()) < 0.3
    span = a.logits.amax(-1) - a.logits.amin(-1)  # per patch, across the K slots
    assert span.mean() > 1.0
    assert a.logits.softmax(-1).amax(-1).mean() > 3 / seg.num_slots
    assert all(len(labels.unique()) > seg.num_slots // 2 for labels in a.labels)  # many slots win patches


def test_subtokens_of_a_trajectory_start_distinct():
    """The trajectory encoder's sub-token codes are not swamped by the soft mean they are added to."""
    torch.manual_seed(0)
    model = small_tokenizer(subtokens=(4,))
    a = model.assign(torch.randn(2, 2, 3, 32, 32))
    enc = model.encoder
    mean = enc.norm_soft_mean(soft_mean(a.logits, a.patches))[0]  # (K, D), clip 0
    latents = enc.norm_code(enc.latents[:, :4]) + mean[:, None]  # (K, n, D): what the first layer reads
    # Sub-tokens of one trajectory share their slot's code (cosine 0.56 between their codes alone), so with
    # an equal share of soft mean they sit near (1 + 0.56) / 2; added raw, the code is lost in the mean.
    assert _mean_pairwise_cosine(latents.detach()) < 0.9
    swamped = enc.latents[:, :4] + soft_mean(a.logits, a.patches)[0][:, None]
    assert _mean_pairwise_cosine(swamped.detach()) > 0.999


def test_logit_scale_starts_sharp_and_learns_at_its_gain():
    seg = Segmenter(dim=32, num_slots=4, heads=2, head_dim=16, assign_dim=16, init_scale=10.0, scale_gain=10.0)
    assert seg.scale.item() == pytest.approx(10.0, rel=1e-5)
    slow = Segmenter(dim=32, num_slots=4, heads=2, head_dim=16, assign_dim=16, init_scale=10.0, scale_gain=1.0)
    assert slow.scale.item() == pytest.approx(10.0, rel=1e-5)
    for s in (seg, slow):  # one AdamW step that raises the scale moves log_scale by ~lr
        opt = torch.optim.AdamW([s.log_scale], lr=1e-2, weight_decay=0.0)
        (-s.scale).backward()
        opt.step()
    assert seg.scale.item() - 10.0 == pytest.approx(10 * (slow.scale.item() - 10.0), rel=0.05)
    with pytest.raises(ValueError, match="init_scale"):
        Segmenter(init_scale=0.5)
    with pytest.raises(ValueError, match="scale_gain"):
        Segmenter(scale_gain=0.0)


def test_pool_patches_averages_spatial_windows_per_frame():
    grid = (2, 5, 4)  # an odd height: the last row of windows holds one row of patches
    patches = torch.randn(3, 2 * 5 * 4, 6)
    pooled, pooled_grid = pool_patches(patches, grid, 2)
    assert pooled_grid == (2, 3, 2) and pooled.shape == (3, 2 * 3 * 2, 6)
    frames = patches.view(3, 2, 5, 4, 6)
    expected = torch.stack([
        torch.stack([frames[:, :, 2 * y:2 * y + 2, 2 * x:2 * x + 2].mean(dim=(2, 3)) for x in range(2)], dim=2)
        for y in range(3)], dim=2).reshape(3, -1, 6)
    torch.testing.assert_close(pooled, expected)
    same, same_grid = pool_patches(patches, grid, 1)
    assert same is patches and same_grid == grid


def test_pool_patches_averages_frames_too():
    grid = (3, 4, 4)  # an odd frame count: the last window holds one frame
    patches = torch.randn(2, 3 * 4 * 4, 5)
    pooled, pooled_grid = pool_patches(patches, grid, 1, frames=2)
    frames = patches.view(2, 3, 16, 5)
    expected = torch.stack([frames[:, :2].mean(1), frames[:, 2]], dim=1).reshape(2, -1, 5)
    assert pooled_grid == (2, 4, 4)
    torch.testing.assert_close(pooled, expected)
    both, both_grid = pool_patches(patches, grid, 2, frames=2)
    assert both_grid == (2, 2, 2)
    torch.testing.assert_close(both[:, 0], patches.view(2, 3, 4, 4, 5)[:, :2, :2, :2].mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("factor", [1, 2])
def test_pool_patches_whole_frame_windows_equal_avg_pool3d(factor):
    """Even frame counts take the strided-mean path; it must be the same average as the general one."""
    grid = (4, 6, 5)
    patches = torch.randn(2, 4 * 6 * 5, 3, requires_grad=True)
    pooled, pooled_grid = pool_patches(patches, grid, factor, frames=2)
    clips = patches.view(2, *grid, 3).permute(0, 4, 1, 2, 3)
    expected = torch.nn.functional.avg_pool3d(clips, (2, factor, factor), ceil_mode=True, count_include_pad=False)
    assert pooled_grid == tuple(expected.shape[-3:])
    torch.testing.assert_close(pooled, expected.permute(0, 2, 3, 4, 1).reshape(2, -1, 3))
    pooled.sum().backward()  # every patch is in exactly one window of its frame pair
    assert (patches.grad > 0).all()


def test_pooled_segmenter_context_still_assigns_every_patch():
    video = torch.randn(2, 4, 3, 32, 32)
    full, pooled = small_tokenizer(), small_tokenizer(context_pool=2, context_pool_frames=2)
    pooled.load_state_dict(full.state_dict())  # the pool has no parameters of its own
    a_full, a_pooled = full.assign(video), pooled.assign(video)
    assert a_pooled.logits.shape == a_full.logits.shape  # one assignment per patch, full resolution
    assert not torch.allclose(a_pooled.logits, a_full.logits)  # the queries read a different context
    pooled(video).tokens.sum().backward()
    assert pooled.segmenter.layers[0].to_k.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("frames", "window"), [(2, 1), (4, 1), (6, 2), (8, 2), (12, 3)])
def test_capped_context_pools_only_clips_longer_than_the_cap(frames, window):
    """``context_frames=4``: clips up to 4 frames are the paper's layout to the bit; longer ones are read as if
    pooled over ``ceil(T / 4)`` frames, so the queries never read more than 4 frames."""
    video = torch.randn(1, frames, 3, 32, 32)
    full, capped, pooled = small_tokenizer(), small_tokenizer(context_frames=4), small_tokenizer(context_pool_frames=window)
    capped.load_state_dict(full.state_dict())
    pooled.load_state_dict(full.state_dict())
    assert capped.segmenter.window_frames(frames) == window
    context, grid = capped.segmenter.pool_context(capped.assign(video).patches, (frames, 8, 8))
    assert grid[0] == -(-frames // window) <= 4 and context.shape[1] == grid[0] * 64
    a_capped = capped.assign(video)
    assert torch.equal(a_capped.logits, (full if window == 1 else pooled).assign(video).logits)


def test_capped_context_is_checked():
    with pytest.raises(ValueError, match="context_frames=0"):
        small_tokenizer(context_frames=0)


def test_checkpoints_with_a_fused_key_value_projection_still_load():
    from trajtok.tokenizer.attention import PerceiverLayer

    torch.manual_seed(0)
    layer = PerceiverLayer(16, heads=2, head_dim=8)
    old = dict(layer.state_dict())
    old["to_kv.weight"] = torch.cat([old.pop("to_k.weight"), old.pop("to_v.weight")])  # the earlier layout
    restored = PerceiverLayer(16, heads=2, head_dim=8)
    restored.load_state_dict(old)
    latents, context = torch.randn(2, 3, 16), standardize(torch.randn(2, 7, 16))
    torch.testing.assert_close(restored(latents, context, full_attention), layer(latents, context, full_attention))


def test_shared_standardised_context_equals_a_layer_norm_per_layer():
    """Folding ``norm_context``'s affine into the key/value projections is the same function as applying it."""
    from trajtok.tokenizer.attention import PerceiverLayer

    torch.manual_seed(0)
    layer = PerceiverLayer(16, heads=2, head_dim=8)
    with torch.no_grad():
        layer.norm_context.weight.uniform_(0.5, 2.0)
        layer.norm_context.bias.normal_()
    context = 3 * torch.randn(2, 7, 16) + 1
    k, v = layer.context_keys_values(standardize(context))
    normed = layer.norm_context(context)
    torch.testing.assert_close(k, layer.to_k(normed).unflatten(-1, (2, 8)))
    torch.testing.assert_close(v, layer.to_v(normed).unflatten(-1, (2, 8)))


def test_recompute_gives_the_same_gradients_and_a_patch_budget_decides_per_batch():
    video = torch.randn(2, 4, 3, 32, 32)  # 2 x 4 x 8 x 8 = 512 patches
    grads, kept = [], []
    for recompute in (False, True, 512, 513):
        model = small_tokenizer(recompute=recompute, context_pool=2).train()
        storages = {}
        def keep(t, storages=storages):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            out = model(video)
        kept.append(sum(storages.values()))
        (out.tokens.square().sum() + out.logits.logsumexp(-1).sum()).backward()
        grads.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(small_tokenizer().parameters()))
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
    assert kept[1] < 0.5 * kept[0], kept  # the activations the backward keeps (0.41 of them here)
    assert kept[2] == kept[1] and kept[3] == kept[0]  # from 512 patches on: this batch is; from 513: it is not


def test_recompute_refuses_a_pixel_encoder_with_batch_norm_statistics():
    encoder = ConvPyramid(out_dim=64, widths=(16, 32), depths=(1, 1))
    encoder.downsamples[0].append(torch.nn.BatchNorm2d(16))
    with pytest.raises(ValueError, match="batch-norm statistics"):
        small_tokenizer(pixel_encoder=encoder, recompute=True)
    small_tokenizer(pixel_encoder=encoder, recompute=False)
