"""The code paths that only CuPy takes, checked on a GPU (marked ``gpu``: skipped, with the reason, elsewhere).

Run with ``python -m pytest --backends numpy,cupy`` (``bash benchmarks/gpu_check.sh`` does). Each fused kernel
against its plain formula, and the Adam and SGD kernels on a flat array, are in tests/test_engine.py. Here: the
optimizers' one-launch step over a model's flat buffer against ``adam_reference`` / ``sgd_reference`` parameter by
parameter; a whole VAE training step on CuPy against the same step on NumPy; and the deferred loss check that
``fit`` uses on CuPy (every 50 steps), which must still name the step and put back the last checked weights.
"""
import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import kernels, optim

pytestmark = [pytest.mark.gpu, pytest.mark.backends("cupy")]


def host(a):
    return B.to_numpy(a).astype(np.float64)


def assert_close(got, want, rtol):
    got, want = host(got), host(want)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rtol * max(np.abs(want).max(), 1e-300)


def small_vae(dtype="float64"):
    return tv.VAE(12, hidden=(7,), latent_dim=3, dtype=dtype, rng=0)


def _count_calls(monkeypatch, name):
    """Count the calls of ``kernels.<name>`` (the optimizers import the module, so the patch is what they call)."""
    calls, original = [], getattr(kernels, name)

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernels, name, counted)
    return calls


def _random_grads(params, gen, t):
    for p in params:
        p.grad = gen.standard_normal(p.shape, "float64") * 10.0 ** (t % 5 - 3)
    return [B.copy(p.grad) for p in params]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_over_a_models_flat_buffer_equals_adam_reference_per_parameter(weight_decay, monkeypatch):
    model = small_vae()
    params = model.parameters()
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    opt = tv.Adam(params, **kw)
    (buf,) = opt.flat
    assert B.backend_name() == "cupy" and B.is_array(buf.data)
    calls = _count_calls(monkeypatch, "adam")
    ref = [(B.copy(p.data), B.zeros(p.shape, "float64"), B.zeros(p.shape, "float64")) for p in params]
    gen = B.Generator(1)
    for t in range(1, 21):
        grads = _random_grads(params, gen, t)
        opt.step()
        ref = [optim.adam_reference(d, g, m, v, t, **kw) for (d, m, v), g in zip(ref, grads)]
    assert calls == [buf.data.shape] * 20  # one launch per step, over the whole flat buffer
    assert buf.intact() and all(p._flat is buf for p in params)
    for i, (p, (d, m, v)) in enumerate(zip(params, ref)):
        assert_close(p.data, d, 1e-12)
        assert_close(opt.state["m"][i], m, 1e-12)
        assert_close(opt.state["v"][i], v, 1e-12)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.01)])
def test_fused_sgd_over_a_models_flat_buffer_equals_sgd_reference_per_parameter(momentum, weight_decay, monkeypatch):
    model = small_vae()
    params = model.parameters()
    opt = tv.SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    (buf,) = opt.flat
    calls = _count_calls(monkeypatch, "sgd")
    ref = [(B.copy(p.data), B.zeros(p.shape, "float64")) for p in params]
    gen = B.Generator(2)
    for t in range(1, 16):
        grads = _random_grads(params, gen, t)
        opt.step()
        ref = [optim.sgd_reference(d, g, b, 0.1, momentum, weight_decay) for (d, b), g in zip(ref, grads)]
    assert calls == [buf.data.shape] * 15
    for i, (p, (d, b)) in enumerate(zip(params, ref)):
        assert_close(p.data, d, 1e-13)
        assert_close(opt.state["momentum_buffer"][i], b, 1e-13)


def test_three_adam_steps_of_a_vae_on_cupy_equal_the_same_steps_on_numpy():
    """Same float64 weights, batch and eps: the fused kernels (BCE, KL, reparameterization, ReLU backward, Adam)
    give NumPy's parameters after three training steps."""
    x = np.random.default_rng(0).random((16, 12))
    eps = [np.random.default_rng(s).standard_normal((16, 3)) for s in (1, 2, 3)]
    state, results = None, {}
    for name in ("numpy", "cupy"):
        tv.use(name)
        model = small_vae()
        if state is None:
            state = {k: tv.to_numpy(v) for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        opt = tv.Adam(model.parameters(), lr=0.01)
        for e in eps:
            opt.zero_grad()
            model.loss(tv.asarray(x), eps=tv.asarray(e))
            model.backward()
            opt.step()
        results[name] = [host(p.data) for p in model.parameters()]
    for got, want in zip(results["cupy"], results["numpy"]):
        assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()


def test_fit_on_cupy_checks_every_50_steps_and_a_non_finite_loss_restores_the_last_checked_weights(monkeypatch):
    x = B.Generator(0).random((8 * 60, 12), "float32")  # 60 steps of 8 per epoch: checks after steps 50 and 60
    model = small_vae("float32")
    opt = tv.Adam(model.parameters(), lr=1e-3)
    original, calls, checked = model.loss, [], []

    def loss(xb, rng=None):
        calls.append(1)
        if len(calls) == 60 + 51:  # epoch 2, step 51: the weights now are those saved at the check after step 50
            checked.extend(host(p.data) for p in model.parameters())
        parts = original(xb, rng=rng)
        if len(calls) == 60 + 55:  # epoch 2, step 55: a NaN the next check (after step 60) finds
            total, recon, kl = parts.values()
            assert B.is_array(total)  # on CuPy the loss stays on the device until the check reads it
            return tv.LossParts(total * float("nan"), recon, kl)
        return parts

    monkeypatch.setattr(model, "loss", loss)
    with pytest.raises(FloatingPointError, match=r"nan at epoch 2, step 55 of 60.*weights restored to step 50 of "
                                                 r"that epoch: checks run every 50 steps"):
        tv.fit(model, x, 3, batch_size=8, optimizer=opt, progress=False)
    assert len(calls) == 120  # epoch 2 ran to its end, where the check after step 60 read the NaN
    for p, want in zip(model.parameters(), checked):
        np.testing.assert_array_equal(host(p.data), want)
    assert opt.t == 60 + 50 and all(np.isfinite(host(m)).all() for m in opt.state["m"])
