"""The tiny transformer: config validation, seeding, causality, hook points, a numpy twin, optimizers."""

import math

import numpy as np
import pytest
import torch

from engine.transformer import ATTENTIONS, OPTIMIZERS, Transformer, TransformerConfig, make_optimizer

torch.set_num_threads(1)

SMALL = {"vocab": 11, "context": 12, "layers": 2, "heads": 2, "width": 16}


def small(attention: str = "softmax", **changes) -> TransformerConfig:
    return TransformerConfig(**{**SMALL, "attention": attention, **changes})


def tokens(batch: int = 3, t: int = 9, vocab: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, t), generator=torch.Generator().manual_seed(seed))


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"heads": 0}, ["heads=0", "[1, 1024]"]),
        ({"width": 50, "heads": 4}, ["width=50", "heads=4", "multiple of heads"]),
        ({"attention": "linear"}, ["attention='linear'", "softmax", "gated-elem"]),
        ({"layers": 49}, ["layers=49", "[1, 48]"]),
    ],
)
def test_bad_config_names_field_and_value(changes, words):
    with pytest.raises(ValueError) as err:
        TransformerConfig(**changes)
    for word in words:
        assert word in str(err.value)


def test_defaults_and_head_dim():
    cfg = TransformerConfig()
    assert (cfg.vocab, cfg.context, cfg.layers, cfg.heads, cfg.width, cfg.mlp_ratio) == (67, 64, 2, 2, 64, 4)
    assert cfg.attention == "softmax" and cfg.head_dim == 32
    assert ATTENTIONS == ("softmax", "relu", "gated-head", "gated-elem")


def test_model_has_no_biases_and_the_documented_init():
    model = Transformer(TransformerConfig(), seed=0)
    for name, p in model.named_parameters():
        assert "bias" not in name
        if p.ndim == 1:
            assert torch.all(p == 1), name  # LayerNorm gains
        else:
            assert abs(p.std().item() - 0.02) < 0.003, name
    for m in model.modules():
        if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm):
            assert m.bias is None


# -- seeding -----------------------------------------------------------------------------------
def test_same_seed_same_weights_and_logits_whatever_the_global_rng():
    torch.manual_seed(1)
    a = Transformer(small("gated-elem"), seed=7)
    torch.manual_seed(2)
    b = Transformer(small("gated-elem"), seed=7)
    c = Transformer(small("gated-elem"), seed=8)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        assert torch.equal(pa, pc) == (pa.ndim == 1), name  # only the LayerNorm gains (all 1) agree
    x = tokens()
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), c(x))


def test_construction_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    Transformer(small(), seed=0)
    assert torch.equal(torch.rand(4), expected)


# -- forward -----------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_causal(attention):
    model = Transformer(small(attention), seed=0)
    x = tokens(t=12)
    base = model(x)
    assert base.shape == (3, 12, 11)
    for t in (0, 4, 11):
        y = x.clone()
        y[:, t] = (y[:, t] + 1 + torch.arange(3)) % 11
        out = model(y)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=0)
        assert not torch.allclose(out[:, t], base[:, t])


def test_too_long_or_bad_tokens_raise():
    model = Transformer(small(), seed=0)
    with pytest.raises(ValueError, match="T=13 .*context=12"):
        model(tokens(t=13))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(2, 3))


# -- hook points and recording -----------------------------------------------------------------
def expected_shapes(cfg: TransformerConfig, b: int, t: int) -> dict[str, tuple]:
    d, h, dh, m = cfg.width, cfg.heads, cfg.head_dim, cfg.mlp_ratio * cfg.width
    shapes = {"hook_embed": (b, t, d), "hook_pos_embed": (b, t, d)}
    for l in range(cfg.layers):
        p = f"blocks.{l}."
        shapes[p + "hook_resid_pre"] = (b, t, d)
        for name in ("q", "k", "v"):
            shapes[f"{p}attn.hook_{name}"] = (b, h, t, dh)
        shapes[p + "attn.hook_attn_scores"] = (b, h, t, t)
        shapes[p + "attn.hook_pattern"] = (b, h, t, t)
        if cfg.attention == "gated-head":
            shapes[p + "attn.hook_gate"] = (b, h, t, 1)
        elif cfg.attention == "gated-elem":
            shapes[p + "attn.hook_gate"] = (b, h, t, dh)
        shapes[p + "attn.hook_z"] = (b, h, t, dh)
        shapes |= {p + "hook_attn_out": (b, t, d), p + "hook_resid_mid": (b, t, d)}
        shapes |= {p + "mlp.hook_pre": (b, t, m), p + "mlp.hook_post": (b, t, m)}
        shapes |= {p + "hook_mlp_out": (b, t, d), p + "hook_resid_post": (b, t, d)}
    shapes["hook_ln_final"] = (b, t, d)
    return shapes


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_recording_changes_nothing_and_has_documented_shapes(attention):
    cfg = small(attention)
    model = Transformer(cfg, seed=1)
    x = tokens()
    plain = model(x)
    logits, cache = model.run_with_cache(x)
    assert torch.equal(logits, plain)
    shapes = expected_shapes(cfg, 3, 9)
    assert model.hook_names() == list(shapes)
    assert list(cache) == list(shapes)
    assert {k: tuple(v.shape) for k, v in cache.items()} == shapes
    assert not any(v.requires_grad for v in cache.values())
    assert torch.equal(model(x), plain)  # recording is off again
    assert not any(hp.active for hp in model.hook_points.values())


