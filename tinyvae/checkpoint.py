"""Checkpoints: a model, its optimizer state and any metadata in one ``.npz`` file that loads without pickle.

    save(model, "vae.npz", optimizer, epoch=5, history=history.to_dict())
    ckpt = load("vae.npz")          # ckpt.model, ckpt.optimizer, ckpt.meta, ckpt.config
    fit(ckpt.model, x, 5, optimizer=ckpt.optimizer, start_epoch=ckpt.meta["epoch"],
        history=History.from_dict(ckpt.meta["history"]))   # exactly as if training had never stopped

The file holds ``param/<name>`` for every parameter (``model.named_parameters()``), ``optim/<name>`` for every
optimizer buffer ("m.0", "v.0", ... or "momentum_buffer.0", ...), and ``config``: a JSON document stored as a
uint8 array of UTF-8 bytes, so that ``np.load(path, allow_pickle=False)`` reads everything (see ``save``).
"""
# Host-only: the file is written and read with NumPy (arrays reach the host through B.to_numpy and go back through
# B.asarray); no array math here.
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import backend as B
from . import kinds, optim
from .errors import CheckpointError, InputTypeError, MissingFileError
from .files import atomic_write

FORMAT = "tinyvae-checkpoint"
FORMAT_VERSION = 1
OPTIMIZERS = {"Adam": optim.Adam, "SGD": optim.SGD}


@dataclass
class Checkpoint:
    """What ``load`` returns: the rebuilt model, its optimizer (None if none was saved), the metadata and the config."""

    model: object
    optimizer: object = None
    meta: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def _check_target(path):
    """A clear error now, rather than a temporary-file error later, for a folder or a missing parent folder."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint path {path} is a folder: give a file name, e.g. "
                                f"{os.path.join(path, 'model.npz')}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise MissingFileError(f"cannot write checkpoint {path}: the folder {parent} does not exist")


def _optimizer_state(optimizer, arrays, prefix):
    """The optimizer's description {"type", "t", "hyperparameters"}; its buffers go into ``arrays`` under prefix."""
    kind = type(optimizer).__name__
    if OPTIMIZERS.get(kind) is not type(optimizer):
        raise InputTypeError(f"save: cannot save a {kind} optimizer; supported: {', '.join(OPTIMIZERS)}, PerNetwork")
    state = optimizer.state_dict()
    arrays.update({f"{prefix}{name}": B.to_numpy(a) for name, a in state["buffers"].items()})
    return {"type": kind, "t": int(state["t"]), "hyperparameters": state["hyperparameters"]}


def save(model, path, optimizer=None, **meta):
    """Write ``model`` (and ``optimizer``'s state, if given) to ``path`` as one .npz; ``meta`` must be JSON-able.

    The config entry reads:
        {"format": "tinyvae-checkpoint", "format_version": 1, "tinyvae_version": "0.1.0", "backend": "numpy",
         "model": model.config(), "optimizer": {"type": "Adam", "t": 1200, "hyperparameters": {...}} or null,
         "meta": {...the keyword arguments given to save...}}

An ``optim.PerNetwork`` (a VAE-GAN's one Adam per network) is saved as {"type": "PerNetwork", "networks":
{name: {"type", "t", "hyperparameters"}}} with its buffers under ``optim/<name>/``; ``load`` rebuilds it over
``model.networks()``.

    The file is written under a temporary name in the same folder and renamed into place (os.replace), so ``path``
    holds either the old checkpoint or the complete new one, never half a file. ``path`` is used exactly as given
    (no ".npz" is appended). Returns ``path``.
    """
    path = os.fspath(path)
    _check_target(path)
    arrays = {f"param/{name}": B.to_numpy(p.data) for name, p in model.named_parameters()}
    opt_config = None
    if optimizer is not None:
        optim.check_holds(optimizer, model, "save", "its state could not be restored onto the model")
        if isinstance(optimizer, optim.PerNetwork):  # one optimizer per network: optim/<network>/m.0, ...
            opt_config = {"type": "PerNetwork", "networks": {}}
            for net, opt in optimizer.optimizers.items():
                opt_config["networks"][net] = _optimizer_state(opt, arrays, f"optim/{net}/")
        else:
            opt_config = _optimizer_state(optimizer, arrays, "optim/")
    from . import __version__  # here, not at the top: the package imports this module while it initialises

    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "tinyvae_version": __version__,
              "backend": B.backend_name(), "model": model.config(), "optimizer": opt_config, "meta": meta}
    try:
        text = json.dumps(config)
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"save: the metadata must be JSON-serializable (numbers, strings, lists, dicts; use "
                        f"History.to_dict() for a History): {err}") from None
    arrays["config"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    try:
        with atomic_write(path) as f:
            np.savez(f, **arrays)
    except PermissionError:
        folder = os.path.dirname(os.path.abspath(path))
        raise PermissionError(f"cannot write checkpoint {path}: the folder {folder} is not writable") from None
    return path


def read_arrays(path):
    """Every array in the file, read eagerly so that a truncated member fails here, with the file named."""
    if not os.path.exists(path):
        raise MissingFileError(f"checkpoint {path} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint path {path} is a folder, not a checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is not a tinyvae checkpoint: not an .npz (zip) file, or it is "
                         "truncated or corrupt")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {err}") from None


def _config(path, arrays):
    if "config" not in arrays:
        raise CheckpointError(f"checkpoint {path} has no 'config' entry: it is an .npz file, but not one written by "
                         "tinyvae.save")
    try:
        config = json.loads(bytes(arrays["config"].astype(np.uint8)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path}: its 'config' entry is not valid JSON ({err}); the file is corrupt") \
            from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: its 'config' entry is not a tinyvae checkpoint description")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version!r}; this tinyvae reads version "
                         f"{FORMAT_VERSION} (written by tinyvae {config.get('tinyvae_version', '?')})")
    for key in ("model", "optimizer", "meta"):
        if key not in config:
            raise CheckpointError(f"checkpoint {path}: its config lacks the {key!r} entry; the file is corrupt")
    return config


