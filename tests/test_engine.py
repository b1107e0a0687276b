"""Tests for the engine: parameters in flat buffers, the fast twins equal to their plain formulas, labels in fit.

The CuPy kernels are tested against the same plain formulas in tests marked ``gpu`` (they run where CuPy finds a
device)."""
import re

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import activations, losses, optim, reparam
from tinyvae import backend as B
from tinyvae.flat import FlatBuffer, flatten_parameters


def host(a):
    return B.to_numpy(a).astype(np.float64)


def assert_close(got, want, rtol):
    got, want = host(got), host(want)
    assert got.shape == want.shape
    scale = max(np.abs(want).max(), 1e-300)
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


def vae(dtype="float64"):
    return tv.VAE(12, hidden=(7,), latent_dim=3, dtype=dtype, rng=0)


# ---------------------------------------------------------------- flat buffers

def test_an_optimizer_puts_the_parameters_into_one_flat_buffer_of_views(xp):
    model = vae()
    before = {name: host(p.data) for name, p in model.named_parameters()}
    opt = tv.Adam(model.parameters())
    (buf,) = opt.flat
    assert isinstance(buf, FlatBuffer) and buf.data.shape == (sum(p.data.size for p in model.parameters()),)
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(host(p.data), before[name])  # the values moved in unchanged
    # Writing through the flat array is writing the parameters: they are views.
    buf.data[...] = 2.0
    buf.grad[...] = 3.0
    for p in model.parameters():
        assert (host(p.data) == 2.0).all()
        p.zero_grad()
        assert (host(p.grad) == 0.0).all()  # zero_grad reads as zeros ...
    buf.settle_grads()
    assert (host(buf.grad) == 0.0).all()  # ... and writes real zeros before the flat array is read whole
    assert tv.Adam(model.parameters()).flat[0] is buf  # a second optimizer over the same list shares it


def test_assigning_data_or_grad_copies_into_the_buffer_and_never_leaves_it(xp):
    model = vae()
    opt = tv.SGD(model.parameters(), lr=0.5)
    (buf,) = opt.flat
    layer = model.decoder[0]
    new_w = B.Generator(1).standard_normal(layer.W.shape, "float64")
    layer.W.data = new_w                          # copied in: W is still a view of the buffer ...
    assert layer.W.data is not new_w and layer.W._flat is buf and buf.intact()
    np.testing.assert_array_equal(host(layer.W.data), host(new_w))
    layer.W.grad = B.ones(layer.W.shape, "float64")
    model.load_state_dict({k: v * 0 + 1 for k, v in model.state_dict().items()})  # loading keeps the views too
    assert buf.intact() and (host(buf.data) == 1.0).all()
    for p in model.parameters():
        if p is not layer.W:
            p.zero_grad()
    opt.step()                                    # ... so the flat update moves exactly W, by lr * grad
    np.testing.assert_array_equal(host(layer.W.data), np.full(layer.W.shape, 0.5))
    assert all((host(p.data) == 1.0).all() for p in model.parameters() if p is not layer.W)
    with pytest.raises(ValueError, match=r"Parameter.data: this parameter lives in a flat buffer .* shape \(3, 7\) "
                                         r"and dtype float64; got shape \(2, 2\)"):
        layer.W.data = B.zeros((2, 2), "float64")


def test_state_dicts_and_checkpoints_are_unchanged_by_the_flat_buffer(tmp_path):
    model = vae("float32")
    plain = model.state_dict()
    opt = tv.Adam(model.parameters(), lr=1e-2)
    assert sorted(model.state_dict()) == sorted(plain)
    x = B.Generator(2).random((5, 12), "float32")
    for _ in range(3):
        opt.zero_grad()
        model.loss(x, rng=0)
        model.backward()
        opt.step()
    state = opt.state_dict()
    assert sorted(state["buffers"]) == [f"{n}.{i}" for n in ("m", "v") for i in range(len(model.parameters()))]
    tv.save(model, tmp_path / "m.npz", optimizer=opt)
    ck = tv.load(tmp_path / "m.npz")
    for (name, a), (_, b) in zip(model.state_dict().items(), ck.model.state_dict().items()):
        np.testing.assert_array_equal(host(a), host(b), err_msg=name)
    for key, a in state["buffers"].items():
        np.testing.assert_array_equal(host(a), host(ck.optimizer.state_dict()["buffers"][key]), err_msg=key)


