"""Convolutions by hand: Conv2d and ConvTranspose2d as matrix products (im2col / col2im), Flatten and Unflatten.

Images are batches (N, C, H, W), as in PyTorch, and the weights have PyTorch's shapes and initialisation, so a
state dict moves between the two: Conv2d.W is (out_channels, in_channels, kh, kw), ConvTranspose2d.W is
(in_channels, out_channels, kh, kw), and b is (out_channels,) for both.

The one idea of the file: a convolution is a matrix product once every input window is laid out as a row.

    im2col(x)  (N, C, H, W) -> cols (N*OH*OW, C*kh*kw): row (n, i, j) is the window under output pixel (i, j)
    col2im(cols)  the adjoint: adds every row back onto the window it came from (overlaps add up)

    Conv2d forward:           y = cols @ W^T + b          W as (F, C*kh*kw)
    Conv2d backward:          dW = dout^T cols, db = sum dout over N, OH, OW, dx = col2im(dout @ W)
    ConvTranspose2d forward:  y = col2im(x @ W) + b       (the backward of a Conv2d, run forward)
    ConvTranspose2d backward: dx = im2col(dout) @ W^T, dW = x^T im2col(dout), db = sum dout over N, H, W

``im2col`` and ``col2im`` loop over output pixels, one window at a time, as the definition reads. Their ``_fast``
twins (same signature, same values, a test keeps them equal) are what the layers use: ``im2col_fast`` takes a
strided view of all windows at once (``backend.sliding_windows``, no copy) and copies it into the matrix once;
``col2im_fast`` loops over the kh*kw kernel offsets instead of the OH*OW windows, each a strided slice-add.

One more thing makes the layers fast, and it changes only where numbers sit in memory: images are kept
channels-last (an (N, C, H, W) view of an (N, H, W, C) buffer) and the rows of cols are ordered (kh, kw, C), the
weight matrix's columns permuted to match. Every copy and every slice-add then runs over contiguous floats
(docs/benchmarks.md: col2im 3.4x faster than with PyTorch's (C, kh, kw) order).
"""
import math

from . import backend as B
from .checks import positive_ints
from .module import Module, Parameter


def conv_output_size(size, kernel, stride, padding):
    """floor((size + 2 * padding - kernel) / stride) + 1: how many windows fit along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def _pad(x, padding):
    """x (N, C, H, W) with ``padding`` zeros around each image: (N, C, H + 2p, W + 2p)."""
    if padding == 0:
        return x
    n, c, h, w = (int(d) for d in x.shape)
    out = B.zeros((n, c, h + 2 * padding, w + 2 * padding), x.dtype)
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def im2col(x, kh, kw, stride=1, padding=0):
    """Every kh x kw window of the zero-padded x as one row: x (N, C, H, W) -> cols (N*OH*OW, C*kh*kw).

    Row n*OH*OW + i*OW + j holds the window under output pixel (i, j) of image n, flattened in (C, kh, kw) order,
    the order of a PyTorch weight (F, C, kh, kw) flattened to (F, C*kh*kw). OH = (H + 2p - kh) // stride + 1.
    """
    xp = B.get_xp()
    n, c, h, w = (int(d) for d in x.shape)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    xpad = _pad(x, padding)
    cols = B.empty((n, oh, ow, c * kh * kw), x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = xpad[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]  # (N, C, kh, kw)
            cols[:, i, j, :] = xp.reshape(window, (n, c * kh * kw))
    return xp.reshape(cols, (n * oh * ow, c * kh * kw))


def _pad_channels_last(x, padding):
    """x (N, C, H, W) zero-padded into a buffer laid out (N, H + 2p, W + 2p, C), returned as that buffer's
    (N, C, H + 2p, W + 2p) view: a pixel's C channels sit side by side in memory, as the matrix rows want them."""
    n, c, h, w = (int(d) for d in x.shape)
    buf = B.zeros((n, h + 2 * padding, w + 2 * padding, c), x.dtype)
    buf[:, padding:padding + h, padding:padding + w, :] = B.permute(x, (0, 2, 3, 1))
    return B.permute(buf, (0, 3, 1, 2))


