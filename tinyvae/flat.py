"""Flat buffers: the parameters of one dtype laid out in ONE contiguous array, so that an optimizer updates them all
in one pass (one fused kernel on a GPU) instead of one pass per parameter.

``flatten_parameters`` (called when an optimizer is built) makes them; each ``Parameter``'s ``.data`` and ``.grad``
then become views into a ``FlatBuffer``. Nothing here changes a number: it is where the values live.
"""
import math

from . import backend as B
from .module import Parameter


class FlatBuffer:
    """The data and the gradients of some Parameters of one dtype, each in ONE contiguous 1-D array.

    ``buf.data[a:b]`` reshaped to a parameter's shape IS that parameter's ``.data`` (a view), and likewise for
    ``.grad``, so an optimizer can update all of them with a few passes over ``buf.data`` (one fused kernel on a
    GPU) instead of a few passes per parameter. The parameters' values (and any gradient they hold) are copied in.
    """

    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ValueError("FlatBuffer got an empty parameter list")
        dtype = self.params[0].data.dtype
        if any(p.data.dtype != dtype for p in self.params):
            raise ValueError("FlatBuffer: every parameter must have the same dtype (flatten_parameters groups them)")
        sizes = [math.prod(p.shape) for p in self.params]
        self.offsets = [0]
        for size in sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.data = B.empty((self.offsets[-1],), dtype)
        self.grad = B.empty((self.offsets[-1],), dtype)
        for p, view, gview in zip(self.params, self.views(self.data), self.views(self.grad)):
            view[...] = p.data
            had_grad = p._grad is not None if p._flat is None else not p._grad_zero
            if had_grad:
                gview[...] = p._grad
            p._data, p._grad, p._flat, p._grad_zero = view, gview, self, not had_grad

    def views(self, flat):
        """Views of the 1-D array ``flat`` (the buffer's length) shaped like each parameter, in order."""
        xp = B.get_xp()
        return [xp.reshape(flat[a:b], p.shape) for p, a, b in zip(self.params, self.offsets, self.offsets[1:])]

    def intact(self):
        """True while every parameter still lives here (none has been moved to another buffer since)."""
        return all(p._flat is self for p in self.params)

    def settle_grads(self):
        """Write real zeros where a gradient is marked zero, so that ``self.grad`` can be read as a whole."""
        for p in self.params:
            if p._grad_zero:
                p._grad[...] = 0.0
                p._grad_zero = False

    def __repr__(self):
        return f"FlatBuffer({len(self.params)} parameters, {self.offsets[-1]} values, {B.dtype_name(self.data.dtype)})"


def flatten_parameters(params):
    """Put ``params`` into flat buffers, one ``FlatBuffer`` per dtype (in order of first appearance); returns them.

    Parameters already forming exactly one intact buffer (same parameters, same order) keep it, so building a
    second optimizer over the same model costs nothing. Otherwise a new buffer is made and the values move into it;
    an optimizer over the old buffer then notices (``intact()`` is False) and updates parameter by parameter.
    """
    params = list(params)
    if len({id(p) for p in params}) != len(params):
        raise ValueError("flatten_parameters: a parameter appears more than once in the list")
    groups = {}
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"flatten_parameters takes Parameters (model.parameters()), got {type(p).__name__}")
        groups.setdefault(B.dtype_name(p.data.dtype), []).append(p)
    buffers = []
    for group in groups.values():
        old = group[0]._flat
        if old is not None and old.params == group and old.intact():
            buffers.append(old)
        else:
            buffers.append(FlatBuffer(group))
    return buffers
