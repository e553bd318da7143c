"""Random fault models, the --faults spec, and the seeded RandomFaults hook."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from codenet_dask.errors import CodeNetError, FaultSpecError, UnsupportedDtypeError
from codenet_dask.faults import (
    STEPS,
    BitFlip,
    FaultRule,
    FaultSpec,
    Inf,
    NaN,
    Noise,
    RandomFaults,
    Site,
    Stale,
    Zero,
    parse_fault_spec,
)
from codenet_dask.faults.models import field_bits

UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}
DTYPES = [np.float32, np.float64]
ALL_MODELS = [
    BitFlip(),
    BitFlip(bits=3),
    BitFlip(field="exponent"),
    BitFlip(bit=0),
    Noise(),
    Noise(scale=0.5, where="block"),
    NaN(),
    Inf(),
    Inf(sign=-1),
    Zero(),
    Stale(),
]


def flipped(clean: np.ndarray, corrupted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices of changed entries, their XOR masks)."""
    uint = UINT[clean.dtype]
    xor = clean.reshape(-1).view(uint) ^ corrupted.reshape(-1).view(uint)
    where = np.flatnonzero(xor)
    return where, xor[where]


def bit_positions(mask: int) -> set[int]:
    return {b for b in range(64) if (int(mask) >> b) & 1}


def interval(n: int, p: float) -> tuple[float, float]:
    """Binomial acceptance interval with a 1e-6 false-failure probability."""
    return stats.binom.interval(1 - 1e-6, n, p)


# ---------------------------------------------------------------------------------------------
# error models


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_given_bit_flips_exactly_that_bit(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)).astype(dtype)
    width = np.dtype(dtype).itemsize * 8
    for bit in range(width):
        out = BitFlip(bit=bit).corrupt(x, rng)
        where, masks = flipped(x, out)
        assert where.size == 1 and int(masks[0]) == 1 << bit, bit


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("field", ["any", "mantissa", "exponent", "sign"])
def test_random_bit_reaches_every_position_of_its_field(dtype, field):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(4).astype(dtype)
    allowed = set(field_bits(dtype, field).tolist())
    seen: set[int] = set()
    for _ in range(40 * len(allowed)):  # coupon collector: P(miss one) < 64 * exp(-40) per test
        where, masks = flipped(x, BitFlip(field=field).corrupt(x, rng))
        assert where.size == 1
        seen |= bit_positions(masks[0])
    assert seen == allowed


def test_field_widths_match_ieee():
    assert [len(field_bits(np.float32, f)) for f in ("mantissa", "exponent", "sign", "any")] == [23, 8, 1, 32]
    assert [len(field_bits(np.float64, f)) for f in ("mantissa", "exponent", "sign", "any")] == [52, 11, 1, 64]


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    field=st.sampled_from(["any", "mantissa", "exponent"]),
    bits=st.integers(1, 8),
    seed=st.integers(0, 2**32),
)
def test_multi_bit_flip_hits_k_distinct_bits_of_one_entry(dtype, field, bits, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3)).astype(dtype)
    out = BitFlip(bits=bits, field=field).corrupt(x, rng)
    where, masks = flipped(x, out)
    assert where.size == 1
    positions = bit_positions(masks[0])
    assert len(positions) == bits and positions <= set(field_bits(dtype, field).tolist())


float_arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(
        dt,
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        elements=st.floats(width=np.dtype(dt).itemsize * 8, allow_nan=True, allow_infinity=True),
    )
)


@settings(max_examples=150, deadline=None)
@given(x=float_arrays, model=st.sampled_from(ALL_MODELS), seed=st.integers(0, 2**32))
def test_models_return_a_new_array_and_never_touch_the_input(x, model, seed):
    before = x.tobytes()
    x.setflags(write=False)  # any in-place write would raise
    out = model.corrupt(x, np.random.default_rng(seed))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not np.shares_memory(out, x)
    assert x.tobytes() == before


