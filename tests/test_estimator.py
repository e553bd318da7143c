"""CodedMLPClassifier: scikit-learn's estimator checks, cross-validation, and that it is the Trainer.

The estimator checks and most tests share one LocalCluster of two worker threads (cheap to start,
no pickling); ``client=None`` is tested once, on the LocalCluster it starts itself.
"""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import psutil
import pytest
from distributed import Client, LocalCluster
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from codenet_dask import CodedMLPClassifier, CodedStore, Dataset, TrainConfig, Trainer
from codenet_dask.cluster import default_workers

#: Small and short, so the ~55 estimator checks (about 60 fits) take about a minute; still enough
#: to pass check_classifiers_train's accuracy > 0.83 on its blobs.
CHECKED = CodedMLPClassifier(hidden=(8,), epochs=2, batch_size=64, lr=0.5)
FAULTS = "bitflip:0.02:steps=block-forward+block-backward+update,nan:0.005:steps=block-forward"


@pytest.fixture(scope="module")
def threads_cluster():
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def threads_client(threads_cluster):
    with Client(threads_cluster) as client:
        yield client


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x / 16, y


@parametrize_with_checks([CHECKED])
def test_scikit_learn_estimator_checks(estimator, check, threads_cluster):
    """Every check that applies passes; none is expected to fail. The one that skips itself,
    check_array_api_input, needs SCIPY_ARRAY_API and an estimator that declares array-API
    support, which this one does not (training runs on numpy blocks on the workers).

    The checks get the cluster's address, not a Client: they deep-copy and hash parameters,
    which a live connection cannot survive (a Client given to the estimator is shared by
    ``clone`` instead; see the cross-validation test)."""
    check(estimator.set_params(client=threads_cluster.scheduler_address))


def test_cross_val_score_in_a_pipeline_with_a_live_client(threads_client, digits):
    """Clones share the given Client (never closed by a fit) and each fold trains a real model."""
    x, y = digits
    model = make_pipeline(
        StandardScaler(), CodedMLPClassifier(hidden=(32,), epochs=2, batch_size=128, lr=0.3, client=threads_client)
    )
    scores = cross_val_score(model, x, y, cv=3)  # 0.82 to 0.89 here; chance is 0.1
    assert scores.shape == (3,) and scores.min() > 0.75, scores
    assert threads_client.status == "running"
    assert clone(model)[-1].client is threads_client


def test_fit_is_a_trainer_run_and_reports_its_ledger(threads_client, digits):
    """Same data, config and seed: the estimator's weights are the Trainer's verified weights bit
    for bit, its fault summary is the Trainer's ledger, its history the run's course."""
    x, y = digits
    clf = CodedMLPClassifier(hidden=(16,), epochs=2, batch_size=128, lr=0.5, faults=FAULTS, random_state=3)
    clf.set_params(client=threads_client).fit(x, y)

    columns = np.ascontiguousarray(x.T)
    data = Dataset(columns, y, columns, y, 10, "digits")
    config = TrainConfig(hidden=(16,), epochs=2, batch_size=128, lr=0.5, faults=FAULTS, seed=3)  # other defaults alike
    trainer = Trainer(threads_client, data, config)
    try:
        summary = trainer.run()
        weights = trainer.verified_weights()
    finally:
        trainer.close()

    assert all(np.array_equal(c, w.T) for c, w in zip(clf.coefs_, weights))
    assert [c.shape for c in clf.coefs_] == [(64, 16), (16, 10)]
    faults = clf.fault_summary_
    assert faults.sizes == {"layer": 2, "outcome": 5}
    assert int(faults.faults.sum()) == summary.faults["injected"] > 0
    for outcome in ("corrected", "recomputed", "rolled-back", "benign", "undetected"):
        assert int(faults.faults.sel(outcome=outcome).sum()) == summary.faults[outcome.replace("-", "_")]
    assert int(faults.detected.sum()) == summary.faults["detected"]
    assert int(faults.rollbacks) == summary.faults["rollbacks"]
    assert int(faults.faults.sel(outcome="undetected").sum()) == 0

    history = clf.history_
    assert history.sizes == {"step": summary.iterations, "epoch": 2}
    assert history.accuracy.values.tolist() == summary.accuracy_by_epoch
    assert float(history.loss[-1]) == summary.final_loss
    assert history.learning_rate.values.tolist() == pytest.approx([0.5, 0.35])
    assert clf.score(x, y) == summary.test_accuracy  # training data = the run's evaluation data
    assert clf.n_iter_ == 2 and clf.n_features_in_ == 64 and clf.classes_.tolist() == list(range(10))


