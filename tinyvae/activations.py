"""Element-wise activations, each with its derivative written out in backward.

The plain formulas come first (``relu``, ``relu_backward``, ``leaky_relu``, ...), then the modules. Some formulas
have a ``_fast`` twin, in the section at the end, with the same arguments and the same result, computed with fewer
passes over memory (or, on CuPy, as one fused kernel from ``tinyvae.kernels``); tests keep each pair equal. The
modules call the fast twins.
"""
from . import backend as B
from .module import Module


def sigmoid(x):
    """1 / (1 + exp(-x)), computed from e = exp(-|x|) <= 1 so that no input overflows.

    sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0: both are exact to the last bit in the tails.
    """
    xp = B.get_xp()
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def relu(x):
    """max(x, 0)."""
    return B.get_xp().maximum(x, 0.0)


def relu_backward(dout, y):
    """dx = dout where y = relu(x) > 0, else 0.   dout, y, dx: the same shape."""
    return dout * B.astype(y > 0, dout.dtype)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return B.get_xp().where(x > 0, x, negative_slope * x)


def leaky_relu_backward(dout, x, negative_slope=0.01):
    """dx = dout where x > 0, else negative_slope * dout.   dout, x, dx: the same shape."""
    return B.get_xp().where(x > 0, dout, negative_slope * dout)