@pytest.mark.parametrize("dtype", DTYPES)
def test_value_models_do_what_they_say(dtype):
    rng = np.random.default_rng(2)
    x = rng.uniform(1, 2, size=(4, 6)).astype(dtype)
    out = NaN().corrupt(x, rng)
    assert np.isnan(out).sum() == 1 and np.array_equal(out[~np.isnan(out)], x[~np.isnan(out)])
    for sign in (1, -1):
        out = Inf(sign=sign).corrupt(x, rng)
        assert np.isinf(out).sum() == 1 and out[np.isinf(out)][0] == sign * np.inf
    signs = {np.sign(Inf().corrupt(x, rng)[np.isinf(Inf().corrupt(x, rng))][0]) for _ in range(64)}
    assert signs == {1.0, -1.0}
    assert not Zero().corrupt(x, rng).any()


def test_noise_has_the_stated_relative_size():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 8))
    m = np.abs(x).max()
    out = Noise(scale=1e-3).corrupt(x, rng)
    diff = out - x
    assert np.count_nonzero(diff) == 1
    assert np.abs(diff).max() == pytest.approx(1e-3 * m, rel=1e-9)
    big = rng.standard_normal((200, 200))
    diff = Noise(scale=1e-2, where="block").corrupt(big, rng) - big
    assert np.count_nonzero(diff) > 0.99 * big.size
    assert np.sqrt(np.mean(diff**2)) == pytest.approx(1e-2 * np.abs(big).max(), rel=0.05)
    zeros = np.zeros(5, np.float32)  # a zero block: the scale is absolute
    assert np.abs(Noise(scale=0.25).corrupt(zeros, rng)).max() == pytest.approx(0.25)


def test_stale_differs_by_a_rank_one_update_of_the_stated_size():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 9))
    diff = Stale(scale=0.1).corrupt(x, rng) - x
    assert np.linalg.matrix_rank(diff, tol=1e-12) == 1
    assert np.abs(diff).max() == pytest.approx(0.1 * np.abs(x).max(), rel=1e-9)


def test_models_reject_bad_parameters_and_dtypes():
    for bad in ({"bits": 0}, {"bits": 2, "bit": 3}, {"field": "sign", "bits": 2}, {"bit": 64}, {"field": "x"}):
        with pytest.raises(ValueError):
            BitFlip(**bad)
    with pytest.raises(ValueError, match="does not exist"):
        BitFlip(bit=40).corrupt(np.ones(3, np.float32), np.random.default_rng())
    with pytest.raises(ValueError):
        Noise(scale=0)
    with pytest.raises(UnsupportedDtypeError):
        NaN().corrupt(np.arange(3), np.random.default_rng())


# ---------------------------------------------------------------------------------------------
# spec parsing


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("none", "none"),
        (" None ", "none"),
        ("bitflip:1e-3", "bitflip:0.001"),
        ("noise:1e-2:scale=1e-3,nan:1e-4", "noise:0.01:scale=0.001,nan:0.0001"),
        ("bitflip:1e-3:bits=2", "bitflip:0.001:bits=2"),
        ("BitFlip : 1e-5 : Field = exponent", "bitflip:1e-5:field=exponent"),
        ("bitflip:1e-3:bit=63", "bitflip:0.001:bit=63"),
        ("bitflip:1e-3:steps=update+block-forward", "bitflip:0.001:steps=block-forward+update"),
        (
            "bitflip:1e-4:steps=block-forward,bitflip:1e-2:steps=update",
            "bitflip:0.0001:steps=block-forward,bitflip:0.01:steps=update",
        ),
        ("zero:0.05:workers=2", "zero:0.05:workers=2"),
        ("bitflip:1e-4:workers=10+2+gpu-a:boost=100", "bitflip:0.0001:workers=2+10+gpu-a:boost=100"),
        ("inf:0.5:sign=-,stale:0.5", "inf:0.5:sign=-,stale:0.5:scale=0.01"),
        ("noise:1:where=block:scale=2", "noise:1:scale=2:where=block"),
        ("nan:0,zero:1", "nan:0,zero:1"),
    ],
)
def test_valid_specs_parse_to_their_canonical_form(text, canonical):
    spec = parse_fault_spec(text)
    assert str(spec) == canonical
    assert parse_fault_spec(str(spec)) == spec


