"""``tinyvae train``: a new run (or ``--resume RUN_DIR``), written to a fresh run folder with its figures.

Which options a model takes, how it trains and what its checkpoint holds come from ``tinyvae.kinds``; nothing
here branches on the model's kind. Every option defaults to None on the parser, so that "given" and "not given"
differ: an option that does not apply to the model, or (with ``--resume``) that differs from the checkpoint's, is
refused by name rather than dropped.
"""
import os
import time
import warnings
from datetime import datetime
from pathlib import Path

from .. import backend as B
from .. import checkpoint
from ..errors import TinyVAEError
from ..kinds import KINDS, OPTIONS
from .common import (BINARIZE, DATASET_HELP, UsageError, add_common, at_least, int_list, load_checkpoint, load_data, plural,
                     positive_float, subcommand, write_json)
from .figures import remove_figures, write_figures
from .report import print_figures, test_figures, units_lines

RUNS = Path("runs")  # new runs go to runs/<model>-<date>-<time>; runs/latest points at the newest
ERROR = "tinyvae train: error:"


READS = {"int": at_least(1), "ints": int_list, "float": float}  # how a kinds.Option's value is parsed


def _text(value):
    """A value as it is typed on the command line: 400,200 for a list."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


# What a run records and --resume keeps: name -> (flag, default for a new run).
TRAINING = {"model": ("--model", "vae"), "dataset": ("--dataset", "mnist-small"), "batch_size": ("--batch-size", 128),
            "kl_warmup": ("--kl-warmup", 0), "clip": ("--clip", None), "seed": ("--seed", 0), "lr": ("--lr", 1e-3),
            "dtype": ("--dtype", None), "binarize": ("--binarize", None)}
LOOP = {"kl_warmup", "clip", "binarize"}  # options of the training loop, taken by the kinds whose Kind.training lists them


def _args_train(p):
    p.add_argument("--model", choices=tuple(KINDS), help="which model to train (default: vae)")
    p.add_argument("--dataset", help=f"{DATASET_HELP} (default: mnist-small)")
    p.add_argument("--epochs", type=at_least(1), default=20, help="epochs to train (more epochs with --resume)")
    for o in OPTIONS.values():
        takers = [name for name, kind in KINDS.items() if o.keyword in kind.options]
        models = "" if len(takers) == len(KINDS) else f"; --model {', '.join(takers)}"
        reads = {"choices": o.reads} if isinstance(o.reads, tuple) else {"type": READS[o.reads]}
        shown = "the model's own" if o.default is None else _text(o.default)
        p.add_argument(o.flag, dest=o.keyword, help=f"{o.help} (default: {shown}{models})", **reads)
    p.add_argument("--kl-warmup", type=at_least(0), help="epochs over which beta rises from 0 (default: 0)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (default: 0.001)")
    p.add_argument("--clip", type=positive_float, help="largest joint L2 norm of the gradients (default: no clipping)")
    p.add_argument("--batch-size", type=at_least(1), help="examples per step (default: 128)")
    p.add_argument("--dtype", choices=B.DTYPES, help="floating dtype (default: $TINYVAE_DTYPE, else float32)")
    p.add_argument("--seed", type=at_least(0), help="random seed (default: 0)")
    p.add_argument("--binarize", choices=BINARIZE,
                   help="binary pixels, the setting of binarized-MNIST likelihoods: dynamic (a new Bernoulli draw of "
                        "every training batch, the test images drawn once, seed 0), static (both drawn once), none "
                        "(grey levels) (default: none; dynamic for --model ssvae)")
    p.add_argument("--out", help="output folder (default: a new folder runs/MODEL-DATE-TIME, and runs/latest "
                                 "points at it; RUN_DIR with --resume)")
    p.add_argument("--force", action="store_true", help="replace the run in --out (its figures are removed)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR for --epochs more epochs, with "
                                                       "its model, optimizer and options (a different one is refused)")
    p.add_argument("--no-figures", action="store_true", help="write the checkpoint and metrics.json only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common(p, seed=False)


# ------------------------------------------------------------------------------------------------ the options
def _refuse_foreign(args, kind):
    """An error for a given option that ``kind`` does not take, naming the option, the model and those that do."""
    for o in OPTIONS.values():
        value = getattr(args, o.keyword)
        if value is not None and o.keyword not in kind.options:
            takers = [name for name, k in KINDS.items() if o.keyword in k.options]
            raise UsageError(f"{ERROR} {o.flag} {_text(value)}: --model {kind.name} has no {o.what} "
                             f"(it applies to --model {', '.join(takers)})")
    for name in sorted(LOOP - set(kind.training)):
        if getattr(args, name) is not None:
            raise UsageError(f"{ERROR} {TRAINING[name][0]}: --model {kind.name} trains with its own loop, which "
                             "has no such option")


def model_kwargs(args, kind, data):
    """The constructor arguments of a new run: the options ``kind`` takes (given, or their defaults), the data's."""
    kwargs = {"dtype": args.dtype, "rng": args.seed, **kind.data_args(data)}
    for o in OPTIONS.values():
        value = getattr(args, o.keyword)
        value = o.default if value is None else value
        if o.keyword in kind.options and value is not None:
            kwargs[o.keyword] = value
    return kwargs