def test_one_optimizer_per_network_and_a_broken_up_buffer_still_updates_correctly():
    a, b = vae(), tv.VAE(12, hidden=(5,), latent_dim=2, dtype="float64", rng=1)
    opt_a, opt_b = tv.SGD(a.parameters(), lr=1.0), tv.SGD(b.parameters(), lr=1.0)
    assert opt_a.flat[0] is not opt_b.flat[0]
    # A third optimizer over a subset takes those parameters into a new buffer: opt_a falls back to per-parameter
    # steps, and every parameter still moves by exactly lr * grad.
    sub = a.decoder.parameters()
    tv.SGD(sub, lr=1.0)
    assert not opt_a.flat[0].intact()
    for p in a.parameters():
        p.grad = B.ones(p.shape, "float64")
    before = [host(p.data) for p in a.parameters()]
    opt_a.step()
    for p, old in zip(a.parameters(), before):
        np.testing.assert_array_equal(host(p.data), old - 1.0)


def test_parameters_of_two_dtypes_get_one_buffer_each_and_duplicates_are_an_error():
    p32, p64 = tv.Parameter(B.zeros((2, 3), "float32")), tv.Parameter(B.zeros((4,), "float64"))
    bufs = flatten_parameters([p32, p64, tv.Parameter(B.ones((), "float32"))])
    assert [B.dtype_name(b.data.dtype) for b in bufs] == ["float32", "float64"] and bufs[0].data.shape == (7,)
    with pytest.raises(ValueError, match="appears more than once"):
        flatten_parameters([p32, p32])


def test_a_gradient_held_before_flattening_is_kept():
    p = tv.Parameter(B.zeros((3,), "float64"))
    p.accumulate(B.ones((3,), "float64"))
    flatten_parameters([p])
    p.accumulate(B.ones((3,), "float64"))
    np.testing.assert_array_equal(host(p.grad), [2.0, 2.0, 2.0])


# ---------------------------------------------------------------- the fast twins equal the plain formulas

def _draw(shape, scale=3.0, seed=0, dtype="float64"):
    return B.Generator(seed).standard_normal(shape, dtype) * scale


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-15), ("float32", 1e-6)])
def test_activation_twins_are_equal(dtype, rtol):
    x, dout = _draw((9, 13), dtype=dtype), _draw((9, 13), seed=1, dtype=dtype)
    y = activations.relu(x)
    assert_close(activations.relu_fast(x), y, 0)
    assert_close(activations.relu_backward_fast(dout, y), activations.relu_backward(dout, y), 0)
    assert_close(activations.sigmoid_fast(x), activations.sigmoid(x), rtol)
    edges = B.concat([x, B.asarray([[0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0, 1e4, -1e4, 0.5, -0.5, 3.0, -3.0, 1.0]],
                                   dtype=dtype)], axis=0)
    y_elu = activations.elu(edges)
    assert_close(activations.elu_fast(edges), y_elu, 0)  # the same bits: max(x, expm1(min(x, 0)))
    assert_close(activations.elu_backward_fast(B.concat([dout, dout[:1, :]], axis=0), y_elu),
                 activations.elu_backward(B.concat([dout, dout[:1, :]], axis=0), y_elu), 0)
    for a in (0.0, 0.01, 0.2, 1.0, 3.0):
        assert_close(activations.leaky_relu_fast(x, a), activations.leaky_relu(x, a), rtol)
        assert_close(activations.leaky_relu_backward_fast(dout, x, a), activations.leaky_relu_backward(dout, x, a),
                     rtol)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 2e-6)])
