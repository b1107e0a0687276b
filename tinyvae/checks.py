"""Every input check shared by more than one module, written once: positive ints, batches, sizes, labels.

Each raises an ``InputError`` (a ValueError) or ``InputTypeError`` (a TypeError) whose message names what was wrong
(``name`` or ``who``) and what was expected. Nothing here does array math beyond reading shapes and dtypes.
"""
from . import backend as B
from .errors import InputError, InputTypeError


def positive_int(value, name, minimum=1):
    """``value`` if it is an int >= ``minimum`` (bools refused), else an error naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def positive_ints(who="", **values):
    """Each keyword value an int >= 1 (a name holding "padding" may be 0); ``who`` prefixes the message."""
    prefix = f"{who}: " if who else ""
    for name, n in values.items():
        positive_int(n, prefix + name, 0 if "padding" in name else 1)


def layer_sizes(input_dim, hidden, latent_dim):
    """``hidden`` as a tuple (one int is one layer), after checking every size is a positive int."""
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    for name, n in [("input_dim", input_dim), ("latent_dim", latent_dim)] + [("hidden", h) for h in hidden]:
        positive_int(n, name)
    return hidden


def one_of(value, choices, what, who=""):
    """``value`` if it is one of ``choices``, else an error listing them (``who`` prefixes the message)."""
    if value not in choices:
        prefix = f"{who}: " if who else ""
        raise InputError(f"{prefix}unknown {what} {value!r}: expected one of {', '.join(map(str, choices))}")
    return value


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
        raise InputError(f"{who} expects a 2-D batch of shape (N, {width}); got shape {tuple(x.shape)}{hint}")
    if x.shape[1] != width:
        raise InputError(f"{who} expects input of shape (N, {width}); got shape {tuple(x.shape)}")
    if not B.is_floating(x):
        raise InputTypeError(f"{who} expects floating-point input; got {x.dtype}. Convert it first, e.g. "
                             "tinyvae.asarray(images, dtype='float32') / 255")
    if dtype is not None and x.dtype != dtype:
        raise InputTypeError(
            f"{who} holds {B.dtype_name(dtype)} parameters but got {B.dtype_name(x.dtype)} input: convert the "
            f"input with tinyvae.asarray(x, dtype='{B.dtype_name(dtype)}') or build the layer with that dtype")
    return x


def check_grad_shape(dout, shape, who):
    """An error naming ``who`` unless the upstream gradient ``dout`` has the shape of the forward output."""
    if tuple(dout.shape) != tuple(shape):
        raise InputError(f"{who}.backward expects dout of shape {tuple(shape)}; got {tuple(dout.shape)}")


def check_labels(labels, n, num_classes, who, values=True):
    """``labels`` as an integer array of shape (n,) with every value in [0, num_classes), or a clear error.

    ``values=False`` checks the shape and dtype only: the range check reads the labels' minimum and maximum from the
    device, so a training loop that checked all its labels once (``train.fit``) skips it at every step."""
    if not B.is_array(labels):
        labels = B.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(f"{who}: labels must have shape ({n},), one class index per example; "
                         f"got shape {tuple(labels.shape)}")
    if "int" not in str(labels.dtype):
        raise InputTypeError(f"{who}: labels must be integers (class indices); got dtype {labels.dtype}")
    if values and n and (int(B.get_xp().min(labels)) < 0 or int(B.get_xp().max(labels)) >= num_classes):
        raise InputError(f"{who}: labels must lie in [0, {num_classes}); got values from "
                         f"{int(B.get_xp().min(labels))} to {int(B.get_xp().max(labels))}")
    return labels


def model_data(model, x, who):
    """``x`` as a non-empty (N, model.input_dim) array of the model's dtype on the active backend (one transfer)."""
    if not hasattr(x, "dtype"):  # a list: let the backend pick the dtype, then check it
        x = B.asarray(x)
    try:
        B.dtype_name(x.dtype)
    except ValueError:
        raise InputTypeError(f"{who}: expected float32 or float64 pixel intensities in [0, 1], got dtype {x.dtype} "
                             "(divide integer images by 255)") from None
    width = model.input_dim
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] == 0:
        raise InputError(f"{who}: expected a non-empty array of shape (N, {width}) for this model, "
                         f"got shape {tuple(x.shape)}")
    return B.asarray(x, dtype=model.dtype)


def model_labels(model, y, n, who):
    """Labels (N,) on the device for a model with ``needs_labels``; None for other models (labels are ignored)."""
    if not getattr(model, "needs_labels", False):
        return None
    if y is None:
        raise InputError(f"{who}: {type(model).__name__} needs labels (needs_labels = True): pass them as well")
    y = B.asarray(y) if not B.is_array(y) else y
    if y.ndim != 1 or y.shape[0] != n:
        raise InputError(f"{who}: expected one label per example, shape ({n},), got shape {tuple(y.shape)}")
    return y


def need_vae(model, who):
    """An error naming ``who`` unless ``model`` is a VAE (it has a KL weight ``beta``: an encoder q(z|x))."""
    if not hasattr(model, "beta"):
        raise InputTypeError(f"{who} needs a VAE (an encoder q(z|x) with mu and logvar), got {type(model).__name__}")
