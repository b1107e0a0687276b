"""`tinyvae reproduce cs236` (issue 21) in quick mode on the bundled data, its table and results.json; the fixed
binarization and the per-class subsets it relies on; `tinyvae train` with the kinds gmvae and ssvae."""
import json

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import checkpoint, datasets, reproduce
from tinyvae.cli import main

pytestmark = pytest.mark.backends("numpy")  # whole runs: once is enough


def test_quick_mode_writes_the_table_results_checkpoints_and_figures(tmp_path, capsys):
    out = tmp_path / "cs236"
    assert main(["reproduce", "cs236", "--quick", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] and results["dataset"] == "mnist-small" and results["binarize"] == "dynamic"
    assert [r["key"] for r in results["rows"]] == [b[0] for b in reproduce.BANDS]
    for row in results["rows"]:  # every figure measured, and its verdict is the band's
        assert row["value"] is not None and row["full_test_set"] is not None
        assert row["pass"] == (abs(row["value"] - row["target"]) <= row["half_width"])
        assert row["figure"] in printed and ("pass" in printed or "MISS" in printed)
    vae = results["models"]["vae"]
    assert vae["niwae_1000_subset"] <= vae["niwae_1_subset"] + 0.5  # more samples: a tighter bound (MC noise aside)
    assert vae["niwae_1000_subset"] <= vae["nelbo_subset"] + 0.5
    assert 0 <= results["models"]["ssvae"]["accuracy"] <= 100
    subset = np.array(results["test_subset_indices"])
    data = datasets.load("mnist-small")
    assert len(subset) == 100 and (np.bincount(data.y_test[subset]) == 10).all()
    assert (np.bincount(data.y_train[results["labeled_indices"]]) == 10).all()
    assert sorted(results["figures"]) == ["gmvae_component_means.png", "gmvae_samples.png", "ssvae_samples.png",
                                          "vae_samples.png"]
    assert all((out / name).stat().st_size > 1000 for name in results["figures"])
    for kind, cls in (("vae", tv.VAE), ("gmvae", tv.GMVAE), ("ssvae", tv.SSVAE), ("classifier", tv.SSVAE)):
        assert isinstance(checkpoint.load(out / f"{kind}.npz").model, cls)
    assert checkpoint.load(out / "classifier.npz").model.gen_weight == 0.0
    assert "nats per image" in printed and "BINARY digits" in printed
    # tinyvae evaluate reads a checkpoint's data set and binarization from it: the table's whole-test-set -ELBO
    assert checkpoint.load(out / "vae.npz").meta["train"] == {"dataset": "mnist-small", "binarize": "dynamic"}
    assert main(["evaluate", str(out / "vae.npz"), "--n", "10", "--k", "2"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("test loss "))
    assert float(row.split()[-1]) == pytest.approx(vae["nelbo_full"], abs=0.006)


def test_rows_of_models_not_run_say_so_and_are_not_graded():
    rows = reproduce._rows({"vae": {"nelbo_subset": 101.0, "nelbo_full": 100.5, "niwae_1000_subset": 99.0,
                                    "niwae_10_full": 99.5}}, dict(reproduce.FULL, full_iwae_m=10))
    verdicts = {r["key"]: r["pass"] for r in rows}
    assert verdicts == {"vae_nelbo": True, "gmvae_nelbo": None, "vae_niwae_1000": False, "ssvae_accuracy": None,
                        "classifier_accuracy": None}
    text = reproduce.table({"rows": rows, "models": {}, "seconds": 1.0, "backend": "numpy", "quick": False})
    assert text.count("not run") == 3 and "99.50 (m=10)" in text and "MISS" in text


def test_unknown_models_are_a_clear_error(capsys):
    assert main(["reproduce", "cs236", "--quick", "--models", "vae,iwae"]) == 2
    assert "unknown models ['iwae']" in capsys.readouterr().err


def test_the_fixed_binarization_is_seeded_and_bernoulli():
    x = np.full((300, 40), 0.25, dtype=np.float32)
    a, b = datasets.binarize(x, seed=0), datasets.binarize(x, seed=0)
    assert a.dtype == np.float32 and set(np.unique(a)) <= {0.0, 1.0} and (a == b).all()
    assert abs(a.mean() - 0.25) < 0.016  # 12,000 draws: 4 sigma is 0.016
    assert not (datasets.binarize(x, seed=1) == a).all()
    assert (datasets.binarize(x[:10], seed=0) == a[:10]).all()  # a row does not depend on the rows after it
    with pytest.raises(ValueError, match=r"expected pixel intensities in \[0, 1\]"):
        datasets.binarize(x * 255)


def test_per_class_subsets_take_the_first_of_each_class_in_file_order():
    labels = np.array([3, 0, 1, 0, 2, 1, 3, 2, 0])
    assert datasets.per_class_subset(labels, 2, 4).tolist() == [1, 3, 2, 5, 4, 7, 0, 6]
    with pytest.raises(ValueError, match="class 1 has only 2 examples, 3 are needed"):
        datasets.per_class_subset(labels, 3, 4)


@pytest.mark.parametrize("argv", [["--model", "gmvae", "--components", "7"],
                                  ["--model", "ssvae", "--gen-weight", "1", "--class-weight", "50"]], ids=str)
def test_train_knows_the_new_kinds(tmp_path, capsys, argv):
    out = tmp_path / "run"
    code = main(["train", *argv, "--epochs", "1", "--hidden", "16", "--latent", "2", "--batch-size", "1000",
                 "--quiet", "--no-figures", "--out", str(out), "--activation", "elu"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == argv[1]
    model = checkpoint.load(out / "model.npz").model
    if argv[1] == "gmvae":
        assert model.components == 7 and model.activation == "elu"
    else:
        assert model.class_weight == 50.0 and model.num_classes == 10


def test_static_binarization_and_the_homeworks_subsets_need_the_full_sets(tmp_path, capsys):
    out = tmp_path / "static"
    assert main(["reproduce", "cs236", "--quick", "--quiet", "--no-figures", "--models", "vae", "--binarize", "static",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["binarize"] == "static" and results["subsets"] == "first" and list(results["models"]) == ["vae"]
    capsys.readouterr()
    # mnist-small (the first 10,000 training images) lacks some of the homework's hand-picked images: said clearly
    assert main(["reproduce", "cs236", "--quick", "--quiet", "--subsets", "cs236", "--out", str(tmp_path / "x")]) == 2
    assert "cs236_subset: the homework's" in capsys.readouterr().err


def test_the_homeworks_subsets_are_ten_of_each_digit_with_one_image_named_twice():
    labels = np.repeat(np.arange(10), 7000)  # enough images of each digit, in blocks
    for split, twice in (("train", 2176), ("test", 128)):
        idx = datasets.cs236_subset(labels, split)
        assert len(idx) == 100 and (np.bincount(labels[idx]) == 10).all() and len(set(idx.tolist())) == 99
        digit = 4 if split == "train" else 5
        assert (idx == digit * 7000 + twice).sum() == 2
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        datasets.cs236_subset(labels, "valid")
