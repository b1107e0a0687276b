"""Tests for SGD, Adam and clip_grad_norm: steps computed by hand, the fast Adam against its formula (and against
torch.optim.Adam where torch is installed), convergence on a quadratic bowl, exact resumption, dtypes, errors."""
import math

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import optim


def param(values, dtype="float64"):
    return tv.Parameter(tv.asarray(np.asarray(values, dtype=np.float64), dtype=dtype))


def values(p):
    return B.to_numpy(p.data).tolist()


def set_grad_of_square(p):
    """The gradient of f(p) = sum p^2, i.e. 2 p, as the backward pass would leave it."""
    p.grad[...] = 2.0 * p.data


# ---------------------------------------------------------------- steps by hand

def test_sgd_steps_by_hand():
    p = param([1.0])
    opt = tv.SGD([p], lr=0.1)
    set_grad_of_square(p)
    opt.step()
    assert values(p) == [1.0 - 0.1 * 2.0]          # p - lr * 2p = 0.8
    set_grad_of_square(p)
    opt.step()
    assert values(p) == pytest.approx([0.8 - 0.1 * 1.6], rel=1e-15)  # 0.64


def test_sgd_with_momentum_and_weight_decay_by_hand():
    # g = 2p + 0.01 p;  buf = 0.9 buf + g;  p = p - 0.1 buf   (torch.optim.SGD, buf starting at g)
    # step 1: g = 2.01,                   buf = 2.01,                        p = 1 - 0.201          = 0.799
    # step 2: g = 2.01 * 0.799 = 1.60599, buf = 1.809 + 1.60599 = 3.41499,   p = 0.799 - 0.341499   = 0.457501
    # step 3: g = 2.01 * 0.457501 = 0.91957701, buf = 3.073491 + 0.91957701 = 3.99306801,
    #                                                                         p = 0.457501 - 0.399306801 = 0.058194199
    p = param([1.0])
    opt = tv.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    for expected in (0.799, 0.457501, 0.058194199):
        set_grad_of_square(p)
        opt.step()
        assert values(p) == pytest.approx([expected], rel=1e-14)
    assert opt.t == 3


def test_adam_steps_by_hand():
    # f(p) = p^2 for each entry, lr = 0.1, betas (0.9, 0.999), eps 1e-8; bias-corrected moments m / (1 - b1^t),
    # v / (1 - b2^t). On step 1 the update is lr * g / (|g| + eps): every entry moves by lr against its gradient's sign.
    p = param([1.0, -3.0])
    opt = tv.Adam([p], lr=0.1)
    p0 = [1.0, -3.0]
    g1 = [2 * x for x in p0]
    m1 = [0.1 * g for g in g1]
    v1 = [0.001 * g * g for g in g1]
    p1 = [x - 0.1 * (m / 0.1) / (math.sqrt(v / 0.001) + 1e-8) for x, m, v in zip(p0, m1, v1)]
    g2 = [2 * x for x in p1]
    m2 = [0.9 * m + 0.1 * g for m, g in zip(m1, g2)]
    v2 = [0.999 * v + 0.001 * g * g for v, g in zip(v1, g2)]
    p2 = [x - 0.1 * (m / (1 - 0.9**2)) / (math.sqrt(v / (1 - 0.999**2)) + 1e-8) for x, m, v in zip(p1, m2, v2)]
    g3 = [2 * x for x in p2]
    m3 = [0.9 * m + 0.1 * g for m, g in zip(m2, g3)]
    v3 = [0.999 * v + 0.001 * g * g for v, g in zip(v2, g3)]
    p3 = [x - 0.1 * (m / (1 - 0.9**3)) / (math.sqrt(v / (1 - 0.999**3)) + 1e-8) for x, m, v in zip(p2, m3, v3)]
    assert p1 == pytest.approx([0.9, -2.9], abs=1e-8)  # the sign step
    for expected in (p1, p2, p3):
        set_grad_of_square(p)
        opt.step()
        assert values(p) == pytest.approx(expected, rel=1e-13)
    assert B.to_numpy(opt.state["m"][0]).tolist() == pytest.approx(m3, rel=1e-13)
    assert B.to_numpy(opt.state["v"][0]).tolist() == pytest.approx(v3, rel=1e-13)