def test_name_filters_and_detach_option():
    model = Transformer(small(), seed=0)
    x = tokens()
    _, cache = model.run_with_cache(x, names=["blocks.1.hook_resid_post", "hook_embed"])
    assert set(cache) == {"blocks.1.hook_resid_post", "hook_embed"}
    _, cache = model.run_with_cache(x, names=lambda n: n.endswith("hook_pattern"))
    assert list(cache) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    _, cache = model.run_with_cache(x, names="hook_ln_final", detach=False)
    assert cache["hook_ln_final"].requires_grad and cache["hook_ln_final"].grad_fn is not None
    with pytest.raises(ValueError, match="unknown hook point 'blocks.0.hook_nope'"):
        model.run_with_cache(x, names={"blocks.0.hook_nope"})
    with model.recording(["blocks.0.mlp.hook_post"]) as cache:
        model(x)
    assert (cache["blocks.0.mlp.hook_post"] >= 0).all()


@pytest.mark.parametrize("attention", ["softmax", "gated-head", "gated-elem"])
def test_softmax_patterns_are_causal_distributions(attention):
    model = Transformer(small(attention), seed=2)
    _, cache = model.run_with_cache(tokens(), names=lambda n: n.endswith("hook_pattern"))
    for pattern in cache.values():  # (B, H, T_q, T_k)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
        assert torch.all(pattern.triu(1) == 0)
        assert torch.all(pattern[..., torch.ones(9, 9, dtype=torch.bool).tril()] > 0)


def test_relu_pattern_is_relu_scores_over_query_count():
    cfg = small("relu")
    model = Transformer(cfg, seed=3)
    _, cache = model.run_with_cache(tokens())
    t = 9
    for l in range(cfg.layers):
        q, k = cache[f"blocks.{l}.attn.hook_q"], cache[f"blocks.{l}.attn.hook_k"]  # (B, H, T, d_h)
        scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(cfg.head_dim)
        allowed = torch.ones(t, t).tril()  # (T_q, T_k)
        count = torch.arange(1, t + 1, dtype=torch.float32)[:, None]  # (T_q, 1)
        expected = torch.clamp(scores, min=0) * allowed / count
        torch.testing.assert_close(cache[f"blocks.{l}.attn.hook_pattern"], expected, rtol=1e-5, atol=1e-6)
        assert (expected > 0).any() and not torch.allclose(expected.sum(-1), torch.ones(3, 2, t))


@pytest.mark.parametrize("attention", ["gated-head", "gated-elem"])
def test_gate_is_sigmoid_of_layer_input(attention):
    model = Transformer(small(attention), seed=4)
    _, cache = model.run_with_cache(tokens())
    gate = cache["blocks.0.attn.hook_gate"]
    assert torch.all((gate > 0) & (gate < 1))
    assert "hook_gate" not in " ".join(Transformer(small("relu"), seed=0).hook_names())


# -- reference twin ----------------------------------------------------------------------------
def numpy_block(model: Transformer, x: np.ndarray, attention: str) -> np.ndarray:
    """Block 0 written out in float64 numpy from the weights, one head and one query at a time."""
    w = {name: p.detach().double().numpy() for name, p in model.named_parameters()}
    cfg = model.cfg
    h, dh = cfg.heads, cfg.head_dim

    def layer_norm(v, gain):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * gain

    b, t, _ = x.shape
    a = layer_norm(x, w["blocks.0.ln1.weight"])
    q, k, v = (a @ w[f"blocks.0.attn.{n}.weight"].T for n in ("query", "key", "value"))  # (B, T, d)
    z = np.zeros_like(q)
    for head in range(h):
        cols = slice(head * dh, (head + 1) * dh)
        for i in range(t):
            s = np.einsum("bd,bjd->bj", q[:, i, cols], k[:, : i + 1, cols]) / np.sqrt(dh)  # (B, i+1)
            if attention == "relu":
                p = np.maximum(s, 0) / (i + 1)
            else:
                e = np.exp(s - s.max(-1, keepdims=True))
                p = e / e.sum(-1, keepdims=True)
            z[:, i, cols] = np.einsum("bj,bjd->bd", p, v[:, : i + 1, cols])
    if attention.startswith("gated"):
        g = 1 / (1 + np.exp(-(a @ w["blocks.0.attn.gate.weight"].T)))  # (B, T, H) or (B, T, d)
        z = z * (np.repeat(g, dh, axis=-1) if attention == "gated-head" else g)
    x = x + z @ w["blocks.0.attn.out.weight"].T
    m = layer_norm(x, w["blocks.0.ln2.weight"])
    return x + np.maximum(m @ w["blocks.0.mlp.up.weight"].T, 0) @ w["blocks.0.mlp.down.weight"].T


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_one_block_matches_numpy_twin(attention):
    model = Transformer(small(attention, heads=4), seed=5)
    with torch.no_grad():  # make LayerNorm gains non-trivial so the twin checks them too
        for l in range(model.cfg.layers):
            model.blocks[l].ln1.weight.mul_(1.5)
            model.blocks[l].ln2.weight.add_(0.25)
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(20)  # large enough that attention is far from uniform
    x = tokens(t=10)
    _, cache = model.run_with_cache(x)
    emb = (
        model.embed.weight.detach().double().numpy()[x.numpy()] + model.pos_embed.weight.detach().double().numpy()[:10]
    )
    np.testing.assert_allclose(cache["blocks.0.hook_resid_pre"].numpy(), emb, atol=1e-6)
    expected = numpy_block(model, emb, attention)
    np.testing.assert_allclose(cache["blocks.0.hook_resid_post"].numpy(), expected, atol=1e-5, rtol=1e-5)


