"""Optimizers (SGD with momentum, Adam) and gradient-norm clipping.

Each update rule is written twice, side by side: ``sgd_reference`` / ``adam_reference`` are the formulas, returning
new arrays; ``sgd_fast`` / ``adam_fast`` take the same arguments and compute the same numbers in place (and, on
CuPy, as one fused kernel from ``tinyvae.kernels``). Tests keep each pair equal.

An optimizer puts its parameters into flat buffers (``flat.flatten_parameters``: one contiguous array per dtype,
each parameter's ``.data`` and ``.grad`` a view into it) and keeps its moment estimates in arrays of the same
layout, so a step is one call of the fast rule over everything. Its parameters may be any subset of a model's (one
optimizer per network, as a GAN needs). ``state_dict()``/``load_state_dict()`` carry the step count and the moment
estimates parameter by parameter, so training can stop and resume exactly.
"""
import math

from . import backend as B
from .flat import flatten_parameters
from .module import Parameter


def sgd_reference(p, g, buf, lr, momentum=0.0, weight_decay=0.0):
    """One SGD step written as the formula (torch.optim.SGD, no dampening), returning new (p, buf).

    g = grad + weight_decay * p;  buf = momentum * buf + g;  p = p - lr * buf     (with momentum 0: p = p - lr * g)
    ``buf`` starts at zeros, so the first step's buf is g itself, as in torch.
    """
    g = g + weight_decay * p
    if momentum:
        buf = momentum * buf + g
        g = buf
    return p - lr * g, buf


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


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``; returns the norm before.

    g <- g * min(1, max_norm / ||g||), with ||g|| over every parameter at once, as torch.nn.utils.clip_grad_norm_.
    """
    xp = B.get_xp()
    params = list(params)
    if B.fast_gpu():
        return clip_grad_norm_fast(params, max_norm)
    squares = xp.stack([xp.sum(p.grad * p.grad) for p in params])  # summed on the device: one read, not one each
    total = math.sqrt(float(xp.sum(squares)))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for p in params:
            p.grad *= scale
    return total


class Optimizer:
    """Holds a list of Parameters and whatever per-parameter state the update rule needs.

    ``self.state[name][i]`` is parameter i's state array; underneath it is a view into ``self.flat_state[name][j]``,
    the state of flat buffer j (``self.buffers[j]``), laid out as that buffer's data.
    """

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
        self.flat = flatten_parameters(self.params)
        xp = B.get_xp()
        self.flat_state = {name: [xp.zeros_like(buf.data) for buf in self.flat] for name in self.buffers}
        self.state = {}
        for name, arrays in self.flat_state.items():
            views = {id(p): v for buf, a in zip(self.flat, arrays) for p, v in zip(buf.params, buf.views(a))}
            self.state[name] = [views[id(p)] for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def step(self):
        raise NotImplementedError

    def _flat_groups(self):
        """[(data, grad, *state arrays)] for one pass per flat buffer, or per parameter if a buffer was broken up."""
        if all(buf.intact() for buf in self.flat) and not B.plain():  # plain mode: parameter by parameter
            for buf in self.flat:
                buf.settle_grads()
            return [(buf.data, buf.grad, *(self.flat_state[n][j] for n in self.buffers))
                    for j, buf in enumerate(self.flat)]
        return [(p.data, p.grad, *(self.state[n][i] for n in self.buffers)) for i, p in enumerate(self.params)]

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
        for p, g, buf in self._flat_groups():
            sgd_fast(p, g, buf, self.lr, self.momentum, self.weight_decay)


class Adam(Optimizer):
    """Adam with exactly torch.optim.Adam's update (``adam_reference`` is the formula; a test keeps them equal).

    ``step`` runs ``adam_fast`` once per flat buffer (all the parameters of one dtype together).
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
        self.t += 1
        for p, g, m, v in self._flat_groups():
            adam_fast(p, g, m, v, self.t, self.lr, self.betas, self.eps, self.weight_decay)


def check_holds(optimizer, model, who, advice):
    """Raise a ValueError naming ``who`` unless ``optimizer`` updates exactly ``model.parameters()``, in that order
    (its moments are saved, restored and matched to parameters by position). ``advice`` says how to build one."""
    if [id(p) for p in optimizer.params] != [id(p) for p in model.parameters()]:
        raise ValueError(f"{who}: the optimizer does not hold this model's parameters in model.parameters() order "
                         f"(was it made for another model, or before the model was loaded?); {advice}")


