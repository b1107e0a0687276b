"""Tests for Conv2d, ConvTranspose2d, im2col / col2im, Flatten and Unflatten: forward against a direct loop
convolution (host NumPy, float64) on small odd shapes, backward by centered differences in float64 (threshold 1e-7,
the library's), the fast twins against the plain forms, PyTorch's outputs for copied weights, and the errors."""
import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import conv
from tinyvae.gradcheck import check_module

# (N, C, H, W, F, k, stride, padding): odd sizes, batch of one, stride 1 and 2, padding 0 and 1, several channels
SHAPES = [
    (2, 3, 5, 7, 4, 3, 1, 0),
    (1, 2, 7, 5, 3, 3, 2, 1),
    (3, 1, 6, 6, 2, 2, 2, 0),
    (1, 3, 5, 5, 2, (3, 2), 1, 1),
    (2, 2, 9, 7, 3, 4, 2, 1),
]
# output_padding 0 for every shape, and 1 where the stride allows it (it must be smaller than the stride)
TRANSPOSED = [(shape, 0) for shape in SHAPES] + [(shape, 1) for shape in SHAPES if shape[6] > 1]


def images(shape, seed=0, dtype="float64"):
    return B.Generator(seed).standard_normal(shape, dtype)


def assert_passes(report, names):
    assert [c.name.rsplit(" ", 1)[-1] for c in report] == names
    assert report.passed, "\n" + str(report)


def kernel(k):
    return (k, k) if isinstance(k, int) else k


# ---------------------------------------------------------------- direct loop definitions (host NumPy)