def test_adam_weight_decay_by_hand():
    # weight_decay adds wd * p to the gradient before the moments (torch's L2 form, not AdamW's decoupled decay).
    p = param([2.0])
    opt = tv.Adam([p], lr=0.01, betas=(0.5, 0.75), eps=1e-3, weight_decay=0.5)
    g1 = 2 * 2.0 + 0.5 * 2.0                                  # 5.0
    m1, v1 = 0.5 * g1, 0.25 * g1 * g1                          # 2.5, 6.25
    p1 = 2.0 - 0.01 * (m1 / 0.5) / (math.sqrt(v1 / 0.25) + 1e-3)  # 2 - 0.01 * 5 / 5.001
    g2 = 2 * p1 + 0.5 * p1
    m2, v2 = 0.5 * m1 + 0.5 * g2, 0.75 * v1 + 0.25 * g2 * g2
    p2 = p1 - 0.01 * (m2 / (1 - 0.5**2)) / (math.sqrt(v2 / (1 - 0.75**2)) + 1e-3)
    for expected in (p1, p2):
        set_grad_of_square(p)
        opt.step()
        assert values(p) == pytest.approx([expected], rel=1e-13)


# ---------------------------------------------------------------- the fast Adam is the formula (and torch's)

@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fast_adam_equals_the_reference_over_many_steps(weight_decay):
    rng = B.Generator(3)
    shapes = [(5, 3), (4,), (100, 700), (40_000,)]
    params = [tv.Parameter(rng.standard_normal(shape, "float64")) for shape in shapes]
    ref = [B.copy(p.data) for p in params]
    moments = [[tv.get_xp().zeros_like(p.data) for p in params] for _ in range(2)]
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    opt = tv.Adam(params, **kw)
    # On a CPU the flat buffer (110,019 float64s) is updated block by block (backend.cache_block: 32768 of them);
    # on a GPU in one kernel. Either way the result must be the formula's.
    block = B.cache_block("float64")
    assert len(optim._row_blocks(opt.flat[0].data, block)) == (1 if block is None else 4)
    for t in range(1, 201):
        scale = 10.0 ** (t % 9 - 6)  # gradients from 1e-6 to 1e2: eps matters in some steps, not in others
        for i, p in enumerate(params):
            p.grad[...] = rng.standard_normal(tuple(p.shape), "float64") * scale
            ref[i], moments[0][i], moments[1][i] = optim.adam_reference(ref[i], p.grad, moments[0][i],
                                                                        moments[1][i], t, **kw)
        opt.step()
    # Compared array by array (max |a - b| <= 1e-12 max |b|): an entry that passes near 0 keeps the roundings of
    # the larger values it was computed from, so entry by entry relative errors would measure only that.
    for i, p in enumerate(params):
        for got, want in ((p.data, ref[i]), (opt.state["m"][i], moments[0][i]), (opt.state["v"][i], moments[1][i])):
            got, want = B.to_numpy(got), B.to_numpy(want)
            assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max(), (shapes[i], np.abs(got - want).max())


@pytest.mark.parametrize("shape", [(), (1,), (7,), (10, 3), (9, 2, 2), (3, 50)])
@pytest.mark.parametrize("size", [None, 1, 4, 12, 1000])
def test_row_blocks_cover_every_element_once_in_views(shape, size):
    a = B.zeros(shape, "float64")
    blocks = optim._row_blocks(a, size)
    for i, index in enumerate(blocks):
        view = a[index]
        assert size is None or len(blocks) == 1 or math.prod(view.shape) <= max(size, math.prod(shape[1:]))
        view += float(i + 1)  # lands in a: the blocks are views
    counts = B.to_numpy(a)
    assert counts.min() >= 1  # every element in some block ...
    host = np.zeros(shape)
    for i, index in enumerate(blocks):
        host[index] += 1
    assert host.max() == 1  # ... and in one only