def im2col_fast(x, kh, kw, stride=1, padding=0, channels_last=False):
    """``im2col`` from one strided view of all windows, (N, C, OH, OW, kh, kw), copied once into the matrix.

    ``channels_last=True`` orders each row (kh, kw, C) instead of (C, kh, kw): the copy then moves runs of C
    neighbouring floats, and the layers multiply by the weight permuted to match (see Conv2d.forward).
    """
    if B.plain():
        cols = im2col(x, kh, kw, stride, padding)
        return _channels_last(cols, int(x.shape[1]), kh, kw) if channels_last else cols
    xp = B.get_xp()
    n, c = (int(d) for d in x.shape[:2])
    windows = B.sliding_windows(_pad_channels_last(x, padding), kh, kw, stride)
    oh, ow = int(windows.shape[2]), int(windows.shape[3])
    order = (0, 2, 3, 4, 5, 1) if channels_last else (0, 2, 3, 1, 4, 5)
    return xp.reshape(B.permute(windows, order), (n * oh * ow, c * kh * kw))


def col2im(cols, x_shape, kh, kw, stride=1, padding=0):
    """The adjoint of ``im2col``: each row of cols (N*OH*OW, C*kh*kw) is ADDED onto the window of the padded image
    it came from, then the padding is cut off: -> (N, C, H, W) = x_shape.

    It is the backward of im2col (dx = col2im(dcols)): a pixel under several windows collects from each of them.
    cols may also come as (N*OH*OW, C, kh, kw), the same numbers with the last axis unfolded.
    """
    xp = B.get_xp()
    n, c, h, w = (int(d) for d in x_shape)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    patches = xp.reshape(_checked_cols(cols, n * oh * ow, c, kh, kw), (n, oh, ow, c, kh, kw))
    xpad = B.zeros((n, c, h + 2 * padding, w + 2 * padding), cols.dtype)
    for i in range(oh):
        for j in range(ow):
            xpad[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += patches[:, i, j, :, :, :]
    return xpad[:, :, padding:padding + h, padding:padding + w]


def col2im_fast(cols, x_shape, kh, kw, stride=1, padding=0):
    """``col2im`` as kh*kw strided slice-adds: kernel offset (a, b) adds its (N, OH, OW, C) plane of cols onto
    xpad[:, a::stride, b::stride, :] (OH x OW pixels), instead of one add per output window.

    The sum is made in a buffer laid out (N, H, W, C) and returned as its (N, C, H, W) view. When cols is the
    (N*OH*OW, C, kh, kw) view of a matrix whose rows are ordered (kh, kw, C) (what the layers pass), each plane's
    C channels are adjacent in memory, as they are in the buffer: every add then runs over contiguous floats.
    """
    if B.plain():
        return col2im(cols, x_shape, kh, kw, stride, padding)
    xp = B.get_xp()
    n, c, h, w = (int(d) for d in x_shape)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    patches = xp.reshape(_checked_cols(cols, n * oh * ow, c, kh, kw), (n, oh, ow, c, kh, kw))
    planes = B.permute(patches, (4, 5, 0, 1, 2, 3))                                 # (kh, kw, N, OH, OW, C)
    buf = B.zeros((n, h + 2 * padding, w + 2 * padding, c), cols.dtype)
    for a in range(kh):
        for b in range(kw):
            buf[:, a:a + stride * (oh - 1) + 1:stride, b:b + stride * (ow - 1) + 1:stride, :] += planes[a, b, ...]
    return B.permute(buf[:, padding:padding + h, padding:padding + w, :], (0, 3, 1, 2))


def _checked_cols(cols, rows, c, kh, kw):
    if tuple(cols.shape) not in ((rows, c * kh * kw), (rows, c, kh, kw)):
        raise ValueError(f"col2im: expected cols of shape {(rows, c * kh * kw)} (N*OH*OW, C*kh*kw) for this image "
                         f"shape; got {tuple(cols.shape)}")
    return cols


def _channels_last(w2d, c, kh, kw):
    """A weight matrix (R, C*kh*kw) with its columns reordered (kh, kw, C), to multiply channels-last rows."""
    xp = B.get_xp()
    return xp.reshape(B.permute(xp.reshape(w2d, (-1, c, kh, kw)), (0, 2, 3, 1)), (-1, kh * kw * c))


def _channels_first(m, c, kh, kw):
    """The inverse of ``_channels_last``: (R, kh*kw*C) -> (R, C, kh, kw), a new contiguous array."""
    xp = B.get_xp()
    return xp.reshape(xp.reshape(B.permute(xp.reshape(m, (-1, kh, kw, c)), (0, 3, 1, 2)), (-1, c * kh * kw)),
                      (-1, c, kh, kw))


def _unfolded(cols, c, kh, kw):
    """(M, kh*kw*C) with rows ordered (kh, kw, C) as the (M, C, kh, kw) view col2im takes (no copy)."""
    xp = B.get_xp()
    return B.permute(xp.reshape(cols, (-1, kh, kw, c)), (0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------------------------
# Checks shared by the layers
# ---------------------------------------------------------------------------------------------------------------

def _kernel(kernel_size, who):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    positive_ints(who, kernel_height=kh, kernel_width=kw)
    return kh, kw


def check_images(x, channels, who, dtype=None):
    """``x`` as a 4-D floating batch (N, channels, H, W) of the active backend, or a clear error naming ``who``."""
    if not B.is_array(x):
        x = B.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{who} expects images of shape (N, {channels}, H, W); got shape {tuple(x.shape)}"
                         + (" (add the batch axis: x.reshape(1, *x.shape))" if x.ndim == 3 else ""))
    if x.shape[1] != channels:
        raise ValueError(f"{who} expects {channels} input channels, shape (N, {channels}, H, W); "
                         f"got shape {tuple(x.shape)}")
    if not B.is_floating(x):
        raise TypeError(f"{who} expects floating-point images; got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{who} holds {B.dtype_name(dtype)} parameters but got {B.dtype_name(x.dtype)} input: "
                        f"convert it with tinyvae.asarray(x, dtype='{B.dtype_name(dtype)}')")
    return x


def _uniform(rng, shape, bound, dtype):
    return (2.0 * rng.random(shape, dtype) - 1.0) * bound


def _rows(x):
    """(N, C, H, W) -> (N*H*W, C): one row per pixel, channels along the row (a copy unless x is laid out NHWC)."""
    n, c, h, w = (int(d) for d in x.shape)
    return B.get_xp().reshape(B.permute(x, (0, 2, 3, 1)), (n * h * w, c))


def _images(rows, n, h, w):
    """(N*H*W, C) -> (N, C, H, W): a view, whose memory stays laid out (N, H, W, C)."""
    return B.permute(B.get_xp().reshape(rows, (n, h, w, int(rows.shape[1]))), (0, 3, 1, 2))


class _ConvBase(Module):
    def _setup(self, in_channels, out_channels, kernel_size, stride, padding):
        who = type(self).__name__
        self.kh, self.kw = _kernel(kernel_size, who)
        positive_ints(who, in_channels=in_channels, out_channels=out_channels, stride=stride, padding=padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = stride, padding
        self.input_grad = True  # False on a first layer: backward skips dx (col2im) and returns None
        self._cache = None

    def _describe(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size=({self.kh}, {self.kw}), "
                f"stride={self.stride}, padding={self.padding}")

    def _check_dout(self, dout, shape):
        if tuple(dout.shape) != shape:
            raise ValueError(f"{self!r}.backward expects dout of shape {shape}; got {tuple(dout.shape)}")


class Conv2d(_ConvBase):
    """A 2-D convolution (cross-correlation, as in PyTorch): x (N, C, H, W) -> y (N, F, OH, OW),

        y[n, f, i, j] = b[f] + sum_{c, a, b'} W[f, c, a, b'] * xpad[n, c, i*s + a, j*s + b'],
        OH = (H + 2p - kh) // s + 1.

    As a matrix product: cols = im2col(x) (N*OH*OW, C*kh*kw), y_rows = cols @ W2^T + b (N*OH*OW, F) with
    W2 = W.reshape(F, C*kh*kw), and y_rows read as (N, OH, OW, F) -> (N, F, OH, OW).

    Backward, with dout (N, F, OH, OW) read as dout_rows (N*OH*OW, F):
        dW = dout_rows^T cols (F, C*kh*kw) -> (F, C, kh, kw),  db = sum of dout over N, OH, OW  (F,),
        dx = col2im(dout_rows W2) (N, C, H, W).
    Initialisation as torch.nn.Conv2d: W and b ~ U(-1/sqrt(C*kh*kw), 1/sqrt(C*kh*kw)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, rng=None, dtype=None):
        self._setup(in_channels, out_channels, kernel_size, stride, padding)
        rng, dtype = B.as_generator(rng), B.resolve_dtype(dtype)
        bound = 1.0 / math.sqrt(in_channels * self.kh * self.kw)
        self.W = Parameter(_uniform(rng, (out_channels, in_channels, self.kh, self.kw), bound, dtype))
        self.b = Parameter(_uniform(rng, (out_channels,), bound, dtype))

    def output_shape(self, h, w):
        """(OH, OW) for an input of H x W pixels, or a clear error when the kernel does not fit."""
        oh, ow = (conv_output_size(h, self.kh, self.stride, self.padding),
                  conv_output_size(w, self.kw, self.stride, self.padding))
        if h + 2 * self.padding < self.kh or w + 2 * self.padding < self.kw:
            raise ValueError(f"{self!r}: the {self.kh}x{self.kw} kernel does not fit in an input of {h}x{w} pixels "
                             f"with padding {self.padding}")
        return oh, ow

    def forward(self, x):
        x = check_images(x, self.in_channels, self, self.W.data.dtype)
        n, c, h, w = (int(d) for d in x.shape)
        oh, ow = self.output_shape(h, w)
        # Fast layout: rows of cols ordered (kh, kw, C), so the weight matrix's columns are reordered to match.
        cols = im2col_fast(x, self.kh, self.kw, self.stride, self.padding, channels_last=True)  # (N*OH*OW, K)
        w_rows = _channels_last(B.get_xp().reshape(self.W.data, (self.out_channels, -1)), c, self.kh, self.kw)
        y = cols @ w_rows.T                                                                  # (N*OH*OW, F)
        y += self.b.data
        self._cache = (cols, w_rows, tuple(x.shape))
        return _images(y, n, oh, ow)                                                          # (N, F, OH, OW)

    def backward(self, dout):
        """dW = dout_rows^T cols, db = sum over N, OH, OW of dout, dx = col2im(dout_rows W2).

        Shapes: dout (N, F, OH, OW), dout_rows (N*OH*OW, F), cols (N*OH*OW, K) and W2 (F, K) with K = C*kh*kw
        (forward keeps both, their columns in the same order), dW (F, C, kh, kw); returns dx (N, C, H, W), or
        None when ``input_grad`` is False.
        """
        xp = B.get_xp()
        cols, w_rows, x_shape = self._saved(self._cache)
        self._check_dout(dout, (x_shape[0], self.out_channels, *self.output_shape(x_shape[2], x_shape[3])))
        dout_rows = _rows(dout)                                                              # (N*OH*OW, F)
        self.W.accumulate(_channels_first(dout_rows.T @ cols, x_shape[1], self.kh, self.kw))
        self.b.accumulate(xp.sum(dout_rows, axis=0))
        if not self.input_grad:
            return None
        dcols = dout_rows @ w_rows                                                           # (N*OH*OW, K)
        return col2im_fast(_unfolded(dcols, x_shape[1], self.kh, self.kw), x_shape, self.kh, self.kw,
                           self.stride, self.padding)

    def __repr__(self):
        return f"Conv2d({self._describe()})"


class ConvTranspose2d(_ConvBase):
    """The transposed convolution: the backward (input gradient) of a Conv2d, run as a forward pass.

    x (N, C, H, W) -> y (N, F, OH, OW), OH = (H - 1) * s - 2p + kh + output_padding: the shape a Conv2d with the
    same kernel, stride and padding maps back to H. W has PyTorch's shape (C, F, kh, kw).

    Forward: x_rows (N*H*W, C) @ W2 (C, F*kh*kw) = cols (N*H*W, F*kh*kw); y = col2im(cols) + b.
    Backward, with dcols = im2col(dout) (N*H*W, F*kh*kw):
        dx = dcols W2^T -> (N, C, H, W),  dW = x_rows^T dcols -> (C, F, kh, kw),  db = sum of dout over N, OH, OW.
    ``output_padding`` = e (< stride) picks one of the several output sizes that the strided Conv2d maps to the
    same H. The windows cover the rows 0 ... (H - 1) * s + kh - 1 of the uncropped output; e adds e rows at its
    bottom (columns at its right), then ``padding`` crops p from every side. So the output's last rows are reached
    by windows as long as e <= p (the ConvVAE's p = 1, e = 1: e keeps a row the crop would have dropped), and only
    the last e - p rows (when e > p, e.g. p = 0) get the bias alone.
    Initialisation as torch.nn.ConvTranspose2d: W and b ~ U(-1/sqrt(F*kh*kw), 1/sqrt(F*kh*kw)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, rng=None,
                 dtype=None):
        self._setup(in_channels, out_channels, kernel_size, stride, padding)
        pads = (output_padding, output_padding) if isinstance(output_padding, int) else tuple(output_padding)
        if len(pads) != 2:
            raise ValueError(f"ConvTranspose2d: output_padding must be an int or (rows, columns), got {output_padding!r}")
        for value in pads:
            positive_ints("ConvTranspose2d", output_padding=value)
        if max(pads) >= stride:
            raise ValueError(f"ConvTranspose2d: output_padding must be smaller than stride ({stride}), "
                             f"got {output_padding}")
        self.output_padding = output_padding  # an int, or (rows, columns) as PyTorch also takes it
        self._extra = pads
        rng, dtype = B.as_generator(rng), B.resolve_dtype(dtype)
        bound = 1.0 / math.sqrt(out_channels * self.kh * self.kw)
        self.W = Parameter(_uniform(rng, (in_channels, out_channels, self.kh, self.kw), bound, dtype))
        self.b = Parameter(_uniform(rng, (out_channels,), bound, dtype))

    def output_shape(self, h, w):
        """(OH, OW) for an input of H x W pixels, or a clear error when that is empty."""
        (eh, ew), p = self._extra, self.padding
        oh, ow = (h - 1) * self.stride + self.kh + eh - 2 * p, (w - 1) * self.stride + self.kw + ew - 2 * p
        if oh < 1 or ow < 1:
            raise ValueError(f"{self!r}: an input of {h}x{w} pixels gives an empty output ({oh}x{ow}): "
                             "the padding is too large")
        return oh, ow

    def forward(self, x):
        x = check_images(x, self.in_channels, self, self.W.data.dtype)
        n, _, h, w = (int(d) for d in x.shape)
        oh, ow = self.output_shape(h, w)
        f, kh, kw = self.out_channels, self.kh, self.kw
        w_rows = _channels_last(B.get_xp().reshape(self.W.data, (self.in_channels, -1)), f, kh, kw)  # (C, K)
        x_rows = _rows(x)                                                                    # (N*H*W, C)
        cols = x_rows @ w_rows                                                               # (N*H*W, K)
        y = col2im_fast(_unfolded(cols, f, kh, kw), (n, f, oh, ow), kh, kw, self.stride, self.padding)
        y += B.get_xp().reshape(self.b.data, (1, -1, 1, 1))
        self._cache = (x_rows, w_rows, tuple(x.shape))
        return y

    def backward(self, dout):
        """dcols = im2col(dout); dx = dcols W2^T, dW = x_rows^T dcols, db = sum over N, OH, OW of dout.

        Shapes: dout (N, F, OH, OW), dcols (N*H*W, K) and W2 (C, K) with K = F*kh*kw (columns in the same order),
        x_rows (N*H*W, C), dW (C, F, kh, kw); returns dx (N, C, H, W), or None when ``input_grad`` is False.
        """
        xp = B.get_xp()
        x_rows, w_rows, (n, c, h, w) = self._saved(self._cache)
        self._check_dout(dout, (n, self.out_channels, *self.output_shape(h, w)))
        dcols = im2col_fast(dout, self.kh, self.kw, self.stride, self.padding, channels_last=True)
        self.W.accumulate(_channels_first(x_rows.T @ dcols, self.out_channels, self.kh, self.kw))
        self.b.accumulate(xp.sum(dout, axis=(0, 2, 3)))
        if not self.input_grad:
            return None
        return _images(dcols @ w_rows.T, n, h, w)

    def __repr__(self):
        return f"ConvTranspose2d({self._describe()}, output_padding={self.output_padding})"


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) in PyTorch's order (channel, then row, then column). Backward: the reverse."""

    def __init__(self):
        self._cache = None  # the input's shape

    def forward(self, x):
        self._cache = tuple(x.shape)
        return B.get_xp().reshape(x, (self._cache[0], -1))

    def backward(self, dout):
        """dx = dout reshaped back.   dout: (N, C*H*W); dx: (N, C, H, W)."""
        return B.get_xp().reshape(dout, self._saved(self._cache))

    def __repr__(self):
        return "Flatten()"


class Unflatten(Module):
    """(N, prod(shape)) -> (N, *shape), e.g. (N, 3136) -> (N, 64, 7, 7). Backward: the reverse."""

    def __init__(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        positive_ints("Unflatten", **{f"size {i}": s for i, s in enumerate(shape)})
        self.shape = shape
        self._cache = None  # the batch size N

    def forward(self, x):
        width = math.prod(self.shape)
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"{self!r} expects input of shape (N, {width}); got shape {tuple(x.shape)}")
        self._cache = int(x.shape[0])
        return B.get_xp().reshape(x, (self._cache, *self.shape))

    def backward(self, dout):
        """dx = dout reshaped back.   dout: (N, *shape); dx: (N, prod(shape))."""
        return B.get_xp().reshape(dout, (self._saved(self._cache), -1))

    def __repr__(self):
        return f"Unflatten{self.shape}"