def test_loss_and_reparameterization_twins_are_equal(dtype, rtol):
    logits, target = _draw((6, 11), 5.0, dtype=dtype), B.Generator(3).random((6, 11), dtype)
    (v, g), (vf, gf) = losses.bce_with_logits(logits, target), losses.bce_with_logits_fast(logits, target)
    assert float(vf) == pytest.approx(v, rel=rtol) and isinstance(v, float)
    assert_close(gf, g, rtol)
    mu, logvar = _draw((5, 4), dtype=dtype), _draw((5, 4), 1.0, seed=4, dtype=dtype)
    (v, dm, dl), (vf, dmf, dlf) = losses.gaussian_kl(mu, logvar), losses.gaussian_kl_fast(mu, logvar)
    assert float(vf) == pytest.approx(v, rel=rtol)
    assert_close(dmf, dm, rtol) and assert_close(dlf, dl, rtol)
    eps, dz = _draw((5, 4), 1.0, seed=5, dtype=dtype), _draw((5, 4), 1.0, seed=6, dtype=dtype)
    (z, std), (zf, stdf) = reparam.reparameterize(mu, logvar, eps), reparam.reparameterize_fast(mu, logvar, eps)
    assert_close(zf, z, rtol) and assert_close(stdf, std, rtol)
    (dmu, dlv), (dmuf, dlvf) = (reparam.reparameterize_backward(dz, eps, std),
                                reparam.reparameterize_backward_fast(dz, eps, std))
    assert_close(dmuf, dmu, 0) and assert_close(dlvf, dlv, rtol)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.5, 0.01)])
def test_sgd_fast_equals_sgd_reference(momentum, weight_decay):
    p, buf = _draw((40, 30)), B.zeros((40, 30), "float64")
    p_ref, buf_ref = B.copy(p), B.copy(buf)
    for t in range(1, 20):
        g = _draw((40, 30), seed=t)
        p_ref, buf_ref = optim.sgd_reference(p_ref, g, buf_ref, 0.1, momentum, weight_decay)
        out = optim.sgd_fast(p, g, buf, 0.1, momentum, weight_decay)
        assert out[0] is p and out[1] is buf  # in place
    assert_close(p, p_ref, 1e-13) and assert_close(buf, buf_ref, 1e-13)


def test_adam_fast_equals_adam_reference_on_a_flat_array():
    n = 3 * B.cache_block("float64") + 17 if B.cache_block("float64") else 100_003  # several blocks on a CPU
    p, m, v = _draw((n,)), B.zeros((n,), "float64"), B.zeros((n,), "float64")
    ref = (B.copy(p), B.copy(m), B.copy(v))
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)
    for t in range(1, 30):
        g = _draw((n,), 10.0 ** (t % 7 - 4), seed=t)
        ref = optim.adam_reference(*ref[:1], g, *ref[1:], t, **kw)
        assert all(a is b for a, b in zip(optim.adam_fast(p, g, m, v, t, **kw), (p, m, v)))
    for got, want in zip((p, m, v), ref):
        assert_close(got, want, 1e-12)


# ---------------------------------------------------------------- labels

class _Labelled(tv.VAE):
    """A VAE that records the labels it is given (a stand-in for a conditional model)."""

    needs_labels = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def loss(self, x, y=None, eps=None, rng=None):
        self.seen.append(host(y).tolist())
        return super().loss(x, eps=eps, rng=rng)

    def loss_per_example(self, x, y=None, eps=None, rng=None):
        self.seen.append(host(y).tolist())
        return super().loss_per_example(x, eps=eps, rng=rng)


