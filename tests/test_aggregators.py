"""Aggregators across samples: hand-computed numbers, POT's outlier and Hodges-Lehmann rules, streaming."""
from __future__ import annotations

import numpy as np
import pytest

from pot_torch.statistics import aggregators
from pot_torch.statistics.aggregators import AGGREGATORS, aggregate, reduce_and_aggregate
from pot_torch.statistics.online import OnlineAccumulator, online_aggregator_of, stream_into
from pot_torch.statistics.reducers import REDUCER_TYPES, make_reducer

# per-tensor values of two batches (B = 2 and B = 3): samples 4, -1, 2, 10, 0
PER_TENSOR = [np.array([4, -1], np.float32), np.array([2, 10, 0], np.float32)]
# per-channel values (C = 2) of two batches: channel 0 = 1, 5, 3 ; channel 1 = -2, 0, 8
PER_CHANNEL = [np.array([[1, -2], [5, 0]], np.float32), np.array([[3, 8]], np.float32)]


@pytest.mark.parametrize("name, per_tensor, per_channel", [
    ("min", -1, [1, -2]),
    ("max", 10, [5, 8]),
    ("mean", 3, [3, 2]),
    ("median", 2, [3, 0]),
    # 5 samples: 1% / 99% quantiles lie strictly inside the extreme values, so min and max are dropped
    ("mean_no_outliers", 2, [3, 0]),
    ("median_no_outliers", 2, [3, 0]),
    # pairwise sums of 4 -1 2 10 0: 3 6 14 4 1 9 -1 12 2 10 -> median (4 + 6) / 2 = 5 -> 2.5
    # channel 0 (1 5 3): sums 6 4 8 -> 6 / 2 = 3 ; channel 1 (-2 0 8): -2 6 8 -> 6 / 2 = 3
    ("hl_estimator", 2.5, [3, 3]),
    ("batch_mean", [3], [[3, 2]]),
])
def test_hand_computed(name: str, per_tensor, per_channel) -> None:
    tensor_result = aggregate(name, PER_TENSOR)
    channel_result = aggregate(name, PER_CHANNEL)
    assert tensor_result.shape == np.shape(per_tensor) and channel_result.shape == np.shape(per_channel)
    assert tensor_result.dtype == np.float32 and channel_result.dtype == np.float32
    np.testing.assert_allclose(tensor_result, per_tensor, rtol=1e-6)
    np.testing.assert_allclose(channel_result, per_channel, rtol=1e-6)


def test_no_outliers_drop_extremes_per_channel() -> None:
    # 101 samples: channel 0 = 0..100, channel 1 = the same with 50 replaced by 1e6. Per channel the 1% / 99%
    # quantiles (virtual indices 1 and 99 of the sorted samples) are 1 / 99 and 1 / 100, so channel 0 keeps
    # 1..99 and channel 1 keeps 1..49, 51..100: the 1e6 outlier has no effect.
    base = np.arange(101, dtype=np.float32)
    channel_1 = base.copy()
    channel_1[50] = 1e6
    values = [np.stack([base, channel_1], axis=1)]
    np.testing.assert_allclose(aggregate("mean_no_outliers", values), [50, (5050 - 50) / 99], rtol=1e-6)
    np.testing.assert_array_equal(aggregate("median_no_outliers", values), [50, 51])
    assert aggregate("mean", values)[1] > 9000  # the plain mean is dominated by it


def _loop_reference(name: str, samples: np.ndarray) -> np.ndarray:
    """POT's per-channel rules written as a plain loop over channels."""
    flat = samples.reshape(samples.shape[0], -1)
    result = []
    for column in flat.T:
        if name == "hl_estimator":
            rows, cols = np.triu_indices(len(column), 1)
            result.append(0.5 * np.median(column[rows] + column[cols]))
            continue
        low, high = np.quantile(column, 0.01), np.quantile(column, 0.99)
        kept = column[(column >= low) & (column <= high)]
        result.append(np.mean(kept.astype(np.float64)) if name == "mean_no_outliers" else np.median(kept))
    return np.asarray(result, np.float32).reshape(samples.shape[1:])