def test_partial_fit_continues_from_the_current_weights(threads_client, digits):
    x, y = digits
    params = {"hidden": (16,), "batch_size": 128, "lr": 0.5, "client": threads_client}
    with pytest.raises(ValueError, match="classes="):
        CodedMLPClassifier(**params).partial_fit(x, y)

    once = CodedMLPClassifier(**params).partial_fit(x, y, classes=np.arange(10))
    fitted = CodedMLPClassifier(**params, epochs=1).fit(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(once.coefs_, fitted.coefs_))  # epoch 1 from the same start

    before = [c.copy() for c in once.coefs_]
    once.partial_fit(x, y)
    columns = np.ascontiguousarray(x.T)
    trainer = Trainer(
        threads_client,
        Dataset(columns, y, columns, y, 10, "digits"),
        TrainConfig(
            hidden=(16,), epochs=1, batch_size=128, lr=0.5, lr_decay=1.0, faults="none", seed=1
        ),  # seed + epochs done
        initial_weights=[c.T for c in before],
    )
    try:
        trainer.run()
        expected = trainer.verified_weights()
    finally:
        trainer.close()
    assert all(np.array_equal(c, w.T) for c, w in zip(once.coefs_, expected))
    steps = -(-y.size // 128)
    assert once.n_iter_ == 2 and once.history_.sizes == {"step": 2 * steps, "epoch": 2}
    assert once.history_.step.values.tolist() == list(range(1, 2 * steps + 1))
    with pytest.raises(ValueError, match="not in classes"):
        CodedMLPClassifier(**params).partial_fit(x[:10], y[:10] + 20, classes=np.arange(10))
    with pytest.raises(ValueError, match="X has 63 features"):
        once.partial_fit(x[:, 1:], y)


def test_dask_arrays_in_and_out(threads_client, digits):
    x, y = digits
    params = {"hidden": (16,), "epochs": 1, "batch_size": 256, "lr": 0.5, "client": threads_client}
    from_numpy = CodedMLPClassifier(**params).fit(x, y)
    lazy_x, lazy_y = da.from_array(x, chunks=(500, 32)), da.from_array(y, chunks=500)
    from_dask = CodedMLPClassifier(**params).fit(lazy_x, lazy_y)
    assert all(np.array_equal(a, b) for a, b in zip(from_numpy.coefs_, from_dask.coefs_))

    labels, probabilities = from_dask.predict(lazy_x), from_dask.predict_proba(lazy_x)
    assert isinstance(labels, da.Array) and isinstance(probabilities, da.Array)
    assert np.array_equal(labels.compute(), from_numpy.predict(x))
    np.testing.assert_allclose(probabilities.compute(), from_numpy.predict_proba(x))
    assert probabilities.shape == (y.size, 10)
    with pytest.raises(ValueError, match="expects"):
        from_dask.predict(lazy_x[:, :10])


def test_client_none_starts_a_local_cluster_for_the_machine_and_closes_it(digits):
    x, y = digits
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    clf = CodedMLPClassifier(hidden=(16,), epochs=1, batch_size=256, lr=0.5).fit(x, y)
    assert clf.fault_summary_.attrs["workers"] == default_workers()
    assert int(clf.fault_summary_.faults.sum()) == 0  # faults=None: none injected
    after = {p.pid: " ".join(p.cmdline()) for p in psutil.Process().children(recursive=True) if p.is_running()}
    # multiprocessing's resource tracker lives as long as this interpreter; the workers must not
    left = {pid: line for pid, line in after.items() if pid not in before and "resource_tracker" not in line}
    assert not left, f"worker processes left running: {left}"


def test_a_live_client_is_dropped_by_pickle_and_predictions_survive(threads_client, digits):
    x, y = digits
    clf = CodedMLPClassifier(hidden=(16,), epochs=1, batch_size=256, lr=0.5, client=threads_client).fit(x, y)
    copy = pickle.loads(pickle.dumps(clf))
    assert copy.client is None and clf.client is threads_client
    assert np.array_equal(copy.predict(x), clf.predict(x))


def test_the_store_keeps_the_coded_weights_and_is_never_reused(threads_client, digits, tmp_path):
    x, y = digits
    path = tmp_path / "model"
    params = {"hidden": (16,), "epochs": 1, "batch_size": 256, "lr": 0.5, "client": threads_client}
    CodedMLPClassifier(**params, store=path).fit(x, y)
    with CodedStore.open(path) as store:
        assert sorted(store.layers()) == ["dense0", "dense1"]
    listing = sorted(p.name for p in path.rglob("*"))
    with pytest.raises(ValueError, match="already exists"):
        CodedMLPClassifier(**params, store=path).fit(x, y)
    with pytest.raises(ValueError, match="partial_fit keeps no checkpoint store"):
        CodedMLPClassifier(**params, store=tmp_path / "other").partial_fit(x, y, classes=np.arange(10))
    assert sorted(p.name for p in path.rglob("*")) == listing and not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"strategy": "raid"}, "strategy must be one of"),
        ({"grid": 0}, "grid must be a positive integer"),
        ({"hidden": (16, 0)}, "hidden must be a positive integer"),
        ({"hidden": "wide"}, "hidden must be a tuple"),
        ({"parity": 2}, "parity must be two integers"),
        ({"lr": 0.0}, "lr must be a number > 0"),
        ({"lr_decay": 1.5}, r"lr_decay must be in \(0, 1\]"),
        ({"dtype": "int8"}, "dtype must be"),
        ({"faults": "gremlins:0.1"}, "faults='gremlins:0.1'"),
        ({"random_state": -1}, "random_state must be >= 0"),
        ({"strategy": "replication", "replicas": 1}, "replicas must be at least 2"),
        ({"grid": 11}, "classes = 10 is fewer than grid=11"),
        ({"hidden": (1,)}, "hidden = 1 is fewer than grid=2"),
    ],
)
def test_bad_parameters_are_one_line_errors_before_any_cluster(params, message, digits):
    """An unreachable scheduler shows the parameters are checked before connecting."""
    x, y = digits
    clf = CodedMLPClassifier(**{"client": "tcp://127.0.0.1:9", **params})
    with pytest.raises(ValueError, match=message) as error:
        clf.fit(x, y)
    assert "\n" not in str(error.value)


def test_labels_of_any_kind_come_back_as_given(threads_client):
    x, y = make_blobs(n_samples=120, centers=3, random_state=0)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = CodedMLPClassifier(hidden=(8,), epochs=2, batch_size=32, lr=0.5, client=threads_client).fit(x, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(x)) <= set(names) and clf.score(x, names) > 0.8
