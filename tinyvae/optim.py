"""Optimizers (SGD with momentum, Adam) and gradient-norm clipping.

Each optimizer updates its parameters in place from their ``.grad``. ``state_dict()``/``load_state_dict()`` carry
the step count and the moment estimates, so training can stop and resume exactly.
"""
import math

from . import backend as B
from .module import Parameter


class Optimizer:
    """Holds a list of Parameters and whatever per-parameter state the update rule needs."""

    hyperparameters = ("lr",)
    buffers = ()  # names of the per-parameter state arrays

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__} takes Parameters (model.parameters()), got {type(p).__name__}")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be positive, got {lr!r}")
        self.lr = float(lr)
        self.t = 0
        xp = B.get_xp()
        self.state = {name: [xp.zeros_like(p.data) for p in self.params] for name in self.buffers}

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def step(self):
        raise NotImplementedError

    def state_dict(self):
        """{"type", "t", "hyperparameters": {...}, "buffers": {"m.0": array, ...}} with copies of the arrays."""
        return {
            "type": type(self).__name__,
            "t": self.t,
            "hyperparameters": {k: getattr(self, k) for k in self.hyperparameters},
            "buffers": {f"{name}.{i}": B.copy(a) for name, arrays in self.state.items() for i, a in enumerate(arrays)},
        }

    def load_state_dict(self, state):
        if state.get("type") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state is for a {state.get('type')!r}")
        expected = {f"{name}.{i}" for name in self.buffers for i in range(len(self.params))}
        if set(state["buffers"]) != expected:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state holds buffers {sorted(state['buffers'])}, "
                f"expected {sorted(expected)} (was it saved for a different model?)"
            )
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                value = B.asarray(state["buffers"][f"{name}.{i}"], dtype=a.dtype)
                if tuple(value.shape) != tuple(a.shape):
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {name}.{i} has shape "
                                     f"{tuple(value.shape)}, expected {tuple(a.shape)}")
                a[...] = value
        for k, v in state["hyperparameters"].items():
            setattr(self, k, v)
        self.t = int(state["t"])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as torch.optim.SGD (no dampening).

    g = grad + weight_decay * p;  b = momentum * b + g;  p = p - lr * b   (b = g when momentum is 0).
    """

    hyperparameters = ("lr", "momentum", "weight_decay")
    buffers = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def step(self):
        self.t += 1
        for p, buf in zip(self.params, self.state["momentum_buffer"]):
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                buf *= self.momentum
                buf += g
                g = buf
            p.data -= self.lr * g


def adam_reference(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """One Adam step written as the formula, returning new (p, m, v); the fast in-place path is checked against it.

    g = grad + weight_decay * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)          (torch.optim.Adam, t counted from 1)
    """
    b1, b2 = betas
    g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat_scale = lr / (1 - b1**t)
    denom = B.get_xp().sqrt(v) / math.sqrt(1 - b2**t) + eps
    return p - m_hat_scale * m / denom, m, v


class Adam(Optimizer):
    """Adam with exactly torch.optim.Adam's update (``adam_reference`` is the formula; a test keeps them equal).

    The step is rearranged to run in place: m = b1 (m - g) + g and v = b2 (v - g^2) + g^2 need no new arrays, and
    lr / c1 * m / (sqrt(v) / sqrt(c2) + eps) = (lr sqrt(c2) / c1) * m / (sqrt(v) + eps sqrt(c2)). That halves the
    passes over memory of the formula written with temporaries. The twelve passes run block by block (a few
    hundred KB of each array, ``backend.cache_block``), so each block stays in cache from the first pass to the last
    instead of every pass streaming the whole matrix from memory.
    """

    hyperparameters = ("lr", "beta1", "beta2", "eps", "weight_decay")
    buffers = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"Adam: betas must lie in [0, 1), got {betas!r}")
        self.beta1, self.beta2, self.eps, self.weight_decay = float(b1), float(b2), float(eps), float(weight_decay)

    @property
    def betas(self):
        return (self.beta1, self.beta2)

    def step(self):
        xp = B.get_xp()
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        root_c2 = math.sqrt(1 - b2**self.t)
        scale = self.lr * root_c2 / (1 - b1**self.t)
        eps = self.eps * root_c2
        for p, m_all, v_all in zip(self.params, self.state["m"], self.state["v"]):
            g_all = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            for rows in _row_blocks(p.data, B.cache_block(p.data.dtype)):  # views: the updates land in place
                w, g, m, v = p.data[rows], g_all[rows], m_all[rows], v_all[rows]
                m -= g
                m *= b1
                m += g
                g2 = g * g
                v -= g2
                v *= b2
                v += g2
                denom = xp.sqrt(v)
                denom += eps
                update = m / denom
                update *= scale
                w -= update


def _row_blocks(a, size):
    """Indices that cut ``a`` into views of whole rows, ``a[index]``, of about ``size`` elements each (one view of
    all of ``a`` when ``size`` is None or ``a`` is no bigger)."""
    rows = a.shape[0] if a.ndim else 1
    per_row = math.prod(a.shape[1:])
    if size is None or a.ndim == 0 or rows * per_row <= size:
        return [...]
    step = max(1, size // max(1, per_row))
    return [(slice(i, min(rows, i + step)), ...) for i in range(0, rows, step)]


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``; returns the norm before.

    g <- g * min(1, max_norm / ||g||), with ||g|| over every parameter at once, as torch.nn.utils.clip_grad_norm_.
    """
    xp = B.get_xp()
    params = list(params)
    total = math.sqrt(sum(float(xp.sum(p.grad * p.grad)) for p in params))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for p in params:
            p.grad *= scale
    return total