class PerNetwork:
    """One optimizer per network of a model, used as one: a GAN's encoder, decoder and discriminator each keep
    their own Adam (own step count, moments and learning rate).

    ``optimizers``: {name: optimizer}; ``params`` is their parameters in that order (a checkpoint checks that this is
    the model's ``parameters()`` order). ``state_dict()`` is {"type": "PerNetwork", "networks": {name: state}}.
    """

    def __init__(self, optimizers):
        if not optimizers or not all(isinstance(o, Optimizer) for o in optimizers.values()):
            raise TypeError("PerNetwork takes a non-empty {name: optimizer} dict of tinyvae optimizers")
        self.optimizers = dict(optimizers)
        self.params = [p for o in self.optimizers.values() for p in o.params]

    def __getitem__(self, name):
        return self.optimizers[name]

    def zero_grad(self):
        for o in self.optimizers.values():
            o.zero_grad()

    def step(self):
        for o in self.optimizers.values():
            o.step()

    def state_dict(self):
        return {"type": "PerNetwork", "networks": {name: o.state_dict() for name, o in self.optimizers.items()}}

    def load_state_dict(self, state):
        if state.get("type") != "PerNetwork" or set(state.get("networks", {})) != set(self.optimizers):
            raise ValueError(f"PerNetwork.load_state_dict: expected the states of {sorted(self.optimizers)}, got "
                             f"{sorted(state.get('networks', {}))} ({state.get('type')!r})")
        for name, o in self.optimizers.items():
            o.load_state_dict(state["networks"][name])


# ==== The fast twins ==========================================================================================
# The same updates in place (cache-sized blocks on the CPU) or as one CuPy kernel (tinyvae.kernels). Tests keep
# each equal to its formula above; in plain mode (tinyvae.use_plain) each one calls that formula.


def sgd_fast(p, g, buf, lr, momentum=0.0, weight_decay=0.0):
    """``sgd_reference`` in place: p and buf are updated and returned (one fused kernel on CuPy)."""
    if B.plain():
        return _into((p, buf), sgd_reference(p, g, buf, lr, momentum, weight_decay))
    if B.fast_gpu():
        from . import kernels
        return kernels.sgd(p, g, buf, lr, momentum, weight_decay)
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf *= momentum
        buf += g
        g = buf
    p -= lr * g
    return p, buf


def adam_fast(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """``adam_reference`` in place: p, m and v are updated and returned.

    The step is rearranged to need no new arrays: m = b1 (m - g) + g and v = b2 (v - g^2) + g^2, and
    lr / c1 * m / (sqrt(v) / sqrt(c2) + eps) = (lr sqrt(c2) / c1) * m / (sqrt(v) + eps sqrt(c2)), c_i = 1 - b_i^t.
    On the CPU the twelve passes run block by block (a few hundred KB of each array, ``backend.cache_block``), so
    each block stays in cache from the first pass to the last. On CuPy the whole update is ONE fused kernel
    (``kernels.adam``), whatever the size: a flat buffer of all parameters then takes one launch.
    """
    if B.plain():
        return _into((p, m, v), adam_reference(p, g, m, v, t, lr, betas, eps, weight_decay))
    b1, b2 = betas
    root_c2 = math.sqrt(1 - b2**t)
    scale = lr * root_c2 / (1 - b1**t)
    eps_hat = eps * root_c2
    if B.fast_gpu():
        from . import kernels
        return kernels.adam(p, g, m, v, b1, b2, scale, eps_hat, weight_decay)
    xp = B.get_xp()
    g_all = g + weight_decay * p if weight_decay else g
    for rows in _row_blocks(p, B.cache_block(p.dtype)):  # views: the updates land in place
        w, gb, mb, vb = p[rows], g_all[rows], m[rows], v[rows]
        mb -= gb
        mb *= b1
        mb += gb
        g2 = gb * gb
        vb -= g2
        vb *= b2
        vb += g2
        denom = xp.sqrt(vb)
        denom += eps_hat
        update = mb / denom
        update *= scale
        w -= update
    return p, m, v


def _into(arrays, values):
    """Copy each new value into its array (a twin's in-place contract, kept in plain mode); returns the arrays."""
    for a, value in zip(arrays, values):
        a[...] = value
    return arrays


def _row_blocks(a, size):
    """Indices that cut ``a`` into views of whole rows, ``a[index]``, of about ``size`` elements each (one view of
    all of ``a`` when ``size`` is None or ``a`` is no bigger)."""
    rows = a.shape[0] if a.ndim else 1
    per_row = math.prod(a.shape[1:])
    if size is None or a.ndim == 0 or rows * per_row <= size:
        return [...]
    step = max(1, size // max(1, per_row))
    return [(slice(i, min(rows, i + step)), ...) for i in range(0, rows, step)]


def clip_grad_norm_fast(params, max_norm):
    """``clip_grad_norm`` with no read from the device (CuPy's path): the norm and the factor
    min(1, max_norm / (||g|| + 1e-6)) stay 0-d device arrays, and every gradient is multiplied by the factor (by
    exactly 1 when no clipping is needed). Parameters that fill one flat buffer (an optimizer's) take one dot
    product and one scaling of the buffer's gradient; others one sum per parameter. Returns the norm as a 0-d
    array (``float`` reads it)."""
    if B.plain():
        return clip_grad_norm(params, max_norm)
    xp = B.get_xp()
    params = list(params)
    flat = params[0]._flat if params else None
    whole = flat is not None and flat.intact() and len(flat.params) == len(params) and all(
        p is q for p, q in zip(flat.params, params))
    if whole:
        flat.settle_grads()
        total = xp.sqrt(xp.dot(flat.grad, flat.grad))
    else:
        total = xp.sqrt(xp.sum(xp.stack([xp.sum(p.grad * p.grad) for p in params])))
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in ([flat.grad] if whole else [p.grad for p in params]):
        g *= B.astype(scale, g.dtype)
    return total