def _new_run(args):
    """(model, optimizer, None, data) of a new run; the options not given take their defaults."""
    kind = KINDS[args.model or TRAINING["model"][1]]
    _refuse_foreign(args, kind)
    for name, (_, default) in TRAINING.items():
        if getattr(args, name) is None:
            setattr(args, name, {"dtype": B.dtype_name(None), "binarize": kind.binarize}.get(name, default))
    data = load_data(args.dataset, progress=not args.quiet, binarize=args.binarize)
    try:
        model = kind.cls(**model_kwargs(args, kind, data))
    except TinyVAEError as err:  # a value out of the model's range (--beta -1): the model's own message
        raise UsageError(f"{ERROR} {err}") from None
    return model, kind.optimizer(model, args.lr), None, data


def _refuse_changed(args, given, saved, source):
    """An error for an option given with ``--resume`` whose value differs from the checkpoint's."""
    for name, (flag, value) in given.items():
        if name in saved and saved[name] != value:
            raise UsageError(f"{ERROR} {flag} {_text(value)}: the run in {args.resume} has {flag} "
                             f"{_text(saved[name])} ({source}); --resume continues it unchanged: drop {flag}, or "
                             "start a new run")


def _resumed_run(args):
    """(model, optimizer, history, data) from ``RUN_DIR/model.npz``; options given must match the checkpoint's."""
    path = Path(args.resume) / "model.npz"
    if not path.is_file():
        raise UsageError(f"{ERROR} --resume {args.resume}: no {path} (give the --out folder of an earlier "
                         "tinyvae train)")
    ckpt = load_checkpoint(path)
    if ckpt.optimizer is None or "history" not in ckpt.meta:
        raise UsageError(f"{ERROR} --resume: {path} holds no optimizer state or history")
    kind, config = KINDS[ckpt.model.kind], ckpt.model.config()
    saved = {**_saved_training(ckpt), "model": kind.name, "dtype": ckpt.model.dtype}
    _refuse_changed(args, {n: (TRAINING[n][0], getattr(args, n)) for n in TRAINING if getattr(args, n) is not None},
                    saved, "the checkpoint's training options")
    _refuse_foreign(args, kind)
    _refuse_changed(args, {o.keyword: (o.flag, _config_value(getattr(args, o.keyword), config.get(o.keyword)))
                           for o in OPTIONS.values() if getattr(args, o.keyword) is not None},
                    config, "the checkpoint's model")
    for name in TRAINING:
        setattr(args, name, saved.get(name, TRAINING[name][1]))
    if args.binarize is None:  # a run recorded before --binarize: it trained as its kind does by default
        args.binarize = kind.binarize
    data = load_data(args.dataset, progress=not args.quiet, binarize=args.binarize)
    return ckpt.model, ckpt.optimizer, kind.history.from_dict(ckpt.meta["history"]), data


def _saved_training(ckpt):
    """The training options a checkpoint recorded; ``lr`` read from its optimizer (what training really used)."""
    saved = dict(ckpt.meta.get("train", {}))
    optimizer = ckpt.optimizer
    first = next(iter(optimizer.optimizers.values())) if hasattr(optimizer, "optimizers") else optimizer
    saved["lr"] = first.state_dict()["hyperparameters"]["lr"]
    return saved


def _config_value(value, saved):
    """A given option in the form the model's config keeps it (a float for a float, a list for a list)."""
    if isinstance(saved, float) and isinstance(value, (int, float)):
        return float(value)
    return list(value) if isinstance(value, tuple) else value


