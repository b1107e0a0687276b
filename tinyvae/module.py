"""Parameter, Module and Sequential: what every layer and model is built from.

A Module keeps what its backward pass needs during ``forward(x)``; ``backward(dout)`` takes the gradient of the
loss with respect to the module's output, ADDS the gradients of its parameters into their ``.grad`` (with
``Parameter.accumulate``; as PyTorch does, so call ``zero_grad()`` between steps) and returns the gradient with
respect to its input.
"""
from . import backend as B


class Parameter:
    """A trainable array ``.data`` and the gradient ``.grad`` accumulated for it (same shape, dtype, device).

    ``.grad`` reads as zeros until a backward pass adds to it, exactly as an array cleared by ``zero_grad()``
    and then added to. Underneath, ``zero_grad()`` drops the array instead of writing zeros into it, and the next
    ``accumulate(g)`` keeps ``g`` itself instead of adding it to zeros: a training step then makes neither pass
    over every gradient, a few per cent of the step for the models here.
    """

    def __init__(self, data):
        self.data = data
        self._grad = None  # None means zeros: see the class docstring

    @property
    def grad(self):
        if self._grad is None:
            self._grad = B.get_xp().zeros_like(self.data)
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = None if value is None else self._checked(value, "grad")

    def accumulate(self, g):
        """grad += g, for a backward pass. ``g`` must be a new array that nothing else will change: right after
        ``zero_grad()`` it becomes ``.grad`` itself rather than being added to zeros.
        """
        if self._grad is None:
            self._grad = self._checked(g, "accumulate")
        else:
            self._grad += g

    def zero_grad(self):
        self._grad = None

    def _checked(self, g, who):
        if tuple(g.shape) != self.shape or g.dtype != self.data.dtype:
            raise ValueError(f"Parameter.{who}: expected a gradient of shape {self.shape} and dtype "
                             f"{B.dtype_name(self.data.dtype)}, got shape {tuple(g.shape)} and dtype {g.dtype}")
        return g

    @property
    def shape(self):
        return tuple(self.data.shape)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={B.dtype_name(self.data.dtype)})"


class Module:
    """Base class: subclasses define ``forward`` and ``backward`` and keep Parameters and Modules as attributes."""

    training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _saved(self, value):
        """What forward stored for backward; a clear error if forward has not run yet."""
        if value is None:
            name = type(self).__name__
            raise RuntimeError(f"{name}.backward was called before {name}.forward: call forward first")
        return value

    def children(self):
        """Sub-modules held as attributes (or in list/tuple attributes), in the order they were set."""
        for value in vars(self).values():
            if isinstance(value, Module):
                yield value
            elif isinstance(value, (list, tuple)):
                yield from (m for m in value if isinstance(m, Module))

    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs in a stable order: own parameters first, then each child's."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value.named_parameters(f"{prefix}{name}.")
            elif isinstance(value, (list, tuple)):
                for i, m in enumerate(value):
                    if isinstance(m, Module):
                        yield from m.named_parameters(f"{prefix}{name}.{i}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode=True):
        """Training mode (a denoising autoencoder corrupts its input only in training mode)."""
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        """A copy of every parameter array, keyed by its name."""
        return {name: B.copy(p.data) for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters; every name must match and every shape must agree."""
        params = dict(self.named_parameters())
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for name, p in params.items():
            value = B.asarray(state[name], dtype=p.data.dtype)
            if tuple(value.shape) != p.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {name!r} has shape {tuple(value.shape)}, "
                                 f"expected {p.shape}")
            p.data[...] = value

    def __repr__(self):
        kids = [repr(c).replace("\n", "\n  ") for c in self.children()]
        if not kids:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(\n  " + "\n  ".join(kids) + "\n)"


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Backward: dx = m_1'(... m_n'(dout)), each module's backward feeding the one before it.
    """

    def __init__(self, *modules):
        for m in modules:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes Modules, got {type(m).__name__}")
        self.layers = list(modules)

    def forward(self, x):
        for m in self.layers:
            x = m.forward(x)
        return x

    def backward(self, dout):
        for m in reversed(self.layers):
            dout = m.backward(dout)
            if dout is None:  # a first Dense layer told not to compute its input gradient
                break
        return dout

    def named_parameters(self, prefix=""):
        """Named by position, as "0.W", "2.b": the layer list itself adds nothing to the name."""
        for i, m in enumerate(self.layers):
            yield from m.named_parameters(f"{prefix}{i}.")

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)
