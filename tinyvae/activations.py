"""Element-wise activations, each with its derivative written out in backward."""
from . import backend as B
from .module import Module


def sigmoid(x):
    """1 / (1 + exp(-x)), computed from exp(-|x|) <= 1 so that no input overflows."""
    xp = B.get_xp()
    e = xp.exp(-xp.abs(x))
    r = 1.0 / (1.0 + e)
    return xp.where(x >= 0, r, e * r)


def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), exact and finite for every float."""
    xp = B.get_xp()
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


class Activation(Module):
    """An element-wise function: forward keeps what the derivative needs, backward multiplies by it."""

    def __init__(self):
        self._saved_value = None

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(Activation):
    """y = max(x, 0).  Backward: dx = dout where x > 0, else 0."""

    def forward(self, x):
        xp = B.get_xp()
        y = xp.maximum(x, 0.0)
        self._saved_value = y
        return y

    def backward(self, dout):
        y = self._saved(self._saved_value)
        return B.get_xp().where(y > 0, dout, 0.0)


class LeakyReLU(Activation):
    """y = x if x > 0 else a * x.  Backward: dx = dout if x > 0 else a * dout."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        xp = B.get_xp()
        positive = x > 0
        self._saved_value = positive
        return xp.where(positive, x, self.negative_slope * x)

    def backward(self, dout):
        positive = self._saved(self._saved_value)
        return B.get_xp().where(positive, dout, self.negative_slope * dout)

    def __repr__(self):
        return f"LeakyReLU(negative_slope={self.negative_slope})"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x)).  Backward: dx = dout * y * (1 - y)."""

    def forward(self, x):
        y = sigmoid(x)
        self._saved_value = y
        return y

    def backward(self, dout):
        y = self._saved(self._saved_value)
        return dout * y * (1.0 - y)


class Tanh(Activation):
    """y = tanh(x).  Backward: dx = dout * (1 - y^2)."""

    def forward(self, x):
        y = B.get_xp().tanh(x)
        self._saved_value = y
        return y

    def backward(self, dout):
        y = self._saved(self._saved_value)
        return dout * (1.0 - y * y)


class Softplus(Activation):
    """y = log(1 + exp(x)).  Backward: dx = dout * sigmoid(x)."""

    def forward(self, x):
        self._saved_value = x
        return softplus(x)

    def backward(self, dout):
        x = self._saved(self._saved_value)
        return dout * sigmoid(x)


class Identity(Activation):
    """y = x.  Backward: dx = dout."""

    def forward(self, x):
        self._saved_value = True
        return x

    def backward(self, dout):
        self._saved(self._saved_value)
        return dout


ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softplus": Softplus,
    "identity": Identity,
}


def get_activation(name):
    """A new activation module from its name (e.g. "relu"), or a clear error listing the valid names."""
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(ACTIVATIONS)}") from None