# ------------------------------------------------------------------------------------------------ the run folder
def _output_folder(args):
    """Where the run goes: --out (refused if it holds another run, unless --force), RUN_DIR, or a new folder."""
    if args.resume is not None and args.out is None:
        return Path(args.resume)
    if args.out is None:
        return None  # a fresh runs/MODEL-DATE-TIME, named once training is done
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{ERROR} --out {out} exists and is not a folder")
    if args.resume is None and (out / "model.npz").exists() and not args.force:
        raise UsageError(f"{ERROR} --out {out} holds a run already: continue it with --resume {out}, choose "
                         "another --out, or pass --force to replace it")
    return out


def _fresh_run_folder(kind_name):
    """A new, empty runs/<kind>-<date>-<time> (with -2, -3, ... if that second is taken)."""
    stem = f"{kind_name}-{datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 1000):
        folder = RUNS / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise UsageError(f"{ERROR} no free run folder {RUNS / stem}-N: give one with --out")


def point_latest(folder):
    """Make runs/latest a symlink to ``folder`` (relative), replacing the old link in one step (os.replace)."""
    latest = RUNS / "latest"
    if latest.exists() and not latest.is_symlink():
        print(f"note: {latest} is a folder (an older tinyvae's run) and is left as it is; this run is in {folder}")
        return
    tmp = RUNS / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(folder.name, tmp, target_is_directory=True)
    os.replace(tmp, latest)


# ---------------------------------------------------------------------------------------------------- the command
def _train(model, kind, data, args, optimizer, history):
    """Run the kind's training loop; a diverged run is a one-line error, and nothing is written."""
    loop = {name: getattr(args, name) for name in kind.training}
    with warnings.catch_warnings():  # overflow warnings before a NaN: fit's own error below says what happened
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return kind.fit(model, data, optimizer, history, epochs=args.epochs, batch_size=args.batch_size,
                            seed=args.seed, progress=not args.quiet, **loop)
        except FloatingPointError as err:
            raise UsageError(f"{ERROR} {err}\n(nothing was written; with --lr, try a value 10 times smaller, or "
                             "--clip 10)") from None


def _write_run(out, model, optimizer, history, data, figures, args):
    """The checkpoint, metrics.json and (unless --no-figures) the figures; returns how many figures."""
    train_options = {name: getattr(args, name) for name in TRAINING if name not in ("model", "dtype")}
    checkpoint.save(model, out / "model.npz", optimizer, dataset=data.name, epochs=len(history), seed=args.seed,
                    history=history.to_dict(), train=train_options)
    write_json(out / "metrics.json", {"command": "tinyvae " + " ".join(args.argv), "dataset": data.name,
                                      "config": model.config(), "history": history.to_dict(), "test": figures,
                                      "units": " ".join(units_lines(model, data.name))})
    remove_figures(out)  # a replaced or resumed run keeps no figure of what it was before
    return 0 if args.no_figures else write_figures(model, data, history, out, args.seed)


@subcommand("train", "train a model; write the checkpoint, metrics.json and figures to a new run folder",
            _args_train)
def cmd_train(args):
    B.use(args.backend)
    out = _output_folder(args)
    model, optimizer, history, data = (_new_run if args.resume is None else _resumed_run)(args)
    kind = KINDS[model.kind]
    done = len(history) if history is not None else 0
    layers = getattr(model, "channels", getattr(model, "hidden", []))  # a conv model's channels, else hidden sizes
    print(f"{'resuming' if done else 'training'} {type(model).__name__} {model.input_dim}-"
          f"{'-'.join(map(str, layers))}-{model.latent_dim} on {data.name} ({data.x_train.shape[0]} images) for "
          f"{plural(args.epochs, 'epoch')}{f' after {done}' if done else ''}, backend {B.backend_name()}, "
          f"{model.dtype}")
    start = time.perf_counter()
    history = _train(model, kind, data, args, optimizer, history)
    figures = test_figures(model, data.x_test, labels=data.y_test)
    figures["training seconds"] = time.perf_counter() - start
    fresh = out is None
    out = _fresh_run_folder(kind.name) if fresh else out  # only now: a failed run leaves no empty folder behind
    out.mkdir(parents=True, exist_ok=True)
    n_figures = _write_run(out, model, optimizer, history, data, figures, args)
    if fresh:
        point_latest(out)
    print_figures(figures, model, data.name)
    print(f"wrote {out / 'model.npz'}, {out / 'metrics.json'} and {plural(n_figures, 'figure')} in {out}"
          + (f" ({RUNS / 'latest'} points at it)" if fresh else ""))
    return 0
