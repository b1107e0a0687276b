"""The ConvVAE on MNIST, trained by tinyvae and by PyTorch side by side in one process, epochs interleaved.

    python benchmarks/bench_conv_vae.py [--data ../shared/data/mnist] [--epochs 10] [--threads 1] [--no-torch]
    python benchmarks/bench_conv_vae.py --profile [--steps 30] [--threads 1]    # where one training step's time goes

Model: tinyvae.ConvVAE() with its defaults (1x28x28 -> Conv2d 32 -> 14x14 -> Conv2d 64 -> 7x7 -> Dense 20 for mu and
logvar; the decoder mirrors it with ConvTranspose2d), Bernoulli logits, Adam(lr=1e-3), batch 128, float32, seed 0.
PyTorch's twin is built from the same layers with tinyvae's initial weights copied in, and is trained on the same
minibatches with the same eps draws, so the two runs differ only in rounding. The two take turns every 10 steps
and each one's epoch time is the sum of its own turns, so load from elsewhere on a shared machine hits both alike. Both are scored on the test set by
one scorer (``tinyvae.evaluate``, PyTorch's weights loaded into a tinyvae ConvVAE). The MLP VAE (784-400-20) is
trained alongside for comparison (``--no-mlp`` skips it).

``--threads`` sets both libraries' threads: OPENBLAS_NUM_THREADS for NumPy (set here before NumPy loads) and
torch.set_num_threads for PyTorch.
"""
import argparse
import os
import sys

if __name__ == "__main__":  # the thread count must be in the environment before NumPy's OpenBLAS loads
    _threads = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
    if _threads is None and "--threads" in sys.argv:
        _threads = sys.argv[sys.argv.index("--threads") + 1]
    os.environ["OPENBLAS_NUM_THREADS"] = _threads or os.environ.get("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import machine  # noqa: E402
import tinyvae as tv  # noqa: E402
from bench_vae_mnist import BATCH, LR, SEED, tinyvae_draws  # noqa: E402
from tinyvae import conv  # noqa: E402
from tinyvae.train import evaluate, fit  # noqa: E402


CHUNK = 10  # steps each library runs before the other takes its turn


def torch_twin(model):
    """A torch.nn.Module with the ConvVAE's layers and weights, and a ``neg_elbo(x, eps)`` like TorchVAE's."""
    import torch

    def build(seq):
        layers = []
        for m in seq:
            if isinstance(m, tv.Dense):
                layer = torch.nn.Linear(m.in_features, m.out_features)
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(tv.to_numpy(m.W.data).T.copy()))
                    layer.bias.copy_(torch.from_numpy(tv.to_numpy(m.b.data).copy()))
            elif isinstance(m, (conv.Conv2d, conv.ConvTranspose2d)):
                cls = torch.nn.Conv2d if isinstance(m, conv.Conv2d) else torch.nn.ConvTranspose2d
                extra = {} if cls is torch.nn.Conv2d else {"output_padding": m.output_padding}
                layer = cls(m.in_channels, m.out_channels, (m.kh, m.kw), m.stride, m.padding, **extra)
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(tv.to_numpy(m.W.data).copy()))
                    layer.bias.copy_(torch.from_numpy(tv.to_numpy(m.b.data).copy()))
            elif isinstance(m, tv.ReLU):
                layer = torch.nn.ReLU()
            elif isinstance(m, conv.Flatten):
                layer = torch.nn.Flatten()
            elif isinstance(m, conv.Unflatten):
                layer = torch.nn.Unflatten(1, m.shape)
            else:
                raise TypeError(f"no PyTorch twin for {m!r}")
            layers.append(layer)
        return torch.nn.Sequential(*layers)

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = build(model.encoder), build(model.decoder)
            self.mu, self.logvar = build([model.mu_head]), build([model.logvar_head])
            self.sources = [model.encoder, model.decoder, [model.mu_head], [model.logvar_head]]

        def neg_elbo(self, x, eps=None):
            h = self.enc(x)
            mu, logvar = self.mu(h), self.logvar(h)
            z = mu + torch.exp(0.5 * logvar) * (torch.randn_like(mu) if eps is None else eps)
            recon = torch.nn.functional.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(1)
            return recon + 0.5 * torch.sum(mu * mu + logvar.exp() - 1 - logvar, dim=1)

        def copy_to(self, target):
            """Put these weights into a tinyvae ConvVAE of the same configuration (to score it with tinyvae)."""
            mine = [self.enc, self.dec, self.mu, self.logvar]
            theirs = [target.encoder, target.decoder, [target.mu_head], [target.logvar_head]]
            for seq, tseq in zip(mine, theirs):
                for layer, m in zip(seq, tseq):
                    if hasattr(m, "W"):
                        w = layer.weight.detach().numpy()
                        m.W.data[...] = tv.asarray((w.T if isinstance(m, tv.Dense) else w).copy())
                        m.b.data[...] = tv.asarray(layer.bias.detach().numpy().copy())
            return target

    return Twin()


