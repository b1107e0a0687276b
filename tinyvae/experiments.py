"""Small experiments shared by the command line, the notebooks and the benchmarks.

    rows = ae_vs_pca(data.x_train, data.x_test, latents=(2, 10, 20, 32), epochs=10)
"""
from . import backend as B
from .models import VAE, Autoencoder
from .pca import PCA
from .train import evaluate, fit


def squared_error(model, x, batch_size=1000):
    """Mean over examples of sum_d (reconstruction - x)^2: the figure PCA minimises, for any autoencoder."""
    xp = B.get_xp()
    x = B.asarray(x, dtype=model.dtype)
    total, n = 0.0, x.shape[0]
    for start in range(0, n, batch_size):
        xb = x[start:min(n, start + batch_size), :]  # a slice end past the data is an error in the array API
        diff = model.reconstruct(xb) - xb
        total += float(xp.sum(diff * diff))
    return total / n


def ae_vs_pca(x_train, x_test, latents=(2, 10, 20, 32), epochs=10, hidden=(400,), likelihood="bernoulli",
              batch_size=128, lr=1e-3, seed=0, progress=False, dtype=None):
    """Test squared error per image of PCA and of an autoencoder with the same latent size, for each size.

    PCA is the best LINEAR code of each size for squared error; a nonlinear encoder and decoder can do better.
    Both are scored by the same squared error (``squared_error``), whatever the autoencoder was trained on: by
    default the cross-entropy of its sigmoid outputs ("bernoulli"), which keeps every pixel in [0, 1].
    Returns a list of dicts {"latent", "pca", "ae"}.
    """
    rows = []
    for k in latents:
        pca = PCA(k).fit(B.asarray(x_train, dtype=dtype))
        ae = Autoencoder(x_train.shape[1], hidden, k, likelihood=likelihood, dtype=dtype, rng=seed)
        fit(ae, x_train, epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
        rows.append({"latent": int(k), "pca": float(pca.reconstruction_error(B.asarray(x_test, dtype=dtype))),
                     "ae": squared_error(ae, x_test)})
    return rows


def beta_sweep(x_train, x_test, betas=(0.1, 1.0, 4.0), epochs=10, latent_dim=2, hidden=(400,), seed=0,
               progress=False):
    """Train one VAE per beta; returns [{"beta", "recon", "kl", "loss", "model"}] with test figures (beta = 1 loss).

    Small beta: sharp reconstructions, a latent code far from N(0, I) (large KL). Large beta: the code is pushed
    onto the prior, reconstructions blur, and samples from the prior look more like the data.
    """
    results = []
    for beta in betas:
        model = VAE(x_train.shape[1], hidden, latent_dim, beta=beta, rng=seed)
        fit(model, x_train, epochs, seed=seed, progress=progress)
        test = evaluate(model, x_test)
        results.append({"beta": float(beta), "recon": test["recon"], "kl": test["kl"],
                        "loss": test["recon"] + test["kl"], "model": model})
    return results
