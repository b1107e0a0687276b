"""Dense: the fully connected layer, y = x @ W + b."""
import math

from . import backend as B
from .activations import ReLU
from .checks import check_batch, check_grad_shape, one_of, positive_ints
from .module import Module, Parameter

INITS = ("pytorch", "xavier", "he")


class Dense(Module):
    """A fully connected layer: y = x @ W + b, with W of shape (in, out) and b of shape (out,).

    Backward: dW = x^T dout, db = sum_n dout, dx = dout W^T.

    ``init`` picks the weight initialisation: "pytorch" (W and b ~ U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear),
    "xavier" (W ~ U(-a, a), a = sqrt(6 / (in + out)), b = 0) or "he" (W ~ N(0, 2 / in), b = 0).
    Set ``input_grad = False`` on a first layer to skip dx (nothing upstream needs it): backward then returns None.
    """

    def __init__(self, in_features, out_features, init="pytorch", rng=None, dtype=None):
        positive_ints("Dense", in_features=in_features, out_features=out_features)
        one_of(init, INITS, "init", "Dense")
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
        self._cache = None

    def forward(self, x):
        """y = x W + b.

        Inputs: x (N, in). Returns y (N, out). Keeps x for backward.
        """
        y = self.forward_product(x)
        y += self.b.data  # in place: one pass fewer than x @ W + b
        return y

    def forward_product(self, x):
        """x @ W, keeping x for backward: the forward pass less the bias, which a fused kernel downstream adds."""
        x = check_batch(x, self.in_features, self, self.W.data.dtype)  # self is named only in an error
        self._cache = x
        return x @ self.W.data

    def forward_pair_fast(self, x, following):
        """``following.forward(self.forward(x))`` with the bias addition and a following ReLU in one CuPy kernel
        (``kernels.bias_relu``); None where there is nothing to fuse (``Sequential.forward_fast`` then runs this
        layer alone)."""
        if not (B.fast_gpu() and type(following) is ReLU):
            return None
        from . import kernels
        y = kernels.bias_relu(self.forward_product(x), self.b.data)
        following._cache = y  # what ReLU.forward keeps for its backward
        return y

    def backward(self, dout):
        """dW = x^T dout, db = sum over n of dout, dx = dout W^T (each added to the parameter's .grad).

        Inputs: dout (N, out), the upstream gradient dL/dy. Returns dx (N, in), or None when input_grad is False.
        """
        x = self._saved(self._cache)
        check_grad_shape(dout, (x.shape[0], self.out_features), self)
        self.W.accumulate_product(x.T, dout)  # grad += x^T dout, written in place when grad was just zeroed
        self.b.accumulate_sum(dout)  # grad += sum_n dout, summed in place when grad was just zeroed
        return dout @ self.W.data.T if self.input_grad else None

    def __repr__(self):
        return f"Dense({self.in_features} -> {self.out_features})"