def direct_conv2d(x, W, b, stride, padding):
    """y[n, f, i, j] = b[f] + sum_{c, a, b'} W[f, c, a, b'] xpad[n, c, i*s + a, j*s + b'], one output pixel at a time."""
    n, c, h, w = x.shape
    f, _, kh, kw = W.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    y = np.zeros((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xpad[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.einsum("ncab,fcab->nf", window, W) + b
    return y


def direct_conv_transpose2d(x, W, b, stride, padding, output_padding):
    """Each input pixel x[n, c, i, j] paints W[c] (F, kh, kw) onto the output at (i*s, j*s); the padding is cut off."""
    n, c, h, w = x.shape
    _, f, kh, kw = W.shape
    full = np.zeros((n, f, (h - 1) * stride + kh + output_padding, (w - 1) * stride + kw + output_padding))
    for i in range(h):
        for j in range(w):
            full[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum("nc,cfab->nfab",
                                                                                           x[:, :, i, j], W)
    oh, ow = full.shape[2] - 2 * padding, full.shape[3] - 2 * padding
    return full[:, :, padding:padding + oh, padding:padding + ow] + b[None, :, None, None]


# ---------------------------------------------------------------- forward against the loops

@pytest.mark.parametrize("shape", SHAPES)
def test_conv2d_forward_matches_direct_loop(shape):
    n, c, h, w, f, k, s, p = shape
    layer = conv.Conv2d(c, f, k, stride=s, padding=p, rng=1, dtype="float64")
    x = images((n, c, h, w))
    y = B.to_numpy(layer.forward(x))
    expected = direct_conv2d(B.to_numpy(x), B.to_numpy(layer.W.data), B.to_numpy(layer.b.data), s, p)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, output_padding", TRANSPOSED)
def test_conv_transpose2d_forward_matches_direct_loop(shape, output_padding):
    n, c, h, w, f, k, s, p = shape
    layer = conv.ConvTranspose2d(c, f, k, stride=s, padding=p, output_padding=output_padding, rng=2, dtype="float64")
    x = images((n, c, h, w))
    y = B.to_numpy(layer.forward(x))
    expected = direct_conv_transpose2d(B.to_numpy(x), B.to_numpy(layer.W.data), B.to_numpy(layer.b.data), s, p,
                                       output_padding)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- backward by centered differences (float64)

@pytest.mark.parametrize("shape", SHAPES)
def test_conv2d_gradients(shape):
    n, c, h, w, f, k, s, p = shape
    layer = conv.Conv2d(c, f, k, stride=s, padding=p, rng=3, dtype="float64")
    assert_passes(check_module(layer, images((n, c, h, w), seed=4), rng=5), ["dx", "dW", "db"])


@pytest.mark.parametrize("shape, output_padding", TRANSPOSED)
def test_conv_transpose2d_gradients(shape, output_padding):
    n, c, h, w, f, k, s, p = shape
    layer = conv.ConvTranspose2d(c, f, k, stride=s, padding=p, output_padding=output_padding, rng=6, dtype="float64")
    assert_passes(check_module(layer, images((n, c, h, w), seed=7), rng=8), ["dx", "dW", "db"])


@pytest.mark.parametrize("padding, output_padding, bias_only", [(1, 1, 0), (0, 1, 1), (1, 2, 1), (2, 2, 0)])
def test_output_padding_rows_get_only_the_bias_only_beyond_the_padding(padding, output_padding, bias_only):
    """The last output_padding - padding rows and columns (none when padding >= output_padding, as in the
    ConvVAE's stride-2, padding-1, output_padding-1 decoder) are reached by no window; every other one is."""
    layer = conv.ConvTranspose2d(2, 3, 3, stride=3, padding=padding, output_padding=output_padding, rng=9,
                                 dtype="float64")
    x = images((2, 2, 4, 5), seed=10)
    from_x = B.to_numpy(layer.forward(2.0 * x) - layer.forward(x))   # the windows' part: the bias cancels
    rows, cols = np.abs(from_x).max(axis=(0, 1, 3)), np.abs(from_x).max(axis=(0, 1, 2))
    for reached, size in ((rows, 4), (cols, 5)):
        assert len(reached) == (size - 1) * 3 + 3 + output_padding - 2 * padding
        np.testing.assert_array_equal(reached[len(reached) - bias_only:] == 0.0, True)   # the bias alone
        assert (reached[:len(reached) - bias_only] > 1e-3).all()                         # windows reach these


def test_flatten_unflatten_gradients_and_order():
    x = images((2, 3, 4, 5))
    flat = conv.Flatten()
    y = flat.forward(x)
    np.testing.assert_array_equal(B.to_numpy(y), B.to_numpy(x).reshape(2, 60))  # channel, row, column: torch's order
    assert_passes(check_module(flat, x), ["dx"])
    unflat = conv.Unflatten(3, 4, 5)
    np.testing.assert_array_equal(B.to_numpy(unflat.forward(y)), B.to_numpy(x))
    assert_passes(check_module(unflat, y), ["dx"])


def test_a_stack_of_conv_layers_passes_its_gradient_check():
    net = tv.Sequential(conv.Conv2d(2, 3, 3, stride=2, padding=1, rng=0, dtype="float64"), tv.Tanh(),
                        conv.Flatten(), conv.Unflatten(3, 4, 3),
                        conv.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, rng=1, dtype="float64"))
    x = images((2, 2, 7, 6), seed=9)
    assert tuple(net.forward(x).shape) == (2, 2, 8, 6)
    report = check_module(net, x)
    assert len(report) == 5 and report.passed, "\n" + str(report)


def test_input_grad_false_skips_dx_and_keeps_parameter_gradients():
    layer = conv.Conv2d(2, 3, 3, padding=1, rng=0, dtype="float64")
    x = images((2, 2, 5, 5))
    layer.forward(x)
    full = layer.backward(images((2, 3, 5, 5), seed=1))
    dW = B.copy(layer.W.grad)
    layer.zero_grad()
    layer.input_grad = False
    layer.forward(x)
    assert layer.backward(images((2, 3, 5, 5), seed=1)) is None and full is not None
    np.testing.assert_allclose(B.to_numpy(layer.W.grad), B.to_numpy(dW), rtol=1e-14)


# ---------------------------------------------------------------- the fast twins equal the plain forms

@pytest.mark.parametrize("shape", SHAPES)
def test_im2col_fast_equals_im2col(shape):
    n, c, h, w, _, k, s, p = shape
    kh, kw = kernel(k)
    x = images((n, c, h, w), seed=10)
    plain, fast = conv.im2col(x, kh, kw, s, p), conv.im2col_fast(x, kh, kw, s, p)
    oh, ow = conv.conv_output_size(h, kh, s, p), conv.conv_output_size(w, kw, s, p)
    assert tuple(plain.shape) == (n * oh * ow, c * kh * kw)
    np.testing.assert_array_equal(B.to_numpy(fast), B.to_numpy(plain))


@pytest.mark.parametrize("shape", SHAPES)
def test_col2im_fast_equals_col2im_and_is_the_adjoint_of_im2col(shape):
    n, c, h, w, _, k, s, p = shape
    kh, kw = kernel(k)
    x = images((n, c, h, w), seed=11)
    cols = images(tuple(conv.im2col(x, kh, kw, s, p).shape), seed=12)
    plain, fast = conv.col2im(cols, (n, c, h, w), kh, kw, s, p), conv.col2im_fast(cols, (n, c, h, w), kh, kw, s, p)
    np.testing.assert_allclose(B.to_numpy(fast), B.to_numpy(plain), rtol=1e-13, atol=1e-13)
    # <im2col(x), cols> = <x, col2im(cols)>: col2im is the transpose of the linear map im2col
    lhs = float(np.sum(B.to_numpy(conv.im2col(x, kh, kw, s, p)) * B.to_numpy(cols)))
    rhs = float(np.sum(B.to_numpy(x) * B.to_numpy(plain)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_channels_last_im2col_and_unfolded_col2im_are_the_same_numbers(shape):
    """The layers' layout: rows ordered (kh, kw, C), and col2im given the (M, C, kh, kw) view of such rows."""
    n, c, h, w, _, k, s, p = shape
    kh, kw = kernel(k)
    x = images((n, c, h, w), seed=14)
    plain = B.to_numpy(conv.im2col(x, kh, kw, s, p))
    last = B.to_numpy(conv.im2col_fast(x, kh, kw, s, p, channels_last=True))
    np.testing.assert_array_equal(last, plain.reshape(-1, c, kh, kw).transpose(0, 2, 3, 1).reshape(plain.shape))
    cols = images((plain.shape[0], kh * kw * c), seed=15)
    unfolded = conv._unfolded(cols, c, kh, kw)                  # (M, C, kh, kw), a view of the (kh, kw, C) rows
    as_matrix = tv.asarray(B.to_numpy(unfolded).reshape(plain.shape))
    expected = B.to_numpy(conv.col2im(as_matrix, (n, c, h, w), kh, kw, s, p))
    for fn in (conv.col2im, conv.col2im_fast):
        np.testing.assert_allclose(B.to_numpy(fn(unfolded, (n, c, h, w), kh, kw, s, p)), expected,
                                   rtol=1e-13, atol=1e-13)


def test_im2col_of_a_4x4_image_lists_its_windows():
    x = tv.asarray(np.arange(16.0).reshape(1, 1, 4, 4))
    cols = B.to_numpy(conv.im2col(x, 2, 2, stride=2))
    np.testing.assert_array_equal(cols, [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])


def test_float32_layers_stay_float32():
    layer = conv.Conv2d(1, 2, 3, stride=2, padding=1, rng=0)
    up = conv.ConvTranspose2d(2, 1, 3, stride=2, padding=1, output_padding=1, rng=0)
    y = up.forward(layer.forward(images((2, 1, 6, 6), dtype="float32")))
    assert B.dtype_name(y.dtype) == "float32" and tuple(y.shape) == (2, 1, 6, 6)
    dx = layer.backward(up.backward(y))
    assert B.dtype_name(dx.dtype) == "float32" and B.dtype_name(layer.W.grad.dtype) == "float32"


# ---------------------------------------------------------------- PyTorch's shapes, initialisation and outputs

@pytest.mark.backends("numpy")
@pytest.mark.parametrize("shape", SHAPES)
def test_outputs_match_torch_for_copied_weights(shape):
    torch = pytest.importorskip("torch")
    n, c, h, w, f, k, s, p = shape
    x = images((n, c, h, w), seed=13)
    ours = conv.Conv2d(c, f, k, stride=s, padding=p, rng=0, dtype="float64")
    theirs = torch.nn.Conv2d(c, f, k, stride=s, padding=p).double()
    up = conv.ConvTranspose2d(f, c, k, stride=s, padding=p, output_padding=s - 1, rng=0, dtype="float64")
    up_theirs = torch.nn.ConvTranspose2d(f, c, k, stride=s, padding=p, output_padding=s - 1).double()
    for mine, module in ((ours, theirs), (up, up_theirs)):
        assert mine.W.shape == tuple(module.weight.shape) and mine.b.shape == tuple(module.bias.shape)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(B.to_numpy(mine.W.data)))
            module.bias.copy_(torch.from_numpy(B.to_numpy(mine.b.data)))
    y = ours.forward(x)
    with torch.no_grad():
        ty = theirs(torch.from_numpy(B.to_numpy(x)))
        tz = up_theirs(ty)
    np.testing.assert_allclose(B.to_numpy(y), ty.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(B.to_numpy(up.forward(y)), tz.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.backends("numpy")
def test_initialisation_bounds_are_torchs():
    layer = conv.Conv2d(8, 16, 3, rng=0, dtype="float64")
    up = conv.ConvTranspose2d(16, 4, 5, rng=0, dtype="float64")
    for p, bound in ((layer.W, 1 / np.sqrt(8 * 9)), (layer.b, 1 / np.sqrt(8 * 9)),
                     (up.W, 1 / np.sqrt(4 * 25)), (up.b, 1 / np.sqrt(4 * 25))):
        values = B.to_numpy(p.data)
        assert np.abs(values).max() <= bound
        assert values.size < 100 or np.abs(values).max() > 0.9 * bound  # the weights fill the interval
    assert layer.W.shape == (16, 8, 3, 3) and up.W.shape == (16, 4, 5, 5)


# ---------------------------------------------------------------- errors

def test_clear_errors_for_bad_input():
    layer = conv.Conv2d(3, 4, 3, stride=2)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4, .*\) expects images of shape \(N, 3, H, W\); got shape "
                                         r"\(3, 5, 5\) \(add the batch axis"):
        layer.forward(images((3, 5, 5), dtype="float32"))
    with pytest.raises(ValueError, match=r"expects 3 input channels, shape \(N, 3, H, W\); got shape \(2, 1, 5, 5\)"):
        layer.forward(images((2, 1, 5, 5), dtype="float32"))
    with pytest.raises(ValueError, match="the 3x3 kernel does not fit in an input of 2x5 pixels with padding 0"):
        layer.forward(images((2, 3, 2, 5), dtype="float32"))
    with pytest.raises(TypeError, match="holds float32 parameters but got float64 input"):
        layer.forward(images((2, 3, 5, 5)))
    with pytest.raises(RuntimeError, match="backward was called before Conv2d.forward"):
        conv.Conv2d(1, 1, 1).backward(images((1, 1, 1, 1)))
    layer.forward(images((2, 3, 5, 5), dtype="float32"))
    with pytest.raises(ValueError, match=r"backward expects dout of shape \(2, 4, 2, 2\); got \(2, 4, 3, 3\)"):
        layer.backward(images((2, 4, 3, 3), dtype="float32"))
    with pytest.raises(ValueError, match=r"expected cols of shape \(8, 27\)"):
        conv.col2im(images((9, 27)), (2, 3, 5, 5), 3, 3, 2, 0)


def test_clear_errors_for_bad_arguments():
    with pytest.raises(ValueError, match="Conv2d: stride must be an int >= 1, got 0"):
        conv.Conv2d(1, 2, 3, stride=0)
    with pytest.raises(ValueError, match="Conv2d: padding must be an int >= 0, got -1"):
        conv.Conv2d(1, 2, 3, padding=-1)
    with pytest.raises(ValueError, match="ConvTranspose2d: in_channels must be an int >= 1, got 0"):
        conv.ConvTranspose2d(0, 2, 3)
    with pytest.raises(ValueError, match=r"output_padding must be smaller than stride \(2\), got 2"):
        conv.ConvTranspose2d(1, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"gives an empty output \(-1x-1\): the padding is too large"):
        conv.ConvTranspose2d(1, 1, 1, padding=1).forward(images((1, 1, 1, 1), dtype="float32"))
    with pytest.raises(ValueError, match=r"Unflatten\(2, 3\) expects input of shape \(N, 6\); got shape \(4, 5\)"):
        conv.Unflatten(2, 3).forward(images((4, 5)))


@pytest.mark.gpu
def test_conv_layers_on_cupy_match_numpy():
    x_host = np.random.default_rng(0).standard_normal((2, 3, 9, 7))
    outs = []
    for name in ("numpy", "cupy"):
        tv.use(name)
        layer = conv.Conv2d(3, 4, 3, stride=2, padding=1, rng=0, dtype="float64")
        up = conv.ConvTranspose2d(4, 3, 3, stride=2, padding=1, rng=0, dtype="float64")
        layer.W.data[...] = tv.asarray(np.linspace(-1, 1, 108).reshape(4, 3, 3, 3))
        up.W.data[...] = tv.asarray(np.linspace(-1, 1, 108).reshape(4, 3, 3, 3))
        layer.b.data[...] = tv.asarray(np.linspace(-1, 1, 4))
        up.b.data[...] = tv.asarray(np.linspace(-1, 1, 3))
        y = up.forward(layer.forward(tv.asarray(x_host)))
        dx = layer.backward(up.backward(y))
        outs.append((B.to_numpy(y), B.to_numpy(dx), B.to_numpy(layer.W.grad), B.to_numpy(up.W.grad)))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