# -- interventions -----------------------------------------------------------------------------
def test_zeroing_head_outputs_changes_logits_and_keeps_gradients():
    model = Transformer(small(), seed=6)
    x, y = tokens(), tokens(seed=1)
    plain = model(x)
    calls = []

    def zero(z: torch.Tensor, name: str) -> torch.Tensor:
        calls.append(name)
        return z * 0.0

    with model.hooks({"blocks.0.attn.hook_z": zero}):
        logits, cache = model.run_with_cache(x, names=["blocks.0.attn.hook_z", "blocks.0.hook_attn_out"])
        assert calls == ["blocks.0.attn.hook_z"]
        assert torch.all(cache["blocks.0.attn.hook_z"] == 0) and torch.all(cache["blocks.0.hook_attn_out"] == 0)
        assert not torch.allclose(logits, plain)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name in ("query", "key", "value", "out"):
        assert torch.all(grads[f"blocks.0.attn.{name}.weight"] == 0)
    for name in ("embed.weight", "blocks.0.mlp.up.weight", "blocks.1.attn.query.weight", "unembed.weight"):
        assert grads[name].abs().sum() > 0, name
    assert not any(hp.active for hp in model.hook_points.values())
    assert torch.equal(model(x), plain)


def test_clamping_one_head_is_differentiable_and_hooks_compose():
    model = Transformer(small(), seed=7)
    x = tokens()

    def clamp_head0(z: torch.Tensor, name: str) -> torch.Tensor:
        z = z.clone()
        z[:, 0] = 0.5
        return z

    def in_place_noop(z: torch.Tensor, name: str) -> None:
        z.mul_(1.0)  # in-place, returning None keeps the tensor

    model.add_hook(lambda n: n.endswith("attn.hook_z"), clamp_head0)
    model.add_hook("blocks.0.attn.hook_z", in_place_noop)
    _, cache = model.run_with_cache(x, names=lambda n: n.endswith("hook_z"), detach=False)
    for z in cache.values():
        assert torch.all(z[:, 0] == 0.5)
    cache["blocks.1.attn.hook_z"][:, 1].sum().backward()
    assert model.blocks[1].attn.value.weight.grad.abs().sum() > 0
    model.remove_hooks(fn=in_place_noop)
    assert len(model.blocks[0].attn.hook_z._fns) == 1
    model.remove_hooks()
    assert not any(hp.active for hp in model.hook_points.values())
    with pytest.raises(ValueError, match="unknown hook point"):
        model.add_hook("blocks.9.attn.hook_z", in_place_noop)


def test_hooks_context_removes_on_error_and_keeps_other_hooks():
    model = Transformer(small(), seed=8)

    def keep(z: torch.Tensor, name: str) -> None:
        return None

    model.add_hook("hook_embed", keep)
    with pytest.raises(RuntimeError), model.hooks([("hook_embed", keep), (lambda n: "mlp" in n, keep)]):
        assert len(model.hook_points["hook_embed"]._fns) == 2
        raise RuntimeError
    assert model.hook_points["hook_embed"]._fns == [keep]
    assert not any(hp.active for name, hp in model.hook_points.items() if name != "hook_embed")


# -- optimizers --------------------------------------------------------------------------------
def test_make_optimizer():
    model = Transformer(small(), seed=0)
    expected = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    assert set(OPTIMIZERS) == set(expected)
    for name, cls in expected.items():
        opt = make_optimizer(model, name, 1e-3, weight_decay=0.1)
        assert type(opt) is cls
        decayed, plain = opt.param_groups
        assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
        assert all(p.ndim == 1 for p in plain["params"])
        assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert make_optimizer(model, "adamw", 3e-4).param_groups[0]["betas"] == (0.9, 0.99)
    assert make_optimizer(model, "sgd", 0.03).param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="optimizer='lion' .*adamw, adam, sgd"):
        make_optimizer(model, "lion", 1e-3)
    with pytest.raises(ValueError, match="lr=0"):
        make_optimizer(model, "adam", 0.0)


def test_a_few_steps_reduce_the_loss():
    model = Transformer(small(), seed=0)
    opt = make_optimizer(model, "adamw", 1e-2)
    x = tokens(batch=8, t=12)
    losses = []
    for _ in range(20):
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