@pytest.mark.parametrize("name", ["mean_no_outliers", "median_no_outliers", "hl_estimator"])
@pytest.mark.parametrize("tail", [(), (7,)])
def test_robust_aggregators_match_a_loop_over_channels(name: str, tail: tuple, monkeypatch) -> None:
    monkeypatch.setattr(aggregators, "_HL_MAX_PAIRS", 500)  # force several channel blocks
    rng = np.random.default_rng(len(tail))
    for count in (3, 20, 150):
        values = rng.standard_normal((count,) + tail).astype(np.float32)
        values[rng.integers(0, count)] += 100  # an outlier
        batches = np.array_split(values, [1, count // 2])
        result = aggregate(name, batches)
        expected = _loop_reference(name, values)
        if name == "mean_no_outliers":
            np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(result, expected)


def test_small_sample_edge_cases() -> None:
    one = [np.array([[2.0, -3.0]], np.float32)]
    for name in AGGREGATORS:
        np.testing.assert_array_equal(np.reshape(aggregate(name, one), -1), [2, -3], err_msg=name)
    # two samples: the 1% / 99% quantiles exclude both, so the no-outlier rules fall back to all samples
    two = [np.array([0.0, 1.0], np.float32)]
    assert aggregate("mean_no_outliers", two) == pytest.approx(0.5)
    assert aggregate("median_no_outliers", two) == pytest.approx(0.5)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown aggregator 'average'; valid aggregators are batch_mean, "
                                         "hl_estimator, max, mean, mean_no_outliers, median, "
                                         "median_no_outliers, min"):
        aggregate("average", PER_TENSOR)
    with pytest.raises(ValueError, match="empty list of statistics"):
        aggregate("max", [])
    with pytest.raises(ValueError, match=r"must share their shape after the batch axis.*\(2,\), \(1, 2\)"):
        aggregate("max", [PER_TENSOR[0], PER_CHANNEL[1]])


def test_pot_mean_of_equal_batches_is_the_mean_of_batch_means() -> None:
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(6)]
    pot_style = np.mean([np.mean(batch, axis=0) for batch in batches], axis=0)
    np.testing.assert_allclose(aggregate("mean", batches), pot_style, rtol=1e-6)


@pytest.mark.parametrize("stat_type", sorted(REDUCER_TYPES))
@pytest.mark.parametrize("per_channel", [False, True])
def test_streaming_equals_reducing_the_whole_set(stat_type: str, per_channel: bool) -> None:
    rng = np.random.default_rng(7)
    activations = (rng.standard_normal((13, 4, 3, 5)) * rng.uniform(0.5, 3, (13, 1, 1, 1))).astype(np.float32)
    reducer = make_reducer(stat_type, per_channel, channel_axis=-1, quantile=0.02)
    whole = [reducer(activations)]
    for cuts in ([], [1, 2, 3], [5, 12], list(range(1, 13))):
        batches = np.split(activations, cuts)
        for name in AGGREGATORS:
            streamed = reduce_and_aggregate(reducer, name, iter(batches))
            np.testing.assert_array_equal(streamed, aggregate(name, whole), err_msg=f"{name} {cuts}")


# ------------------------------------------------------------------------------------------ online
@pytest.mark.parametrize("name", ["min", "max", "mean"])
@pytest.mark.parametrize("batches", [PER_TENSOR, PER_CHANNEL], ids=["per_tensor", "per_channel"])
def test_online_accumulator_equals_list_aggregation(name: str, batches) -> None:
    """Folding batches in (data set order) and aggregating the one row gives the list aggregate, same dtype."""
    accumulator = OnlineAccumulator(name)
    for batch in batches:
        accumulator.add(batch)
    row = accumulator.result()
    assert row.shape == (1,) + batches[0].shape[1:] and accumulator.count == sum(len(b) for b in batches)
    streamed, listed = aggregate(name, [row]), aggregate(name, batches)
    assert streamed.dtype == listed.dtype == np.float32
    np.testing.assert_array_equal(streamed, listed)


def test_online_mean_weights_samples_not_batches() -> None:
    accumulator = OnlineAccumulator("mean")
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((size, 4)).astype(np.float32) for size in (5, 1, 7, 2)]
    for batch in batches:
        accumulator.add(batch)
    np.testing.assert_allclose(aggregate("mean", [accumulator.result()]), np.concatenate(batches).mean(axis=0),
                               rtol=1e-6)


def test_online_marks_and_errors() -> None:
    reducer = make_reducer("max", per_channel=False)
    assert online_aggregator_of(reducer) is None
    assert online_aggregator_of(stream_into(reducer, "max")) == "max"
    assert online_aggregator_of(stream_into(make_reducer("min", False), "median")) is None  # lists kept
    assert reducer == make_reducer("max", per_channel=False)  # the mark does not change what it measures
    with pytest.raises(ValueError, match="aggregator 'median' has no online form; online aggregators are min"):
        OnlineAccumulator("median")
    accumulator = OnlineAccumulator("max", what="statistic 'max' of 'relu'")
    accumulator.add(PER_TENSOR[0])
    with pytest.raises(ValueError, match=r"statistic 'max' of 'relu': .*shape after the batch axis.*\(2, 2\)"):
        accumulator.add(PER_CHANNEL[0])
    with pytest.raises(ValueError, match="no batch was measured"):
        OnlineAccumulator("min").result()