def median_step(run, steps):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile(args, data):
    """Time one training step of each library on the same batch, and split tinyvae's by where the time goes."""
    import torch

    model = tv.ConvVAE(rng=SEED)
    opt = tv.Adam(model.parameters(), lr=LR)
    x = tv.asarray(data.x_train[:BATCH])
    eps = tv.Generator(1).standard_normal((BATCH, model.latent_dim), "float32")

    def step():
        model.zero_grad()
        model.loss(x, eps=eps)
        model.backward()
        opt.step()

    twin = torch_twin(model)
    topt = torch.optim.Adam(twin.parameters(), lr=LR)
    tx, teps = torch.from_numpy(data.x_train[:BATCH]), torch.from_numpy(tv.to_numpy(eps))

    def torch_step():
        topt.zero_grad()
        loss = twin.neg_elbo(tx, teps).mean()
        loss.backward()
        topt.step()
        loss.item()

    for _ in range(3):
        step(), torch_step()
    ours, theirs = median_step(step, args.steps), median_step(torch_step, args.steps)

    # Where tinyvae's step goes: wrap im2col / col2im and each conv layer's forward and backward in timers.
    spent = {"im2col": 0.0, "col2im": 0.0, "rows": 0.0, "conv layers": 0.0}

    def timed(fn, key):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - start
        return wrapper

    saved = {name: getattr(conv, name) for name in ("im2col_fast", "col2im_fast", "_rows")}
    methods = [(cls, name, getattr(cls, name)) for cls in (conv.Conv2d, conv.ConvTranspose2d)
               for name in ("forward", "backward")]
    conv.im2col_fast, conv.col2im_fast = timed(saved["im2col_fast"], "im2col"), timed(saved["col2im_fast"], "col2im")
    conv._rows = timed(saved["_rows"], "rows")
    for cls, name, fn in methods:
        setattr(cls, name, timed(fn, "conv layers"))
    try:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        total = time.perf_counter() - start
    finally:
        conv.im2col_fast, conv.col2im_fast, conv._rows = saved["im2col_fast"], saved["col2im_fast"], saved["_rows"]
        for cls, name, fn in methods:
            setattr(cls, name, fn)
    rest_conv = spent["conv layers"] - spent["im2col"] - spent["col2im"] - spent["rows"]
    rows = [("im2col (strided view + one copy)", spent["im2col"]), ("col2im (kh*kw slice-adds)", spent["col2im"]),
            ("NCHW <-> rows copies of inputs and gradients", spent["rows"]),
            ("conv layers' matrix products, bias, weight reorder", rest_conv),
            ("everything else (Dense, ReLU, loss, Adam)", total - spent["conv layers"])]
    print(f"\none training step, batch {BATCH}, median of {args.steps}: tinyvae {ours * 1e3:.1f} ms, PyTorch "
          f"{theirs * 1e3:.1f} ms, ratio {ours / theirs:.2f}")
    print(f"\n{'where tinyvae step time goes':<52} {'ms/step':>8} {'share':>6}")
    for name, seconds in rows:
        print(f"{name:<52} {seconds / args.steps * 1e3:>8.1f} {seconds / total:>6.0%}")


