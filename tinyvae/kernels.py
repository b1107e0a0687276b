"""CuPy fused kernels: each one computes, in ONE launch, a chain of element-wise steps that NumPy runs as several.

GPU only: these functions are called by the ``_fast`` twins (``optim.adam_fast``, ``losses.bce_with_logits_fast``,
...) only when the active backend is "cupy" and plain mode is off (``tinyvae.use_plain``). Each docstring shows the
NumPy formula the kernel computes; the plain function named there is the definition, and a test (marked ``gpu``)
holds the two equal. Each kernel's CUDA C body (``_SOURCES[name]``) stands just above the function that launches it.

Why: at batch 128 a GPU training step is bound by the number of kernel launches (about 18 us each) and host syncs,
not by arithmetic. Adam over a flat buffer of all 652,824 parameters of the reference VAE is twelve NumPy-style
passes (twelve launches) but one kernel here. The CUDA C is a few lines per kernel; ``T`` is the arrays' dtype.
The kernels are compiled on first use and cached by CuPy.
"""
from . import backend as B

_KERNELS = {}  # (id of the array module, name) -> the compiled kernel
_SOURCES = {}  # name -> (inputs, outputs, CUDA C body): each set just above the function that launches it
# name -> (inputs, output, map expression, reduce expression, post-map, identity), CuPy's ReductionKernel: each
# element is mapped, the mapped values are combined along the reduced axes in one launch.
_REDUCTIONS = {}


def _reduction(name):
    """The compiled ReductionKernel ``name`` (made once per array module, like ``_kernel``)."""
    if B.backend_name() != "cupy":
        raise RuntimeError(f"tinyvae.kernels.{name} runs only under the cupy backend, not {B.backend_name()!r}")
    xp = B.get_xp()
    key = (id(xp), name)
    if key not in _KERNELS:
        _KERNELS[key] = xp.ReductionKernel(*_REDUCTIONS[name], name=f"tinyvae_{name}")
    return _KERNELS[key]


def _kernel(name):
    """The compiled ElementwiseKernel ``name`` (made once; CuPy caches the binary per dtype)."""
    if B.backend_name() != "cupy":
        raise RuntimeError(f"tinyvae.kernels.{name} runs only under the cupy backend, not {B.backend_name()!r}")
    xp = B.get_xp()
    key = (id(xp), name)  # per array module: the tests' CuPy stand-in compiles its own
    if key not in _KERNELS:
        inputs, outputs, body = _SOURCES[name]
        _KERNELS[key] = xp.ElementwiseKernel(inputs, outputs, body, f"tinyvae_{name}")
    return _KERNELS[key]


def _scalar(a, value):
    return a.dtype.type(value)


_SOURCES["adam"] = ("T g, T b1, T b2, T scale, T eps, T wd", "T p, T m, T v", """
    T gg = g + wd * p;
    m = b1 * (m - gg) + gg;
    T g2 = gg * gg;
    v = b2 * (v - g2) + g2;
    p = p - scale * (m / (sqrt(v) + eps));""")


def adam(p, g, m, v, b1, b2, scale, eps_hat, weight_decay):
    """Adam in place, one launch (``optim.adam_fast`` passes the bias corrections folded into scale and eps_hat):

        g = g + weight_decay * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p = p - scale * m / (sqrt(v) + eps_hat),  scale = lr sqrt(1 - b2^t) / (1 - b1^t),  eps_hat = eps sqrt(1 - b2^t)

    which is ``optim.adam_reference``. Returns (p, m, v), the same arrays.
    """
    s = lambda value: _scalar(p, value)  # noqa: E731
    _kernel("adam")(g, s(b1), s(b2), s(scale), s(eps_hat), s(weight_decay), p, m, v)
    return p, m, v


_SOURCES["sgd"] = ("T g, T lr, T momentum, T wd", "T p, T buf", """
    T gg = g + wd * p;
    if (momentum != (T)0) { buf = momentum * buf + gg; gg = buf; }
    p = p - lr * gg;""")


def sgd(p, g, buf, lr, momentum, weight_decay):
    """SGD in place, one launch: g = g + wd p; buf = momentum buf + g (if momentum); p = p - lr buf
    (``optim.sgd_reference``). Returns (p, buf)."""
    s = lambda value: _scalar(p, value)  # noqa: E731
    _kernel("sgd")(g, s(lr), s(momentum), s(weight_decay), p, buf)
    return p, buf


_SOURCES["bce"] = ("T l, T x, T inv_n", "T terms, T grad", """
    terms = (max(l, (T)0) - l * x + log1p(exp(-fabs(l)))) * inv_n;
    grad = ((tanh(l * (T)0.5) + (T)1) * (T)0.5 - x) * inv_n;""")


def bce_with_logits(logits, target):
    """(value as a 0-d device array, dlogits) of ``losses.bce_with_logits``, in one launch plus one sum:

        terms = (max(l, 0) - l x + log1p(exp(-|l|))) / N;   value = sum(terms);   dl = (sigmoid(l) - x) / N
    """
    n = logits.shape[0]
    terms, grad = _kernel("bce")(logits, target, _scalar(logits, 1.0 / n))
    return B.get_xp().sum(terms), grad


_REDUCTIONS["bce_rows"] = ("T l, T x", "T y", "max(l, (T)0) - l * x + log1p(exp(-fabs(l)))", "a + b", "y = a", "0")


def bce_rows(logits, target):
    """sum_d [max(l, 0) - l x + log1p(exp(-|l|))] over the last axis (``losses.bce_with_logits_per_example``), in
    ONE reduction launch, where the formula takes about fifteen passes. ``target`` broadcasts against ``logits``
    (the IWAE bound's images (m, 1, D) against logits (m, k, D)). Returns logits.shape[:-1]."""
    return _reduction("bce_rows")(logits, target, axis=-1)