@pytest.mark.backends("numpy")
def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal((4, 3)), rng.standard_normal((6, 4, 3))
    p = param(w0)
    opt = tv.Adam([p], lr=0.05, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.1)
    tw = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.05, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.1)
    for g in grads:
        p.grad[...] = g
        opt.step()
        tw.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
        np.testing.assert_allclose(B.to_numpy(p.data), tw.detach().numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- convergence on a quadratic bowl

def _bowl():
    """f(p) = 1/2 ||A p - b||^2 with A well conditioned: gradient A^T (A p - b), minimum at A^-1 b."""
    A = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    b = np.array([1.0, -2.0, 0.5])
    return tv.asarray(A), tv.asarray(b), np.linalg.solve(A, b)


def _descend(make_optimizer, steps, start=(0.0, 0.0, 0.0)):
    A, b, optimum = _bowl()
    xp = tv.get_xp()
    p = param(start)
    opt = make_optimizer([p])
    for _ in range(steps):
        opt.zero_grad()
        p.grad += xp.matmul(xp.matrix_transpose(A), xp.matmul(A, p.data) - b)
        opt.step()
    return B.to_numpy(p.data), optimum


@pytest.mark.parametrize("make, steps", [
    (lambda ps: tv.SGD(ps, lr=0.05), 400),
    (lambda ps: tv.SGD(ps, lr=0.05, momentum=0.9), 200),
    (lambda ps: tv.Adam(ps, lr=0.05), 600),
])
def test_optimizers_find_the_minimum_of_a_bowl(make, steps):
    found, optimum = _descend(make, steps)
    assert np.abs(found - optimum).max() < 1e-4, (found, optimum)


def test_weight_decay_moves_the_minimum_toward_zero():
    # With decay wd the minimum of 1/2 ||A p - b||^2 + wd/2 ||p||^2 solves (A^T A + wd I) p = A^T b.
    A, b, _ = _bowl()
    A, b = B.to_numpy(A), B.to_numpy(b)
    found, _ = _descend(lambda ps: tv.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.5), 300)
    np.testing.assert_allclose(found, np.linalg.solve(A.T @ A + 0.5 * np.eye(3), A.T @ b), atol=1e-6)


# ---------------------------------------------------------------- resuming from a state dict

@pytest.mark.parametrize("make", [lambda ps: tv.SGD(ps, lr=0.02, momentum=0.9, weight_decay=0.01),
                                  lambda ps: tv.Adam(ps, lr=0.05, weight_decay=0.01)])