def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), exact and finite for every float."""
    xp = B.get_xp()
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


class Activation(Module):
    """An element-wise function: forward keeps what the derivative needs, backward multiplies by it."""

    def __init__(self):
        self._cache = None

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(Activation):
    """y = max(x, 0).  Backward: dx = dout where x > 0, else 0 (``relu_backward``)."""

    def forward(self, x):
        y = relu_fast(x)
        self._cache = y
        return y

    def backward(self, dout):
        """dx = dout where y > 0, else 0.   dout, dx: the shape of x ((N, D), or (N, C, H, W) in a conv net)."""
        y = self._saved(self._cache)
        return relu_backward_fast(dout, y)


class LeakyReLU(Activation):
    """y = x if x > 0 else a * x.  Backward: dx = dout if x > 0 else a * dout (``leaky_relu_backward``).

    Forward keeps its input x, whose sign picks the slope.
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        self._cache = x
        return leaky_relu_fast(x, self.negative_slope)

    def backward(self, dout):
        """dx = dout where x > 0, else a * dout.   dout, dx: the shape of x ((N, D), or (N, C, H, W) in a conv net)."""
        x = self._saved(self._cache)
        return leaky_relu_backward_fast(dout, x, self.negative_slope)

    def __repr__(self):
        return f"LeakyReLU(negative_slope={self.negative_slope})"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x)).  Backward: dx = dout * y * (1 - y)."""

    def forward(self, x):
        y = sigmoid_fast(x)
        self._cache = y
        return y

    def backward(self, dout):
        """dx = dout * y * (1 - y), y = sigmoid(x).   dout, dx: the shape of x ((N, D), or (N, C, H, W) in a conv net)."""
        y = self._saved(self._cache)
        return dout * y * (1.0 - y)


class Tanh(Activation):
    """y = tanh(x).  Backward: dx = dout * (1 - y^2)."""

    def forward(self, x):
        y = B.get_xp().tanh(x)
        self._cache = y
        return y

    def backward(self, dout):
        """dx = dout * (1 - y^2), y = tanh(x).   dout, dx: the shape of x ((N, D), or (N, C, H, W) in a conv net)."""
        y = self._saved(self._cache)
        return dout * (1.0 - y * y)


class Softplus(Activation):
    """y = log(1 + exp(x)).  Backward: dx = dout * sigmoid(x)."""

    def forward(self, x):
        self._cache = x
        return softplus(x)

    def backward(self, dout):
        """dx = dout * sigmoid(x).   dout, dx: the shape of x ((N, D), or (N, C, H, W) in a conv net)."""
        x = self._saved(self._cache)
        return dout * sigmoid(x)


class Identity(Activation):
    """y = x.  Backward: dx = dout."""

    def forward(self, x):
        self._cache = True
        return x

    def backward(self, dout):
        """dx = dout.   dout, dx: the shape of x ((N, D), or (N, C, H, W) in a conv net)."""
        self._saved(self._cache)
        return dout


# ------------------------------------------------------------------------------------------------------- ELU
def elu(x):
    """x for positive x, else exp(x) - 1 (Clevert et al. 2016, alpha = 1; CS236's MLPs use it).

    exp is taken of min(x, 0), through expm1 (exact for small |x|), so no positive input can overflow.
    """
    xp = B.get_xp()
    return xp.where(x > 0, x, xp.expm1(xp.minimum(x, 0.0)))


def elu_backward(dout, y):
    """dx = dout * (min(y, 0) + 1) for y = elu(x): the slope is 1 for positive x, and exp(x) = y + 1 on the left
    (y = exp(x) - 1 there, and min(y, 0) = 0 exactly where x is positive).   dout, y, dx: the same shape."""
    return dout * (B.get_xp().minimum(y, 0.0) + 1.0)


class ELU(Activation):
    """y = x for positive x, else exp(x) - 1.  Backward: dx = dout * (min(y, 0) + 1) (``elu_backward``).

    Forward keeps its output y: its sign is x's, and y + 1 = exp(x) is the slope on the left.
    """

    def forward(self, x):
        y = elu_fast(x)
        self._cache = y
        return y

    def backward(self, dout):
        """dx = dout * (min(y, 0) + 1).   dout, dx: the shape of x ((N, D))."""
        y = self._saved(self._cache)
        return elu_backward_fast(dout, y)


ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softplus": Softplus,
    "identity": Identity,
    "elu": ELU,
}


def get_activation(name):
    """A new activation module from its name (e.g. "relu"), or a clear error listing the valid names."""
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(ACTIVATIONS)}") from None


# ==== The fast twins ==========================================================================================
# The same numbers as the formulas above in fewer passes over memory, or as one CuPy kernel (tinyvae.kernels).
# Tests keep each pair equal; in plain mode (tinyvae.use_plain) each twin calls its formula.


def _on_gpu():
    return B.fast_gpu()


def sigmoid_fast(x):
    """``sigmoid`` with a 0/1 mask picking the branch: in NumPy multiplying by a mask is far faster than xp.where."""
    if B.plain():
        return sigmoid(x)
    xp = B.get_xp()
    e = xp.exp(-xp.abs(x))
    r = 1.0 / (1.0 + e)
    negative = B.astype(x < 0, x.dtype)
    return r * (negative * e + (1.0 - negative))  # r where x >= 0, e * r where x < 0 (both exact)


def relu_fast(x):
    """``relu`` taken against a row of zeros: NumPy runs maximum(x, row) in its SIMD loop but maximum(x, 0.0)
    element by element, 2.5x slower (the result is the same). On CuPy: one fused kernel, no zeros row to make."""
    if B.plain():
        return relu(x)
    if _on_gpu():
        from . import kernels
        return kernels.relu_forward(x)
    return B.get_xp().maximum(x, B.zeros(tuple(x.shape[-1:]), x.dtype))


def relu_backward_fast(dout, y):
    """``relu_backward`` multiplying by the boolean mask itself (NumPy), or one fused kernel (CuPy)."""
    if B.plain():
        return relu_backward(dout, y)
    if _on_gpu():
        from . import kernels
        return kernels.relu_backward(dout, y)
    if B.backend_name() == "numpy":
        return dout * (y > 0)  # NumPy promotes the bool mask inside the multiply: no float mask array is made
    return relu_backward(dout, y)


def leaky_relu_fast(x, negative_slope=0.01):
    """``leaky_relu`` as max(x, a x), equal to it for 0 <= a <= 1 and ten times faster than xp.where in NumPy (one
    fused kernel on CuPy)."""
    if B.plain():
        return leaky_relu(x, negative_slope)
    if _on_gpu():
        from . import kernels
        return kernels.leaky_relu_forward(x, negative_slope)
    if 0.0 <= negative_slope <= 1.0:
        return B.get_xp().maximum(x, negative_slope * x)
    return leaky_relu(x, negative_slope)


def leaky_relu_backward_fast(dout, x, negative_slope=0.01):
    """``leaky_relu_backward`` as dout * (a + (1 - a) [x > 0]): a 0/1 mask multiply, far faster than xp.where in
    NumPy (one fused kernel on CuPy)."""
    if B.plain():
        return leaky_relu_backward(dout, x, negative_slope)
    if _on_gpu():
        from . import kernels
        return kernels.leaky_relu_backward(dout, x, negative_slope)
    slope = B.astype(x > 0, dout.dtype)
    slope *= 1.0 - negative_slope
    slope += negative_slope
    return dout * slope


def elu_fast(x):
    """``elu`` as max(x, expm1(min(x, 0))) in one array, in place: where x > 0 the expm1 is 0 and the max is x;
    elsewhere expm1(x) >= x, so the max is expm1(x). The same bits as the formula, five times faster in NumPy
    (xp.where and its temporaries cost more than the expm1)."""
    if B.plain() or B.backend_name() not in ("numpy", "cupy"):
        return elu(x)
    xp = B.get_xp()
    y = xp.minimum(x, B.zeros(tuple(x.shape[-1:]), x.dtype))  # a row of zeros: NumPy's SIMD loop (see relu_fast)
    xp.expm1(y, out=y)
    return xp.maximum(x, y, out=y)


def elu_backward_fast(dout, y):
    """``elu_backward`` in one array, in place: (min(y, 0) + 1) * dout."""
    if B.plain() or B.backend_name() not in ("numpy", "cupy"):
        return elu_backward(dout, y)
    xp = B.get_xp()
    slope = xp.minimum(y, B.zeros(tuple(y.shape[-1:]), y.dtype))
    slope += 1.0
    slope *= dout
    return slope