_SOURCES["kl"] = ("T mu, T logvar, T inv_n", "T terms, T dmu, T dlogvar", """
    T var = exp(logvar);
    terms = (mu * mu + var - (T)1 - logvar) * ((T)0.5 * inv_n);
    dmu = mu * inv_n;
    dlogvar = (var - (T)1) * ((T)0.5 * inv_n);""")


def gaussian_kl(mu, logvar):
    """(value as a 0-d device array, dmu, dlogvar) of ``losses.gaussian_kl``, in one launch plus one sum:

        value = sum 1/(2N) (mu^2 + exp(logvar) - 1 - logvar);  dmu = mu / N;  dlogvar = (exp(logvar) - 1) / (2N)
    """
    n = mu.shape[0]
    terms, dmu, dlogvar = _kernel("kl")(mu, logvar, _scalar(mu, 1.0 / n))
    return B.get_xp().sum(terms), dmu, dlogvar


_SOURCES["reparam_forward"] = ("T mu, T logvar, T eps", "T z, T std", """
    std = exp(logvar * (T)0.5);
    z = mu + std * eps;""")


def reparam_forward(mu, logvar, eps):
    """(z, std) with std = exp(logvar / 2) and z = mu + std * eps (``reparam.reparameterize``), one launch."""
    return _kernel("reparam_forward")(mu, logvar, eps)


_SOURCES["reparam_backward"] = ("T dz, T eps, T std", "T dlogvar", "dlogvar = dz * eps * std * (T)0.5;")


def reparam_backward(dz, eps, std):
    """dlogvar = dz * eps * std / 2 (``reparam.reparameterize_backward``; dmu = dz needs no kernel), one launch."""
    return _kernel("reparam_backward")(dz, eps, std)


_SOURCES["latent_backward"] = ("T dz, T eps, T std, T dmu_kl, T dlogvar_kl, T beta", "T dmu, T dlogvar", """
    dmu = dz + beta * dmu_kl;
    dlogvar = dz * eps * std * (T)0.5 + beta * dlogvar_kl;""")


def latent_backward(dz, eps, std, dmu_kl, dlogvar_kl, beta):
    """(dmu, dlogvar) where a VAE's two terms meet (``models.VAE.backward``), one launch:

        dmu = dz + beta dmu_kl;   dlogvar = dz * eps * std / 2 + beta dlogvar_kl
    (``reparam.reparameterize_backward`` plus beta times ``losses.gaussian_kl``'s gradients)."""
    return _kernel("latent_backward")(dz, eps, std, dmu_kl, dlogvar_kl, _scalar(dz, beta))


_SOURCES["weighted_total"] = ("T a, T b, float64 weight", "float64 total", "total = weight * b + a;")


def weighted_total(a, weight, b):
    """a + weight * b in float64 for two 0-d loss values of one dtype (``losses.weighted_sum``), one launch."""
    return _kernel("weighted_total")(a, b, float(weight))


_SOURCES["relu_forward"] = ("T x", "T y", "y = x <= (T)0 ? (T)0 : x;")  # NaN stays NaN, as in maximum(x, 0)


def relu_forward(x):
    """y = max(x, 0) (``activations.relu``), one launch (no row of zeros to make first)."""
    return _kernel("relu_forward")(x)


_SOURCES["relu_backward"] = ("T dout, T y", "T dx", "dx = y > (T)0 ? dout : (T)0;")


def relu_backward(dout, y):
    """dx = where(y > 0, dout, 0) (``activations.relu_backward``), one launch."""
    return _kernel("relu_backward")(dout, y)


_SOURCES["bias_relu"] = ("T xw, T b", "T y", """
    T s = xw + b;
    y = s <= (T)0 ? (T)0 : s;""")


def bias_relu(xw, b):
    """y = max(xw + b, 0): a Dense layer's bias addition and the ReLU after it (``Dense.forward`` then
    ``activations.relu``), one launch instead of two. xw (N, out) = x @ W, b (out,)."""
    return _kernel("bias_relu")(xw, b)


_SOURCES["heads_reparam"] = ("T mu_xw, T mu_b, T logvar_xw, T logvar_b, T eps", "T mu, T logvar, T z, T std", """
    mu = mu_xw + mu_b;
    logvar = logvar_xw + logvar_b;
    std = exp(logvar * (T)0.5);
    z = mu + std * eps;""")


def heads_reparam(mu_xw, mu_b, logvar_xw, logvar_b, eps):
    """(mu, logvar, z, std) from the two heads' products h @ W, one launch instead of three:

        mu = mu_xw + mu_b;  logvar = logvar_xw + logvar_b;  std = exp(logvar / 2);  z = mu + std * eps
    (both heads' ``Dense.forward`` bias additions, then ``reparam.reparameterize``)."""
    return _kernel("heads_reparam")(mu_xw, mu_b, logvar_xw, logvar_b, eps)


_SOURCES["leaky_relu_forward"] = ("T x, T a", "T y", "y = x > (T)0 ? x : a * x;")


def leaky_relu_forward(x, negative_slope):
    """y = where(x > 0, x, a * x) (``activations.leaky_relu``), one launch."""
    return _kernel("leaky_relu_forward")(x, _scalar(x, negative_slope))


_SOURCES["leaky_relu_backward"] = ("T dout, T x, T a", "T dx", "dx = x > (T)0 ? dout : a * dout;")


def leaky_relu_backward(dout, x, negative_slope):
    """dx = where(x > 0, dout, a * dout) (``activations.leaky_relu_backward``), one launch."""
    return _kernel("leaky_relu_backward")(dout, x, _scalar(x, negative_slope))
