"""Dense: the fully connected layer, y = x @ W + b."""
import math

from . import backend as B
from .activations import ReLU
from .module import Module, Parameter

INITS = ("pytorch", "xavier", "he")


def check_batch(x, width, who, dtype=None):
    """``x`` as a 2-D floating batch (N, width) of the active backend, or a clear error naming ``who`` (any object
    whose str() names the layer; it is formatted only when there is an error).

    Arrays of another backend (a NumPy array while CuPy is active, a list) are converted; the dtype is kept,
    so a float64 batch into a float32 layer is an error rather than a silent promotion.
    """
    if not B.is_array(x):
        x = B.asarray(x)
    if x.ndim != 2:
        hint = " (for one example use x.reshape(1, -1))" if x.ndim == 1 else ""
        raise ValueError(f"{who} expects a 2-D batch of shape (N, {width}); got shape {tuple(x.shape)}{hint}")
    if x.shape[1] != width:
        raise ValueError(f"{who} expects input of shape (N, {width}); got shape {tuple(x.shape)}")
    if not B.is_floating(x):
        raise TypeError(
            f"{who} expects floating-point input; got {x.dtype}. Convert it first, e.g. "
            "tinyvae.asarray(images, dtype='float32') / 255"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{who} holds {B.dtype_name(dtype)} parameters but got {B.dtype_name(x.dtype)} input: convert the "
            f"input with tinyvae.asarray(x, dtype='{B.dtype_name(dtype)}') or build the layer with that dtype"
        )
    return x


class Dense(Module):
    """A fully connected layer: y = x @ W + b, with W of shape (in, out) and b of shape (out,).

    Backward: dW = x^T dout, db = sum_n dout, dx = dout W^T.

    ``init`` picks the weight initialisation: "pytorch" (W and b ~ U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear),
    "xavier" (W ~ U(-a, a), a = sqrt(6 / (in + out)), b = 0) or "he" (W ~ N(0, 2 / in), b = 0).
    Set ``input_grad = False`` on a first layer to skip dx (nothing upstream needs it): backward then returns None.
    """

    def __init__(self, in_features, out_features, init="pytorch", rng=None, dtype=None):
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"Dense: {name} must be a positive int, got {n!r}")
        if init not in INITS:
            raise ValueError(f"Dense: unknown init {init!r}: expected one of {', '.join(INITS)}")
        rng = B.as_generator(rng)
        dtype = B.resolve_dtype(dtype)
        shape = (in_features, out_features)
        if init == "pytorch":
            bound = 1.0 / math.sqrt(in_features)
            W = (2.0 * rng.random(shape, dtype) - 1.0) * bound
            b = (2.0 * rng.random((out_features,), dtype) - 1.0) * bound
        elif init == "xavier":
            bound = math.sqrt(6.0 / (in_features + out_features))
            W = (2.0 * rng.random(shape, dtype) - 1.0) * bound
            b = B.zeros((out_features,), dtype)
        else:
            W = rng.standard_normal(shape, dtype) * math.sqrt(2.0 / in_features)
            b = B.zeros((out_features,), dtype)
        self.in_features, self.out_features, self.init = in_features, out_features, init
        self.W, self.b = Parameter(W), Parameter(b)
        self.input_grad = True
        self._x = None

    def forward(self, x):
        """y = x @ W + b.   x: (N, in); y: (N, out)."""
        y = self.forward_product(x)
        y += self.b.data  # in place: one pass fewer than x @ W + b
        return y

    def forward_product(self, x):
        """x @ W, keeping x for backward: the forward pass less the bias, which a fused kernel downstream adds."""
        x = check_batch(x, self.in_features, self, self.W.data.dtype)  # self is named only in an error
        self._x = x
        return x @ self.W.data

    def forward_pair_fast(self, x, following):
        """``following.forward(self.forward(x))`` with the bias addition and a following ReLU in one CuPy kernel
        (``kernels.bias_relu``); None where there is nothing to fuse (``Sequential.forward_fast`` then runs this
        layer alone)."""
        if not (B.fast_gpu() and type(following) is ReLU):
            return None
        from . import kernels
        y = kernels.bias_relu(self.forward_product(x), self.b.data)
        following._saved_value = y  # what ReLU.forward keeps for its backward
        return y

    def backward(self, dout):
        x = self._saved(self._x)
        if tuple(dout.shape) != (x.shape[0], self.out_features):
            raise ValueError(
                f"{self!r}.backward expects dout of shape {(x.shape[0], self.out_features)}; got {tuple(dout.shape)}"
            )
        self.W.accumulate_product(x.T, dout)  # grad += x^T dout, written in place when grad was just zeroed
        self.b.accumulate_sum(dout)  # grad += sum_n dout, summed in place when grad was just zeroed
        return dout @ self.W.data.T if self.input_grad else None

    def __repr__(self):
        return f"Dense({self.in_features} -> {self.out_features})"