def test_parsed_spec_has_the_right_objects():
    spec = parse_fault_spec("noise:1e-2:scale=1e-3:steps=update,bitflip:1e-3:bits=2:workers=2")
    assert spec.rules == (
        FaultRule(Noise(scale=1e-3), 1e-2, steps=frozenset({"update"})),
        FaultRule(BitFlip(bits=2), 1e-3, workers=frozenset({"2"})),
    )
    assert parse_fault_spec("none") == FaultSpec() and not FaultSpec().enabled


rule_strategy = st.builds(
    FaultRule,
    model=st.sampled_from(ALL_MODELS)
    | st.builds(Noise, scale=st.floats(1e-12, 1e6), where=st.sampled_from(["entry", "block"]))
    | st.builds(Stale, scale=st.floats(1e-12, 1e6)),
    rate=st.floats(0, 0.25),
    steps=st.none() | st.frozensets(st.sampled_from(STEPS), min_size=1),
    workers=st.none() | st.frozensets(st.from_regex(r"[a-zA-Z0-9_.\-]{1,6}", fullmatch=True), min_size=1, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(rules=st.lists(rule_strategy, max_size=4, unique_by=lambda r: r.model.name))
def test_str_round_trips(rules):
    spec = FaultSpec(tuple(rules))
    assert parse_fault_spec(str(spec)) == spec
    assert str(parse_fault_spec(str(spec))) == str(spec)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("bitflip:-1", "must be a probability in [0, 1], got -1"),
        ("bitflip:2", "must be a probability in [0, 1], got 2"),
        ("bitflip:nan", "must be finite"),
        ("bitflip:lots", "must be a number, got 'lots'"),
        ("bitflip", "has no rate"),
        ("cosmicray:1e-3", "unknown fault model 'cosmicray'"),
        ("", "empty fault spec"),
        ("bitflip:1e-3,", "empty term"),
        ("bitflip:1e-3:bits", "malformed option 'bits'"),
        ("bitflip:1e-3:=2", "malformed option"),
        ("bitflip:1e-3:bits=", "malformed option"),
        ("bitflip:1e-3:bits=two", "bits must be a non-negative integer"),
        ("bitflip:1e-3:bits=0", "bits must be an integer in [1, 64]"),
        ("bitflip:1e-3:bits=2:bits=3", "option bits given twice"),
        ("bitflip:1e-3:bits=2:bit=5", "do not combine"),
        ("bitflip:1e-3:field=fraction", "field must be one of any, mantissa, exponent, sign"),
        ("bitflip:1e-3:color=red", "unknown option color for bitflip"),
        ("nan:1e-3:scale=2", "unknown option scale for nan"),
        ("noise:1e-2:scale=-1", "noise scale must be a finite number > 0"),
        ("noise:1e-2:where=row", "where must be one of entry, block"),
        ("inf:1e-2:sign=up", "sign must be one of +, -"),
        ("bitflip:1e-3:steps=forward", "unknown step forward"),
        ("bitflip:1e-3:steps=update++encode", "malformed steps list"),
        ("bitflip:1e-3:workers=a/b", "bad worker name a/b"),
        ("bitflip:1e-3:boost=10", "needs workers="),
        ("bitflip:1e-3:workers=1:boost=-1", "boost must be a finite number >= 0"),
        ("bitflip:1e-3,bitflip:1e-2", "duplicate model bitflip"),
        ("bitflip:1e-3:steps=update,bitflip:1e-2:steps=update+encode", "duplicate model bitflip"),
        ("none,nan:1e-3", "'none' cannot be combined"),
        ("bitflip:0.6,nan:0.6", "sum to 1.2 > 1"),
        ("zero:0.5:workers=1:boost=3,nan:0.6", "on worker 1 sum to 1.6 > 1"),
    ],
)
def test_bad_specs_say_why_and_name_the_valid_forms(text, reason):
    with pytest.raises(FaultSpecError) as info:
        parse_fault_spec(text)
    message = str(info.value)
    assert reason in message
    assert "valid forms" in message and "bitflip:1e-3" in message and "noise:1e-2:scale=1e-3" in message


def test_rules_built_in_code_normalise_like_parsed_ones():
    rule = FaultRule(NaN(), np.float32(0.5), workers=frozenset({2}), boost=3)
    assert rule == parse_fault_spec("nan:0.5:workers=2:boost=3").rules[0]
    with pytest.raises(FaultSpecError, match="probability"):
        FaultRule(NaN(), True)