def train(args, data):
    """Train both models for ``args.epochs`` epochs on the same batches and eps; time them in alternating chunks.

    The machine may be shared, so the two libraries take turns every ``CHUNK`` steps and each one's time is the
    sum of its own chunks: a burst of load from elsewhere then falls on both alike, and the ratio stays fair.
    tinyvae's steps are exactly ``fit``'s (same permutation and eps draws, in the same order; see tinyvae_draws).
    """
    import torch

    xp = tv.get_xp()
    model = tv.ConvVAE(rng=SEED)
    opt = tv.Adam(model.parameters(), lr=LR)
    scorer = tv.ConvVAE(rng=SEED)
    twin = None if args.no_torch else torch_twin(model)
    topt = None if twin is None else torch.optim.Adam(twin.parameters(), lr=LR)
    mlp = None if args.no_mlp else tv.VAE(rng=SEED)
    mlp_opt = None if mlp is None else tv.Adam(mlp.parameters(), lr=LR)
    x, tx, n = tv.asarray(data.x_train), torch.from_numpy(data.x_train), data.x_train.shape[0]
    print(f"parameters: ConvVAE {sum(p.data.size for p in model.parameters())}"
          + ("" if mlp is None else f", MLP VAE {sum(p.data.size for p in mlp.parameters())}"))
    print(f"{'epoch':>5} {'tinyvae -ELBO':>14} {'PyTorch -ELBO':>14} {'MLP VAE -ELBO':>14} {'tinyvae s':>10} "
          f"{'PyTorch s':>10} {'ratio':>6}")
    rows, nan = [], float("nan")
    for epoch in range(args.epochs):
        perm, eps = tinyvae_draws(n, epoch, model.latent_dim)
        perm_dev, eps_dev = tv.asarray(perm), [tv.asarray(e) for e in eps]
        tperm, teps = torch.from_numpy(perm), [torch.from_numpy(e) for e in eps]
        ours = theirs = 0.0
        model.train()
        for first in range(0, len(eps), CHUNK):
            chunk = range(first, min(len(eps), first + CHUNK))
            start = time.perf_counter()
            for step in chunk:
                xb = xp.take(x, perm_dev[step * BATCH:(step + 1) * BATCH], axis=0)
                opt.zero_grad()
                if not math.isfinite(model.loss(xb, eps=eps_dev[step]).total):
                    raise FloatingPointError(f"tinyvae's loss diverged at epoch {epoch + 1}, step {step + 1}")
                model.backward()
                opt.step()
            tv.backend.synchronize()
            ours += time.perf_counter() - start
            if twin is not None:
                start = time.perf_counter()
                for step in chunk:
                    xb = tx[tperm[step * BATCH:(step + 1) * BATCH]]
                    topt.zero_grad()
                    loss = twin.neg_elbo(xb, teps[step]).mean()
                    loss.backward()
                    topt.step()
                    loss.item()  # tinyvae reads its loss every step: so does this loop
                theirs += time.perf_counter() - start
        row = {"epoch": epoch + 1, "seconds": ours, "test": evaluate(model, data.x_test)["loss"]}
        if twin is not None:
            row["torch_seconds"] = theirs
            row["torch_test"] = evaluate(twin.copy_to(scorer), data.x_test)["loss"]
        if mlp is not None:
            fit(mlp, data.x_train, 1, batch_size=BATCH, optimizer=mlp_opt, seed=SEED, start_epoch=epoch,
                progress=False)
            row["mlp_test"] = evaluate(mlp, data.x_test)["loss"]
        rows.append(row)
        print(f"{epoch + 1:>5} {row['test']:>14.2f} {row.get('torch_test', nan):>14.2f} "
              f"{row.get('mlp_test', nan):>14.2f} {row['seconds']:>10.2f} {row.get('torch_seconds', nan):>10.2f} "
              f"{row['seconds'] / row.get('torch_seconds', nan):>6.2f}", flush=True)
    summary = {"epochs": args.epochs, "threads": args.threads, "final_test": rows[-1]["test"],
               "median_epoch_s": statistics.median(r["seconds"] for r in rows), "per_epoch": rows}
    if mlp is not None:
        summary["mlp_final_test"] = rows[-1]["mlp_test"]
    if twin is not None:
        summary["torch_final_test"] = rows[-1]["torch_test"]
        summary["torch_median_epoch_s"] = statistics.median(r["torch_seconds"] for r in rows)
        summary["epoch_time_ratio"] = summary["median_epoch_s"] / summary["torch_median_epoch_s"]
        print(f"\nfinal test -ELBO: tinyvae {summary['final_test']:.2f}, PyTorch {summary['torch_final_test']:.2f} "
              f"(difference {summary['final_test'] - summary['torch_final_test']:+.2f} nats)"
              + ("" if mlp is None else f", MLP VAE {rows[-1]['mlp_test']:.2f}"))
        print(f"median epoch time: tinyvae {summary['median_epoch_s']:.2f} s, PyTorch "
              f"{summary['torch_median_epoch_s']:.2f} s (ratio {summary['epoch_time_ratio']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OPENBLAS_NUM_THREADS", "1")))
    parser.add_argument("--profile", action="store_true", help="time single steps instead of training")
    parser.add_argument("--steps", type=int, default=30, help="steps timed by --profile")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-mlp", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = tv.datasets.load(args.data)
    print("\n".join(machine.describe()))
    print(f"threads: NumPy's OpenBLAS {os.environ.get('OPENBLAS_NUM_THREADS')}, PyTorch {torch.get_num_threads()} "
          f"(PyTorch {torch.__version__})")
    if args.profile:
        profile(args, data)
    else:
        train(args, data)


if __name__ == "__main__":
    main()