def test_fit_and_evaluate_pass_the_labels_of_each_batch_to_a_model_that_needs_them():
    x = B.Generator(0).random((10, 12), "float32")
    labels = np.arange(10) % 3
    model = _Labelled(12, hidden=(5,), latent_dim=2, rng=0)
    fit(model, x, 1, batch_size=4, y_train=labels, x_val=x[:6, :], y_val=labels[:6], progress=False)
    perm = B.to_numpy(B.Generator((0, 0)).permutation(10))
    assert model.seen[:3] == [labels[perm[a:a + 4]].tolist() for a in (0, 4, 8)]
    assert model.seen[3] == labels[:6].tolist()
    model.seen.clear()
    tv.evaluate(model, x, batch_size=4, labels=labels)
    assert model.seen == [labels[0:4].tolist(), labels[4:8].tolist(), labels[8:10].tolist()]
    with pytest.raises(ValueError, match="fit: y_train: _Labelled needs labels"):
        fit(model, x, 1, progress=False)
    with pytest.raises(ValueError, match=r"evaluate: labels: expected one label per example, shape \(10,\), got "
                                         r"shape \(9,\)"):
        tv.evaluate(model, x, labels=labels[:9])
    # A model without needs_labels ignores labels.
    assert tv.evaluate(vae("float32"), x, labels=labels) == tv.evaluate(vae("float32"), x)


def fit(*args, **kwargs):
    return tv.fit(*args, **kwargs)


# ---------------------------------------------------------------- the CuPy kernels (GPU only)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 2e-6)])
@pytest.mark.gpu
@pytest.mark.backends("cupy")
def test_every_kernel_equals_its_plain_formula(dtype, rtol):
    from tinyvae import kernels

    x, dout = _draw((64, 33), dtype=dtype), _draw((64, 33), seed=1, dtype=dtype)
    y = activations.relu(x)
    assert_close(kernels.relu_backward(dout, y), activations.relu_backward(dout, y), 0)
    for a in (0.0, 0.01, 3.0):
        assert_close(kernels.leaky_relu_forward(x, a), activations.leaky_relu(x, a), rtol)
        assert_close(kernels.leaky_relu_backward(dout, x, a), activations.leaky_relu_backward(dout, x, a), rtol)
    target = B.Generator(3).random((64, 33), dtype)
    (v, g), (vk, gk) = losses.bce_with_logits(x, target), kernels.bce_with_logits(x, target)
    assert float(vk) == pytest.approx(v, rel=rtol)
    assert_close(gk, g, rtol)
    mu, logvar, eps = _draw((64, 5), dtype=dtype), _draw((64, 5), 1.0, 4, dtype), _draw((64, 5), 1.0, 5, dtype)
    (v, dm, dl), (vk, dmk, dlk) = losses.gaussian_kl(mu, logvar), kernels.gaussian_kl(mu, logvar)
    assert float(vk) == pytest.approx(v, rel=rtol)
    assert_close(dmk, dm, rtol) and assert_close(dlk, dl, rtol)
    (z, std), (zk, stdk) = reparam.reparameterize(mu, logvar, eps), kernels.reparam_forward(mu, logvar, eps)
    assert_close(zk, z, rtol) and assert_close(stdk, std, rtol)
    dz = _draw((64, 5), 1.0, 6, dtype)
    assert_close(kernels.reparam_backward(dz, eps, std), reparam.reparameterize_backward(dz, eps, std)[1], rtol)


@pytest.mark.gpu
@pytest.mark.backends("cupy")
def test_the_adam_and_sgd_kernels_equal_their_references_over_many_steps():
    n = 652_824  # the reference VAE's parameter count: one flat buffer, one launch per step
    p, m, v = _draw((n,)), B.zeros((n,), "float64"), B.zeros((n,), "float64")
    ref = (B.copy(p), B.copy(m), B.copy(v))
    q, buf = B.copy(p), B.zeros((n,), "float64")
    sgd_ref = (B.copy(q), B.copy(buf))
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)
    for t in range(1, 30):
        g = _draw((n,), 10.0 ** (t % 7 - 4), seed=t)
        ref = optim.adam_reference(ref[0], g, ref[1], ref[2], t, **kw)
        optim.adam_fast(p, g, m, v, t, **kw)  # on CuPy: kernels.adam
        sgd_ref = optim.sgd_reference(sgd_ref[0], g, sgd_ref[1], 0.1, 0.9, 0.01)
        optim.sgd_fast(q, g, buf, 0.1, 0.9, 0.01)  # on CuPy: kernels.sgd
    for got, want in zip((p, m, v, q, buf), (*ref, *sgd_ref)):
        assert_close(got, want, 1e-12)