def test_fault_spec_error_is_a_value_error_and_a_codenet_error():
    assert issubclass(FaultSpecError, CodeNetError) and issubclass(FaultSpecError, ValueError)
    with pytest.raises(FaultSpecError):
        FaultRule(NaN(), 1.5)


def test_disjoint_duplicates_are_per_step_and_per_worker_rates():
    spec = parse_fault_spec("bitflip:0.05:steps=encode,bitflip:0.1:steps=update,zero:0.9:workers=1,zero:0.9:workers=2")
    first, second, w1, _ = spec.rules
    assert first.rate_at("encode", None) == 0.05 and first.rate_at("update", None) == 0
    assert second.rate_at("update", "3") == 0.1
    assert w1.rate_at("verify", 1) == 0.9 and w1.rate_at("verify", 2) == 0 and w1.rate_at("verify", None) == 0


# ---------------------------------------------------------------------------------------------
# the RandomFaults hook


def sites(n: int, step: str = "block-forward") -> list[Site]:
    return [Site(step, f"layer{i % 3}", i, (i % 5, i % 7)) for i in range(n)]


# Runs both here and in a fresh interpreter (only numpy + codenet_dask imported there).
FINGERPRINT = """
import hashlib
import numpy as np
from codenet_dask.faults import RandomFaults, Site

def fingerprint(spec, seed, n):
    hook = RandomFaults.from_string(spec, seed=seed)
    x = np.linspace(-3, 5, 24).reshape(4, 6)
    h = hashlib.sha256()
    for i in range(n):
        site = Site("block-forward", f"layer{i % 3}", i, (i % 5, i % 7))
        for attempt in (0, 1):
            values, record = hook.apply_logged(site, x, attempt)
            h.update(values.tobytes() + repr(record).encode())
    return h.hexdigest()
"""


def fingerprint(spec: str, seed: int, n: int) -> str:
    """Hash of every decision and corrupted block over n sites x 2 attempts."""
    namespace: dict = {}
    exec(FINGERPRINT, namespace)
    return namespace["fingerprint"](spec, seed, n)


SPEC = "bitflip:0.2:bits=2,noise:0.1:scale=1e-3,nan:0.05,inf:0.05,zero:0.05,stale:0.05"


def test_same_seed_site_attempt_gives_the_same_result():
    hook = RandomFaults.from_string(SPEC, seed=11)
    x = np.random.default_rng(5).standard_normal((5, 5))
    for site in sites(300):
        a, ra = hook.apply_logged(site, x, 0)
        b, rb = RandomFaults.from_string(SPEC, seed=11).apply_logged(site, x, 0)
        assert a.tobytes() == b.tobytes() and ra == rb
        decision = hook.decide(site, 0)
        assert (decision is None) == (ra is None)
        if decision is not None:
            assert decision.corrupt(x).tobytes() == a.tobytes() and decision.model == ra.model
        else:
            assert a is x  # a clean task passes its value through untouched


def test_results_are_identical_in_another_process():
    code = FINGERPRINT + f"\nprint(fingerprint({SPEC!r}, 11, 200))\n"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True)
    assert child.stdout.strip() == fingerprint(SPEC, 11, 200)
    assert child.stdout.strip() != fingerprint(SPEC, 12, 200)


def test_empirical_rates_fall_in_binomial_intervals():
    n = 20_000
    hook = RandomFaults.from_string("bitflip:0.01,nan:0.03:steps=update,zero:0.002", seed=3)
    for step, expected in (
        ("block-forward", {"bitflip": 0.01, "zero": 0.002}),
        ("update", {"bitflip": 0.01, "nan": 0.03, "zero": 0.002}),
    ):
        counts: dict[str, int] = {}
        for site in sites(n, step):
            d = hook.decide(site, 0)
            if d is not None:
                counts[d.model.name] = counts.get(d.model.name, 0) + 1
        assert set(counts) == set(expected), step
        for name, p in expected.items():
            lo, hi = interval(n, p)
            assert lo <= counts[name] <= hi, (step, name, counts[name], n * p)