def _take(path, arrays, prefix, names, what):
    """{name: arrays[prefix + name]} for exactly ``names``; a clear error for a missing or unexpected key."""
    present = {key[len(prefix):] for key in arrays if key.startswith(prefix)}
    missing, unexpected = sorted(set(names) - present), sorted(present - set(names))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path}: the {what} arrays do not match the saved configuration: missing "
                         f"{[prefix + m for m in missing]}, unexpected {[prefix + u for u in unexpected]}")
    return {name: arrays[prefix + name] for name in names}


def load(path):
    """Read a checkpoint written by ``save``; the model and optimizer are rebuilt on the ACTIVE backend.

    Returns a ``Checkpoint(model, optimizer, meta, config)``; ``optimizer`` is None when none was saved. A missing
    file is a FileNotFoundError; a file that is not a tinyvae checkpoint (not a zip, truncated, a foreign .npz, an
    unsupported format version, a missing or misshapen array) is a ValueError naming the file and the problem.
    """
    path = os.fspath(path)
    arrays = read_arrays(path)
    config = _config(path, arrays)
    try:
        # A fixed generator: the initial weights are overwritten, and the global generator stays untouched.
        model = kinds.build({**config["model"], "rng": B.Generator(0)})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: cannot rebuild the model from {config['model']}: {err}") from None
    names = [name for name, _ in model.named_parameters()]
    try:
        model.load_state_dict(_take(path, arrays, "param/", names, "parameter"))
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: {err}") from None

    optimizer = None
    opt = config["optimizer"]
    if isinstance(opt, dict) and opt.get("type") == "PerNetwork":
        optimizer = _per_network(path, arrays, model, opt)
    elif opt is not None:
        optimizer = _optimizer(path, arrays, model.parameters(), opt, "optim/")
    elif any(key.startswith("optim/") for key in arrays):
        raise CheckpointError(f"checkpoint {path} holds optimizer arrays but no optimizer description; it is corrupt")
    return Checkpoint(model=model, optimizer=optimizer, meta=config["meta"], config=config)


def _optimizer(path, arrays, params, opt, prefix):
    """The optimizer described by ``opt`` over ``params``, its buffers read from ``arrays`` under ``prefix``."""
    cls = OPTIMIZERS.get(opt.get("type")) if isinstance(opt, dict) else None
    if cls is None or not isinstance(opt.get("hyperparameters"), dict) or "t" not in opt:
        raise CheckpointError(f"checkpoint {path}: the optimizer description {opt!r} is not one this tinyvae reads "
                         f"(expected type one of {', '.join(OPTIMIZERS)}, with 't' and 'hyperparameters')")
    hyper = opt["hyperparameters"]
    optimizer = cls(params, lr=hyper.get("lr", 1e-3))
    buffers = [f"{b}.{i}" for b in cls.buffers for i in range(len(optimizer.params))]
    state = {"type": opt["type"], "t": opt["t"], "hyperparameters": hyper,
             "buffers": _take(path, arrays, prefix, buffers, "optimizer")}
    try:
        optimizer.load_state_dict(state)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path}: {err}") from None
    return optimizer


def _per_network(path, arrays, model, opt):
    """An ``optim.PerNetwork`` rebuilt over ``model.networks()`` from its saved description."""
    networks = getattr(model, "networks", lambda: {})()
    saved = opt.get("networks")
    if not isinstance(saved, dict) or set(saved) != set(networks):
        raise CheckpointError(f"checkpoint {path}: the per-network optimizer covers {sorted(saved or {})}, but the "
                         f"model's networks are {sorted(networks)}")
    return optim.PerNetwork({net: _optimizer(path, arrays, params, saved[net], f"optim/{net}/")
                             for net, params in networks.items()})