@pytest.mark.backends("numpy", "strict")
def test_the_kernels_refuse_to_run_off_the_gpu():
    from tinyvae import kernels

    with pytest.raises(RuntimeError, match="runs only under the cupy backend"):
        kernels.relu_backward(_draw((2, 2)), _draw((2, 2)))


# ---------------------------------------------------------------- the IWAE bound's fast log-likelihood

@pytest.mark.parametrize("dtype, atol_per_pixel", [("float64", 1e-15), ("float32", 2.0**-24)])
@pytest.mark.parametrize("d", [784, 13, 1])
def test_bce_per_example_fast_equals_the_plain_sum_within_its_documented_rounding(dtype, atol_per_pixel, d):
    logits, target = _draw((50, d), 6.0, dtype=dtype), B.Generator(3).random((50, d), dtype)
    plain = host(losses.bce_with_logits_per_example(logits, target))
    fast = host(losses.bce_with_logits_per_example_fast(logits, target))
    exact = host(losses.bce_with_logits_per_example(B.asarray(host(logits)), B.asarray(host(target))))  # float64
    # The log of products of 16 terms 1 + exp(-|l|) rounds each 1 + e once: at most d * 2^-24 (float32).
    assert np.abs(fast - exact).max() <= d * atol_per_pixel + 4 * np.abs(plain - exact).max() + 1e-12


def test_bce_per_example_fast_broadcasts_the_images_over_samples():
    xp = tv.get_xp()
    logits, target = _draw((4, 6, 20)), B.Generator(3).random((4, 20), "float64")
    got = losses.bce_with_logits_per_example_fast(logits, xp.expand_dims(target, axis=1))
    assert got.shape == (4, 6)
    for i in range(4):
        rows = xp.reshape(logits[i, :, :], (6, 20))
        want = losses.bce_with_logits_per_example(rows, xp.broadcast_to(xp.reshape(target[i, :], (1, 20)), (6, 20)))
        assert_close(got[i, :], want, 1e-13)


@pytest.mark.parametrize("shapes", [((60, 10, 40), (60, 1, 40)), ((3, 700, 40), (3, 1, 40)), ((300, 40), (300, 40))],
                         ids=str)
def test_bce_rows_with_grad_equals_the_per_example_bce_and_the_sigmoid_formula(shapes):
    xp = tv.get_xp()
    logits, target = _draw(shapes[0], 6.0, dtype="float64"), B.Generator(7).random(shapes[1], "float64")
    rows, grad = losses.bce_rows_with_grad_fast(logits, target)
    assert tuple(rows.shape) == shapes[0][:-1] and tuple(grad.shape) == shapes[0]
    flat = xp.reshape(logits, (-1, shapes[0][-1]))
    flat_target = xp.reshape(xp.broadcast_to(target, shapes[0]), (-1, shapes[0][-1]))
    assert_close(xp.reshape(rows, (-1,)), losses.bce_with_logits_per_example(flat, flat_target), 1e-13)
    assert_close(grad, 1.0 / (1.0 + xp.exp(-logits)) - target, 1e-13)