def test_recomputation_draws_independently():
    n = 10_000
    hook = RandomFaults.from_string("bitflip:0.5", seed=9)
    first = np.array([hook.decide(s, 0) is not None for s in sites(n)])
    retry = np.array([hook.decide(s, 1) is not None for s in sites(n)])
    other_seed = np.array([RandomFaults(hook.spec, seed=10).decide(s, 0) is not None for s in sites(n)])
    for a, b in ((first, retry), (first, other_seed)):
        lo, hi = interval(n, 0.25)
        assert lo <= np.sum(a & b) <= hi


def test_higher_rates_hit_a_superset_of_tasks():
    low = RandomFaults.from_string("bitflip:0.01", seed=4)
    high = RandomFaults.from_string("bitflip:0.05", seed=4)
    hit_low = {s for s in sites(5000) if low.decide(s, 0)}
    hit_high = {s for s in sites(5000) if high.decide(s, 0)}
    assert hit_low and hit_low < hit_high


def test_unreliable_workers():
    n = 20_000
    only = RandomFaults.from_string("zero:0.01:workers=2", seed=1)
    boosted = RandomFaults.from_string("zero:0.001:workers=1+2:boost=20", seed=1)
    for worker, hook, p in (
        (2, only, 0.01),
        ("0", only, 0.0),
        (None, only, 0.0),
        (2, boosted, 0.02),
        ("7", boosted, 0.001),
        (None, boosted, 0.001),
    ):
        hits = sum(hook.decide(s, 0, worker) is not None for s in sites(n))
        lo, hi = interval(n, p)
        assert lo <= hits <= hi, (worker, p, hits)
    x = np.ones((2, 2))  # outside a worker, apply() sees no worker name: the unreliable one is never us
    assert all(only.apply_logged(s, x, 0)[1] is None for s in sites(2000))


def test_the_hook_reads_the_worker_name_on_a_real_worker():
    distributed = pytest.importorskip("distributed")
    hook = RandomFaults.from_string("zero:1:workers=1", seed=0)
    site = Site("update", "layer0", 0, (0, 0))
    options = {"n_workers": 2, "threads_per_worker": 1, "processes": False, "dashboard_address": ":0"}
    with distributed.LocalCluster(**options) as cluster, distributed.Client(cluster) as client:
        results = {}
        for name, worker in cluster.workers.items():
            future = client.submit(hook.apply_logged, site, np.ones(3), 0, workers=[worker.address], pure=False)
            results[str(name)] = future.result()
    assert results["1"][1] is not None and results["1"][1].worker == "1" and not results["1"][0].any()
    assert results["0"][1] is None and results["0"][0].all()


def test_ground_truth_records_relative_magnitude():
    x = np.array([[1.0, -4.0], [2.0, 0.5]])
    site = Site("encode", "layer0", 0, (0, 0))
    cases = (("nan:1", np.inf), ("inf:1", np.inf), ("zero:1", 1.0), ("noise:1:scale=0.125", 0.125))
    for text, magnitude in cases:
        _out, record = RandomFaults.from_string(text).apply_logged(site, x, 0)
        assert record is not None and record.site == site and record.attempt == 0
        assert record.relative_magnitude == magnitude, text
    _, record = RandomFaults.from_string("zero:1").apply_logged(site, np.zeros(4), 0)
    assert record is not None and record.relative_magnitude == 0.0  # injected, but benign


def test_none_and_zero_rates_never_inject():
    x = np.ones(3)
    for text in ("none", "bitflip:0,nan:0"):
        hook = RandomFaults.from_string(text, seed=1)
        assert all(hook.decide(s, a) is None and hook.apply(s, x, a) is x for s in sites(500) for a in (0, 1))


def test_numpy_integers_in_sites_hash_like_python_ints():
    """Graph code may build sites from numpy indices; they must hit the same tasks."""
    hook = RandomFaults.from_string("bitflip:0.5", seed=2)
    a = [hook.decide(Site("verify", "l", 3, (i, 1)), 0) for i in range(50)]
    b = [hook.decide(Site("verify", "l", np.int64(3), (np.int64(i), np.int32(1))), 0) for i in range(50)]
    assert [d and d.seed for d in a] == [d and d.seed for d in b]
