"""Module, Sequential and Parameter: what every layer and model is built from.

A Module keeps what its backward pass needs during ``forward(x)``; ``backward(dout)`` takes the gradient of the
loss with respect to the module's output, ADDS the gradients of its parameters into their ``.grad`` (with
``Parameter.accumulate``; as PyTorch does, so call ``zero_grad()`` between steps) and returns the gradient with
respect to its input.

Where an optimizer keeps the parameters (one flat buffer per dtype) is ``tinyvae/flat.py``.
"""
from . import backend as B


class Module:
    """Base class: subclasses define ``forward`` and ``backward`` and keep Parameters and Modules as attributes."""

    training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        """dx = dL/dx from dout = dL/dy (the shape of forward's output); returns dx (the shape of its input), and
        ADDS each parameter's gradient into its .grad. What it needs from forward it reads from ``self._cache``."""
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward_pair_fast(self, x, following):
        """``following.forward(self.forward(x))`` in fewer passes or launches, or None if this module fuses with
        nothing (the default): see ``Dense.forward_pair_fast``."""
        return None

    def _saved(self, value):
        """What forward stored for backward (``self._cache``); a clear error if forward has not run yet."""
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
        if B.fast_gpu():
            return self.forward_fast(x)
        for m in self.layers:
            x = m.forward(x)
        return x

    def forward_fast(self, x):
        """``forward`` letting each layer fuse itself with the next where it can (``forward_pair_fast``: a Dense
        layer and the ReLU after it in one CuPy kernel): the same numbers, fewer launches."""
        i = 0
        while i < len(self.layers):
            m, following = self.layers[i], self.layers[i + 1] if i + 1 < len(self.layers) else None
            y = m.forward_pair_fast(x, following) if following is not None else None
            x, i = (m.forward(x), i + 1) if y is None else (y, i + 2)
        return x

    def backward(self, dout):
        """dx = m_1'(... m_n'(dout)): each module's backward, last to first, feeds the one before it.

        dout: the shape of the last module's output, e.g. (N, D_out); returns dx, the shape of the first module's
        input, e.g. (N, D_in), or None when the first layer was told not to compute it (``input_grad = False``).
        """
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


class Parameter:
    """A trainable array ``.data`` and the gradient ``.grad`` accumulated for it (same shape, dtype, device).

    ``.grad`` reads as zeros until a backward pass adds to it, exactly as an array cleared by ``zero_grad()``
    and then added to. Underneath, ``zero_grad()`` only marks the gradient as zero instead of writing zeros into
    it, and the next ``accumulate(g)`` copies ``g`` in (or, outside a flat buffer, keeps ``g`` itself) rather than
    adding it to zeros: a training step then makes no extra pass over every gradient.

    Once an optimizer is built over it (or ``flatten_parameters`` is called), ``.data`` and ``.grad`` are views
    into one contiguous array per dtype (a ``FlatBuffer``), so the optimizer can update every parameter in one pass.
    They are still ordinary arrays of the parameter's shape. Assigning ``p.data = a`` or ``p.grad = g`` then COPIES
    the values into the view (shape and dtype must match), so a parameter never silently leaves its buffer.
    """

    def __init__(self, data):
        self._data = data
        self._grad = None       # outside a buffer, None means zeros: see the class docstring
        self._flat = None       # the FlatBuffer whose views .data and .grad are, if any
        self._grad_zero = True  # inside a buffer: the grad view holds old numbers that stand for zeros

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        if self._flat is None:
            self._data = value
        elif value is not self._data:  # `p.data -= u` assigns the same array back: nothing to copy
            if tuple(value.shape) != self.shape or value.dtype != self._data.dtype:
                raise ValueError(
                    f"Parameter.data: this parameter lives in a flat buffer (an optimizer was built over it), so "
                    f"a new value is copied in and must have shape {self.shape} and dtype "
                    f"{B.dtype_name(self._data.dtype)}; got shape {tuple(value.shape)} and dtype {value.dtype}")
            self._data[...] = value

    @property
    def grad(self):
        if self._flat is not None:
            if self._grad_zero:
                self._grad[...] = 0.0
                self._grad_zero = False
            return self._grad
        if self._grad is None:
            self._grad = B.get_xp().zeros_like(self._data)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self.zero_grad()
            return
        value = self._checked(value, "grad")
        if self._flat is None:
            self._grad = value
        elif value is not self._grad:
            self._grad[...] = value
            self._grad_zero = False

    def accumulate(self, g):
        """grad += g, for a backward pass. Right after ``zero_grad()`` ``g`` is copied in (inside a flat buffer)
        or becomes ``.grad`` itself (outside one, so ``g`` must then be a new array nothing else will change)
        rather than being added to zeros.
        """
        if self._flat is not None:
            if self._grad_zero:
                self._grad[...] = self._checked(g, "accumulate")
                self._grad_zero = False
            else:
                self._grad += g
        elif self._grad is None:
            self._grad = self._checked(g, "accumulate")
        else:
            self._grad += g

    def accumulate_product(self, a, b):
        """grad += a @ b (a Dense layer's dW = x^T dout). Right after ``zero_grad()`` inside a flat buffer, NumPy and
        CuPy write the product straight into the gradient's memory (``matmul(..., out=)``) instead of making it
        and then copying it in; otherwise this is ``accumulate(a @ b)``."""
        if self._flat is not None and self._grad_zero and self._writes_in_place():
            if tuple(a.shape[:-1]) + tuple(b.shape[1:]) == self.shape and a.dtype == b.dtype == self._data.dtype:
                B.get_xp().matmul(a, b, out=self._grad)
                self._grad_zero = False
                return
        self.accumulate(a @ b)

    def accumulate_sum(self, a):
        """grad += sum of ``a`` over its first axis (a Dense layer's db = sum_n dout). Right after ``zero_grad()``
        inside a flat buffer, NumPy and CuPy sum straight into the gradient's memory (``sum(..., out=)``: one pass,
        one launch on a GPU); otherwise this is ``accumulate(sum(a, axis=0))``."""
        xp = B.get_xp()
        if self._flat is not None and self._grad_zero and self._writes_in_place():
            if tuple(a.shape[1:]) == self.shape and a.dtype == self._data.dtype:
                xp.sum(a, axis=0, out=self._grad)
                self._grad_zero = False
                return
        self.accumulate(xp.sum(a, axis=0))

    @staticmethod
    def _writes_in_place():
        """NumPy and CuPy can write a product or a sum straight into the gradient (``out=``); not in plain mode."""
        return B.backend_name() in ("numpy", "cupy") and not B.plain()

    def zero_grad(self):
        if self._flat is None:
            self._grad = None
        else:
            self._grad_zero = True

    def _checked(self, g, who):
        if tuple(g.shape) != self.shape or g.dtype != self._data.dtype:
            raise ValueError(f"Parameter.{who}: expected a gradient of shape {self.shape} and dtype "
                             f"{B.dtype_name(self._data.dtype)}, got shape {tuple(g.shape)} and dtype {g.dtype}")
        return g

    @property
    def shape(self):
        return tuple(self._data.shape)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={B.dtype_name(self._data.dtype)})"