def test_bce_per_example_fast_in_row_blocks_gives_the_bits_of_one_pass():
    """The IWAE bound's rows go in cache-sized blocks; each row must come out as from one pass over all of them."""
    logits, target = _draw((3, 700, 40), 6.0, dtype="float32"), B.Generator(3).random((3, 1, 40), "float32")
    flat, flat_target = _draw((1100, 40), 6.0, seed=2, dtype="float32"), B.Generator(4).random((1100, 40), "float32")
    assert 700 > losses.BLOCK_ROWS and 1100 > 4 * losses.BLOCK_ROWS  # several blocks, and a short last one
    if B.backend_name() != "cupy":  # CuPy takes all rows in one reduction kernel (tests/test_cupy_paths.py)
        blocked = host(losses.bce_with_logits_per_example_fast(logits, target))
        assert blocked.shape == (3, 700)
        np.testing.assert_array_equal(blocked, host(losses._bce_rows_fast(logits, target)[0]))
        blocked = host(losses.bce_with_logits_per_example_fast(flat, flat_target))
        assert blocked.shape == (1100,)
        np.testing.assert_array_equal(blocked, host(losses._bce_rows_fast(flat, flat_target)[0]))
    few = _draw((60, 10, 40), 6.0, seed=5, dtype="float32")  # M2's C = 10 rows per image: whole images per block
    few_target = B.Generator(6).random((60, 1, 40), "float32")
    assert 60 * 10 > 2 * losses.BLOCK_ROWS and losses.BLOCK_ROWS % 10  # several blocks of images, a short last one
    if B.backend_name() != "cupy":
        blocks = losses._row_block_pairs(few, few_target, losses.BLOCK_ROWS)
        assert [tuple(b.shape) for b, _ in blocks] == [(25, 10, 40), (25, 10, 40), (10, 10, 40)]
        np.testing.assert_array_equal(host(losses.bce_with_logits_per_example_fast(few, few_target)),
                                      host(losses._bce_rows_fast(few, few_target)[0]))
    for x, t in ((logits, target), (flat, flat_target)):  # CuPy's size None: all rows in one block
        assert [tuple(a.shape) for a in losses._row_block_pairs(x, t, None)[0]] == [tuple(x.shape), tuple(t.shape)]
    for shapes in [((2, 3, 4, 5), (2, 3, 4, 5)), ((6, 5), (4, 5)), ((6, 5), (6, 4)), ((2, 3, 5), (1, 3, 5))]:
        with pytest.raises(ValueError, match=r"expected logits \(N, D\) with targets .* got " + re.escape(
                f"{shapes[0]} and {shapes[1]}")):
            losses.bce_with_logits_per_example_fast(_draw(shapes[0]), _draw(shapes[1], seed=1))


# ---------------------------------------------------------------- deferred loss checks (the GPU's default)

def test_deferred_checks_give_the_same_training_and_name_the_first_non_finite_step(monkeypatch):
    x = B.Generator(0).random((32, 12), "float32")
    every_step = fit(vae("float32"), x, 3, batch_size=8, progress=False)
    deferred_model = vae("float32")
    deferred = fit(deferred_model, x, 3, batch_size=8, progress=False, check_every=3)
    assert every_step.train_loss == deferred.train_loss and every_step.train_kl == deferred.train_kl

    model, reference = vae("float32"), vae("float32")
    fit(reference, x, 1, batch_size=8, progress=False)  # the weights after epoch 1, the last check before the inf
    original, calls = model.loss, []

    def loss(xb, rng=None):
        calls.append(1)
        parts = original(xb, rng=rng)
        return tv.LossParts(np.inf, parts.recon, parts.kl) if len(calls) == 7 else parts  # epoch 2, step 3

    monkeypatch.setattr(model, "loss", loss)
    with pytest.raises(FloatingPointError, match=r"inf at epoch 2, step 3 of 4.*weights restored to step 0 of that "
                                                 r"epoch: checks run every 4 steps"):
        fit(model, x, 3, batch_size=8, progress=False, check_every=4)
    assert len(calls) == 8  # the check ran after step 4, the epoch's last
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(host(p.data), host(q.data))
    with pytest.raises(ValueError, match="check_every must be an int >= 1"):
        fit(model, x, 1, check_every=0, progress=False)


def test_accumulate_product_is_grad_plus_a_at_b_in_and_out_of_a_buffer():
    gen = B.Generator(0)
    a, b = gen.standard_normal((5, 3), "float64"), gen.standard_normal((5, 4), "float64")
    want = host(a).T @ host(b)
    for flat in (False, True):
        p = tv.Parameter(B.zeros((3, 4), "float64"))
        if flat:
            flatten_parameters([p])
        p.accumulate_product(a.T, b)       # after zero_grad: written in place (inside a buffer)
        p.accumulate_product(a.T, b)       # then added
        np.testing.assert_allclose(host(p.grad), 2 * want, rtol=1e-14)
        assert p._flat is None or p._flat.intact()
        with pytest.raises(ValueError, match="expected a gradient of shape"):
            p.zero_grad()
            p.accumulate_product(a.T, a)