def test_a_resumed_optimizer_continues_exactly(make):
    A, b, _ = _bowl()
    xp = tv.get_xp()

    def run(p, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            p.grad += xp.matmul(xp.matrix_transpose(A), xp.matmul(A, p.data) - b)
            opt.step()

    p = param([0.5, 0.5, 0.5])
    straight = make([p])
    run(p, straight, 9)

    q = param([0.5, 0.5, 0.5])
    first = make([q])
    run(q, first, 4)
    state, saved = first.state_dict(), B.to_numpy(q.data).copy()
    host_state = {**state, "buffers": {k: B.to_numpy(v) for k, v in state["buffers"].items()}}  # as on disk
    run(q, first, 2)  # the saved state is a copy: going on must not change it
    r = param(saved)
    resumed = make([r])
    resumed.load_state_dict(host_state)
    assert resumed.t == 4
    run(r, resumed, 5)
    np.testing.assert_array_equal(B.to_numpy(r.data), B.to_numpy(p.data))


def test_optimizer_state_keeps_hyperparameters():
    p = param([1.0])
    opt = tv.Adam([p], lr=0.3, betas=(0.5, 0.6), eps=1e-4, weight_decay=0.2)
    other = tv.Adam([param([0.0])])
    other.load_state_dict(opt.state_dict())
    assert (other.lr, other.betas, other.eps, other.weight_decay) == (0.3, (0.5, 0.6), 1e-4, 0.2)


def test_mismatched_optimizer_state_is_a_clear_error():
    a, b = param([1.0, 2.0]), param([3.0])
    with pytest.raises(ValueError, match="Adam.load_state_dict: the state is for a 'SGD'"):
        tv.Adam([a]).load_state_dict(tv.SGD([a], lr=0.1).state_dict())
    with pytest.raises(ValueError, match=r"holds buffers \['m.0', 'm.1', 'v.0', 'v.1'\], expected \['m.0', 'v.0'\] "
                                         r"\(was it saved for a different model\?\)"):
        tv.Adam([a]).load_state_dict(tv.Adam([a, b]).state_dict())
    with pytest.raises(ValueError, match=r"m.0 has shape \(1,\), expected \(2,\)"):
        tv.Adam([a]).load_state_dict(tv.Adam([b]).state_dict())


def test_optimizer_constructor_errors():
    with pytest.raises(ValueError, match="SGD got an empty parameter list"):
        tv.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"Adam takes Parameters \(model.parameters\(\)\), got "):
        tv.Adam([B.zeros((2,))])
    for lr in (0.0, -1.0):
        with pytest.raises(ValueError, match="lr must be positive"):
            tv.SGD([param([1.0])], lr=lr)
    with pytest.raises(ValueError, match=r"betas must lie in \[0, 1\)"):
        tv.Adam([param([1.0])], betas=(0.9, 1.0))


# ---------------------------------------------------------------- dtypes and clipping

@pytest.mark.parametrize("make", [lambda ps: tv.Adam(ps, lr=0.01, weight_decay=0.1),
                                  lambda ps: tv.SGD(ps, lr=0.01, momentum=0.9, weight_decay=0.1)])
def test_steps_keep_float32(make, xp):
    model = tv.VAE(6, (4,), 2, rng=0)
    model.loss(B.Generator(1).random((3, 6)), rng=2)
    model.backward()
    opt = make(model.parameters())
    for _ in range(2):
        opt.step()
    assert all(p.data.dtype == xp.float32 and p.grad.dtype == xp.float32 for p in model.parameters())
    assert all(a.dtype == xp.float32 for arrays in opt.state.values() for a in arrays)


def test_clip_grad_norm_scales_to_max_norm():
    a, b = param([0.0, 0.0]), param([0.0])
    a.grad[...] = tv.asarray([3.0, 0.0], dtype="float64")
    b.grad[...] = tv.asarray([4.0], dtype="float64")  # joint norm 5 over both parameters
    total = tv.clip_grad_norm([a, b], max_norm=1.0)
    assert total == 5.0  # the norm before clipping
    clipped = np.concatenate([B.to_numpy(a.grad), B.to_numpy(b.grad)])
    assert np.linalg.norm(clipped) == pytest.approx(1.0, abs=1e-6)  # torch's 1e-6 guard in the denominator
    np.testing.assert_allclose(clipped / np.linalg.norm(clipped), [0.6, 0.0, 0.8], rtol=1e-12)  # same direction


def test_clip_grad_norm_leaves_small_gradients_alone():
    a = param([0.0, 0.0])
    a.grad[...] = tv.asarray([0.3, -0.4], dtype="float64")
    assert float(tv.clip_grad_norm([a], max_norm=1.0)) == pytest.approx(0.5, rel=1e-15)  # 0-d array on CuPy
    assert values(a) == [0.0, 0.0] and B.to_numpy(a.grad).tolist() == [0.3, -0.4]


def test_clip_grad_norm_keeps_float32(xp):
    a = tv.Parameter(B.zeros((3,)))
    a.grad[...] = 10.0
    tv.clip_grad_norm([a], max_norm=1.0)
    assert a.grad.dtype == xp.float32
