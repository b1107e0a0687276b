"""Plain mode (``tinyvae.use_plain``): every ``_fast`` twin runs its plain formula, the CuPy kernels and the flat
buffer's one-pass updates are off, and training gives the fast mode's numbers to rounding."""
import collections

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import activations, kernels, losses, optim, reparam
from tinyvae import backend as B
from tinyvae.module import Parameter, Sequential


def host(a):
    return B.to_numpy(a).astype(np.float64)


@pytest.fixture(autouse=True)
def fast_again():
    yield
    tv.use_plain(False)


MODELS = {
    "vae": lambda dtype: tv.VAE(20, hidden=(9,), latent_dim=3, dtype=dtype, rng=0),
    "ae": lambda dtype: tv.Autoencoder(20, hidden=(9,), latent_dim=3, dtype=dtype, rng=0),
    "iwae": lambda dtype: tv.VAE(20, hidden=(9,), latent_dim=3, k=4, dtype=dtype, rng=0),
    "leaky_gaussian_vae": lambda dtype: tv.VAE(20, hidden=(9, 6), latent_dim=3, likelihood="gaussian",
                                               activation="leaky_relu", dtype=dtype, rng=0),
}


def parameters(model):
    return {name: host(p.data) for name, p in model.named_parameters()}


def trained(kind, dtype, plain):
    """(initial, trained) parameters: ``fit`` for 4 steps of Adam, gradients clipped, from one seed."""
    tv.use_plain(plain)
    assert B.plain() is plain
    x = np.random.default_rng(1).random((32, 20))
    model = MODELS[kind](dtype)
    before = parameters(model)
    tv.fit(model, x, 1, batch_size=8, seed=3, clip=2.0, progress=False)
    return before, parameters(model)


# float32: at every step the fast twins round differently from the formulas (fused kernels, in-place updates, the
# BCE's blocked sums), about 1e-7 relative; Adam divides by sqrt(v), which can enlarge that where a gradient is
# near zero. Measured after 4 steps: at most 1.5e-6 of a parameter's largest value (numpy and the stand-in; 1e-15
# in float64), so the bound is 2e-5 in float32 and 1e-10 in float64.
@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 2e-5)])
def test_training_in_plain_mode_gives_the_fast_modes_parameters(kind, dtype, rtol):
    start, fast = trained(kind, dtype, False)
    _, plain = trained(kind, dtype, True)
    assert sorted(fast) == sorted(plain)
    for name in fast:
        assert np.abs(fast[name] - start[name]).max() > 1e-4, name  # training moved it: the comparison means something
        scale = np.abs(fast[name]).max()
        assert np.abs(plain[name] - fast[name]).max() <= rtol * scale, (name, np.abs(plain[name] - fast[name]).max())


def _count(monkeypatch, calls, module, name):
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls[name] += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, counted)


def _refuse(monkeypatch, owner, name):
    def refused(*args, **kwargs):
        raise AssertionError(f"{name} ran in plain mode")
    monkeypatch.setattr(owner, name, refused)


def test_plain_mode_calls_the_plain_functions_and_never_a_fast_path(monkeypatch):
    """Two steps of a small VAE (20-9-3) in plain mode: each plain formula is called as often as the step needs
    it, and the kernels, the fast twins' own bodies and the flat buffer's one-pass paths never run."""
    calls = collections.Counter()
    for module, name in [(losses, "bce_with_logits"), (losses, "gaussian_kl"), (activations, "relu"),
                         (activations, "relu_backward"), (reparam, "reparameterize"),
                         (reparam, "reparameterize_backward"), (optim, "adam_reference")]:
        _count(monkeypatch, calls, module, name)
    for owner, name in [(kernels, "_kernel"), (kernels, "_reduction"), (losses, "_bce_rows_fast"),
                        (optim, "_row_blocks"), (Sequential, "forward_fast"), (tv.VAE, "_encode_sample_fast")]:
        _refuse(monkeypatch, owner, name)
    tv.use_plain(True)
    assert not Parameter._writes_in_place()  # gradients are accumulated as grad += g, never written with out=
    model = MODELS["vae"]("float64")
    opt = tv.Adam(model.parameters())
    x = tv.asarray(np.random.default_rng(1).random((8, 20)), dtype="float64")
    for _ in range(2):
        opt.zero_grad()
        model.loss(x, rng=0)
        model.backward()
        tv.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
    n_params = len(model.parameters())  # 10: W and b of 5 Dense layers
    assert dict(calls) == {"bce_with_logits": 2, "gaussian_kl": 2, "relu": 4, "relu_backward": 4,
                           "reparameterize": 2, "reparameterize_backward": 2, "adam_reference": 2 * n_params}


def test_use_plain_switches_back_and_the_environment_variable_turns_it_on(monkeypatch):
    tv.use_plain(True)
    assert B.plain() and not B.fast_gpu()
    tv.use_plain(False)
    assert not B.plain() and B.fast_gpu() == (B.backend_name() == "cupy")
    monkeypatch.setenv("TINYVAE_PLAIN", "1")
    name = B.backend_name()
    B._from_environment()
    assert B.plain() and B.backend_name() == name
