"""Per-batch reducers: hand-computed numbers, axes, errors, and in-graph == numpy on the CPU device."""
from __future__ import annotations

import pickle

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch.statistics.reducers import (
    REDUCER_TYPES, AbsMaxReducer, AbsQuantileReducer, MaxReducer, MeanReducer, MinReducer, QuantileReducer,
    Reducer, make_reducer, per_batch_value, pot_quantile)

F32 = {"INFERENCE_PRECISION_HINT": "f32"}

# [B=2, C=2, 3]: sample 0 channel 0 = [1, -4, 2], channel 1 = [0, 3, -1]; sample 1 = sample 0 * 2 + 1
X = np.array([[[1, -4, 2], [0, 3, -1]]], dtype=np.float32)
X = np.concatenate([X, X * 2 + 1])


@pytest.mark.parametrize("reducer, expected", [
    (MinReducer(), [-4, -7]),
    (MaxReducer(), [3, 7]),
    (AbsMaxReducer(), [4, 7]),
    (MeanReducer(), [1 / 6, 4 / 3]),
    (QuantileReducer(0.5), [0.5, 2.0]),        # sorted sample 0: -4 -1 0 1 2 3 -> (0 + 1) / 2
    (QuantileReducer(0.3), [-0.5, 0.0]),       # virtual index 1.5 -> (-1 + 0) / 2 ; sample 1: (-1 + 1) / 2
    (AbsQuantileReducer(0.6), [2.0, 5.0]),     # |x| sorted 0 1 1 2 3 4 / 1 1 3 5 7 7, index 3
    (QuantileReducer(0.0), [-4, -7]),
    (QuantileReducer(1.0), [3, 7]),
])
def test_per_tensor_hand_computed(reducer: Reducer, expected: list) -> None:
    result = reducer(X)
    assert result.dtype == np.float32 and result.shape == (2,)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


@pytest.mark.parametrize("reducer, expected", [
    (MinReducer(per_channel=True), [[-4, -1], [-7, -1]]),
    (MaxReducer(per_channel=True), [[2, 3], [5, 7]]),
    (AbsMaxReducer(per_channel=True), [[4, 3], [7, 7]]),
    (MeanReducer(per_channel=True), [[-1 / 3, 2 / 3], [1 / 3, 7 / 3]]),
    (QuantileReducer(0.25, per_channel=True), [[-1.5, -0.5], [-2.0, 0.0]]),  # index 0.5 of sorted channel
    (AbsQuantileReducer(0.5, per_channel=True), [[2, 1], [5, 1]]),
])
def test_per_channel_hand_computed(reducer: Reducer, expected: list) -> None:
    result = reducer(X)
    assert result.dtype == np.float32 and result.shape == (2, 2)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_channel_last_transformer_activation() -> None:
    # [B=1, T=2, C=3] with channel_axis=-1: reduce over tokens only
    x = np.array([[[1, -5, 3], [4, 2, -6]]], dtype=np.float32)
    np.testing.assert_array_equal(MaxReducer(per_channel=True, channel_axis=-1)(x), [[4, 2, 3]])
    np.testing.assert_array_equal(AbsMaxReducer(per_channel=True, channel_axis=-1)(x), [[4, 5, 6]])
    np.testing.assert_array_equal(MinReducer(per_channel=True, channel_axis=2)(x), [[1, -5, -6]])
    np.testing.assert_allclose(MeanReducer(per_channel=True, channel_axis=-1)(x), [[2.5, -1.5, -1.5]])
    # channel_axis=1 on the same tensor keeps the token axis instead
    np.testing.assert_array_equal(MaxReducer(per_channel=True, channel_axis=1)(x), [[3, 4]])


def test_rank_two_and_lower_activations() -> None:
    x = np.array([[1, -2, 3], [-4, 5, 0]], dtype=np.float32)
    np.testing.assert_array_equal(MaxReducer()(x), [3, 5])
    np.testing.assert_array_equal(MaxReducer(per_channel=True)(x), x)  # [B, C] is already per channel
    np.testing.assert_array_equal(AbsMaxReducer(per_channel=True, channel_axis=-1)(x), np.abs(x))
    np.testing.assert_array_equal(MinReducer()(np.array([3, -1], np.float32)), [3, -1])  # [B]: one value each
    np.testing.assert_array_equal(AbsMaxReducer()(np.float32(-2.5)), [2.5])            # scalar -> [1]


def test_outputs_are_float32_for_other_dtypes() -> None:
    ints = np.array([[1, -3], [2, 7]], dtype=np.int64)
    assert MaxReducer()(ints).dtype == np.float32
    np.testing.assert_array_equal(AbsMaxReducer()(ints), [3, 7])
    halves = X.astype(np.float16)
    np.testing.assert_array_equal(MinReducer(per_channel=True)(halves), MinReducer(per_channel=True)(X))


@pytest.mark.parametrize("channel_axis, shape", [(0, (2, 3, 4)), (3, (2, 3, 4)), (-3, (2, 3, 4)), (1, (5,))])
def test_bad_channel_axis_is_a_clear_error(channel_axis: int, shape: tuple) -> None:
    reducer = MaxReducer(per_channel=True, channel_axis=channel_axis)
    with pytest.raises(ValueError, match=rf"channel_axis {channel_axis} does not fit an activation of rank "
                                         rf"{len(shape)}.*axis 0 is the batch.*activation shape"):
        reducer(np.zeros(shape, np.float32))


def test_channel_axis_type_is_checked() -> None:
    with pytest.raises(TypeError, match="channel_axis must be an int"):
        MinReducer(per_channel=True, channel_axis="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"q must be a number in \[0, 1\]"):
        QuantileReducer(1.5)


def test_make_reducer_names_and_quantile_rule() -> None:
    assert make_reducer("min", False) == MinReducer()
    assert make_reducer("abs_max", True, channel_axis=-1, inplace=True) == AbsMaxReducer(True, -1, True)
    assert make_reducer("mean", True) == MeanReducer(per_channel=True)
    # POT: the min side uses q = outlier_prob, the max side q = 1 - outlier_prob
    assert make_reducer("quantile", False, outlier_prob=1e-4, side="min").q == 1e-4
    assert make_reducer("quantile", False, outlier_prob=1e-4, side="max").q == 1 - 1e-4
    assert (make_reducer("abs_quantile", True, outlier_prob=1e-3, side="max")
            == AbsQuantileReducer(1 - 1e-3, True))
    assert make_reducer("quantile", False, quantile=0.25) == QuantileReducer(0.25)
    assert pot_quantile("max", 0.01) == 0.99


def test_make_reducer_errors_list_valid_choices() -> None:
    with pytest.raises(ValueError, match="unknown statistic type 'abs_min'; valid types are abs_max, "
                                         "abs_quantile, max, mean, min, quantile"):
        make_reducer("abs_min", False)
    with pytest.raises(ValueError, match="needs its quantile: pass quantile=q, or POT's outlier_prob"):
        make_reducer("quantile", False, outlier_prob=1e-4)
    with pytest.raises(ValueError, match="either quantile=q or outlier_prob"):
        make_reducer("quantile", False, outlier_prob=1e-4, side="min", quantile=0.5)
    with pytest.raises(ValueError, match="side must be one of min, max"):
        make_reducer("abs_quantile", False, outlier_prob=1e-4, side="upper")


def test_repr_equality_pickle_and_no_state_kept() -> None:
    reducer = QuantileReducer(1e-4, per_channel=True, channel_axis=-1, inplace=True)
    assert repr(reducer) == "QuantileReducer(q=0.0001, per_channel=True, channel_axis=-1, inplace=True)"
    assert repr(MinReducer()) == "MinReducer(per_channel=False, channel_axis=1, inplace=False)"
    clone = pickle.loads(pickle.dumps(reducer))
    assert clone == reducer and hash(clone) == hash(reducer) and clone is not reducer
    assert reducer != AbsQuantileReducer(1e-4, per_channel=True, channel_axis=-1, inplace=True)
    assert len({MinReducer(), MinReducer(), MaxReducer()}) == 2
    state = dict(vars(reducer))
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    first = reducer(x)
    assert vars(reducer) == state  # nothing about the activation is kept
    np.testing.assert_array_equal(first, clone(x))


def test_inplace_is_forced_off_without_an_in_graph_form() -> None:
    class NumpyOnly(MaxReducer):
        @property
        def supports_inplace(self) -> bool:
            return False

    reducer = NumpyOnly(inplace=True)
    assert reducer.inplace is False
    reducer.inplace = True
    assert reducer.inplace is False
    with pytest.raises(NotImplementedError, match="has no in-graph form"):
        reducer.graph_reduce(ops.parameter([1, 2], np.float32).output(0))
    assert all(make_reducer(name, False, quantile=0.5).supports_inplace for name in REDUCER_TYPES)


# ---------------------------------------------------------------------------------------------- in-graph


def _all_reducers(channel_axis: int) -> list:
    reducers = []
    for per_channel in (False, True):
        for name in ("min", "max", "abs_max", "mean"):
            reducers.append(make_reducer(name, per_channel, channel_axis, inplace=True))
        for name in ("quantile", "abs_quantile"):
            for q in (0.0, 1e-4, 0.3, 0.5, 1 - 1e-4, 1.0):
                reducers.append(make_reducer(name, per_channel, channel_axis, inplace=True, quantile=q))
    return reducers


def _compile_with_stats(shape: tuple, reducers: list) -> ov.CompiledModel:
    """input -> Multiply (the measured activation, also an output) -> one graph_reduce output per reducer."""
    data = ops.parameter(list(shape), np.float32, name="input")
    act = ops.multiply(data, ops.constant(np.float32(1.5)))
    act.set_friendly_name("act")
    outputs = [ops.result(act)] + [ops.result(r.graph_reduce(act.output(0))) for r in reducers]
    return ov.Core().compile_model(ov.Model(outputs, [data], "stats"), "CPU", F32)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("tail, channel_axis", [((6, 5, 7), 1), ((9, 12), -1), ((4, 3, 5), -2), ((10,), 1)])
def test_in_graph_equals_numpy(batch: int, tail: tuple, channel_axis: int) -> None:
    shape = (batch,) + tail
    reducers = _all_reducers(channel_axis)
    compiled = _compile_with_stats(shape, reducers)
    rng = np.random.default_rng(batch * 100 + len(tail))
    for _ in range(3):
        x = (rng.standard_normal(shape) * 4).astype(np.float32)
        x.flat[0] = x.flat[1]  # ties must not matter
        outputs = compiled(x)
        act = outputs[compiled.outputs[0]]
        for index, reducer in enumerate(reducers, start=1):
            in_graph = outputs[compiled.outputs[index]]
            expected = reducer(act)
            assert in_graph.dtype == np.float32 and in_graph.shape == expected.shape, reducer
            if isinstance(reducer, MeanReducer):  # float32 sum order differs: a few ulp
                np.testing.assert_allclose(in_graph, expected, rtol=2e-6, atol=1e-7, err_msg=repr(reducer))
            else:
                np.testing.assert_array_equal(in_graph, expected, err_msg=repr(reducer))


def test_in_graph_on_non_f32_output_and_dynamic_batch() -> None:
    data = ops.parameter(ov.PartialShape([-1, 4, 6]), np.float32, name="input")
    as_int = ops.convert(data, ov.Type.i32)
    as_int.set_friendly_name("as_int")
    reducers = [AbsMaxReducer(per_channel=True), QuantileReducer(0.25),
                MeanReducer(per_channel=True, channel_axis=-1)]
    outputs = [ops.result(as_int)] + [ops.result(r.graph_reduce(as_int.output(0))) for r in reducers]
    compiled = ov.Core().compile_model(ov.Model(outputs, [data]), "CPU", F32)
    for batch in (1, 3):
        x = np.random.default_rng(batch).integers(-50, 50, (batch, 4, 6)).astype(np.float32)
        result = compiled(x)
        act = result[compiled.outputs[0]]
        for index, reducer in enumerate(reducers, start=1):
            np.testing.assert_allclose(result[compiled.outputs[index]], reducer(act), rtol=1e-6,
                                       err_msg=repr(reducer))


def test_in_graph_limits_are_clear() -> None:
    dynamic = ops.parameter(ov.PartialShape([-1, 3, -1]), np.float32, name="seq").output(0)
    assert MaxReducer(per_channel=True).can_graph_reduce(dynamic)
    quantile = QuantileReducer(0.5, per_channel=True)
    assert not quantile.can_graph_reduce(dynamic)
    with pytest.raises(ValueError, match=r"cannot compute a quantile in-graph on 'seq'.*not all static"):
        quantile.graph_reduce(dynamic)
    any_rank = ops.parameter(ov.PartialShape.dynamic(), np.float32, name="any").output(0)
    assert not MinReducer().can_graph_reduce(any_rank)
    with pytest.raises(ValueError, match="its rank is dynamic"):
        MinReducer().graph_reduce(any_rank)
    flat = ops.parameter([2, 3], np.float32, name="flat").output(0)
    assert not MinReducer(per_channel=True, channel_axis=2).can_graph_reduce(flat)
    with pytest.raises(ValueError, match="channel_axis 2 does not fit an activation of rank 2"):
        MinReducer(per_channel=True, channel_axis=2).graph_reduce(flat)


def test_graph_building_is_deterministic() -> None:
    def names() -> list:
        data = ops.parameter([2, 3, 4], np.float32, name="input")
        relu = ops.relu(data)
        relu.set_friendly_name("relu")
        outs = [ops.result(r.graph_reduce(relu.output(0))) for r in _all_reducers(-1)]
        model = ov.Model(outs, [data])
        # Results are named by the caller (the engine); graph_reduce names every op it builds
        return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() != "Result"]

    first = names()
    assert first == names()
    assert "relu/stat_abs_max_tensor" in first and "relu/stat_quantile_channel-1_q0.0001" in first


# ------------------------------------------------------------------------------- axis 0 that is not the batch


@pytest.mark.parametrize("shape, channel_axis", [((7, 1, 5), -1), ((7, 5), -1), ((7, 5), 1)])
def test_axis_0_not_the_batch_is_one_value_in_numpy_and_in_graph(shape: tuple, channel_axis: int) -> None:
    """Sequence-first outputs ([T, B, C] / [T, C]) fed one sample: the whole output is that sample's value,
    and in-graph rows merged by ``merge_rows`` give the numpy numbers."""
    reducers = [make_reducer(name, per_channel, channel_axis, inplace=True)
                for per_channel in (False, True) for name in ("min", "max", "abs_max", "mean")]
    compiled = _compile_with_stats(shape, reducers)
    x = (np.random.default_rng(5).standard_normal(shape) * 4).astype(np.float32)
    outputs = compiled(x)
    act = outputs[compiled.outputs[0]]
    by_hand = {"min": np.min, "max": np.max, "abs_max": lambda a, axis: np.max(np.abs(a), axis=axis),
               "mean": lambda a, axis: np.mean(a, axis=axis, dtype=np.float64)}
    for index, reducer in enumerate(reducers, start=1):  # channels are the last axis in every case here
        axes = tuple(range(act.ndim - 1)) if reducer.per_channel else None
        expected = np.asarray(by_hand[reducer.stat_type](act, axis=axes), np.float32).reshape(1, -1)
        expected = expected if reducer.per_channel else expected.reshape(1)
        numpy_side = per_batch_value(reducer, act, 1, in_graph=False)
        in_graph = per_batch_value(reducer, outputs[compiled.outputs[index]], 1, in_graph=True)
        np.testing.assert_array_equal(numpy_side, expected, err_msg=repr(reducer))
        assert in_graph.shape == expected.shape == ((1, shape[-1]) if reducer.per_channel else (1,)), reducer
        np.testing.assert_allclose(in_graph, expected, rtol=2e-6, atol=1e-7, err_msg=repr(reducer))
    assert float(per_batch_value(MaxReducer(), act, 1, in_graph=False)[0]) == float(act.max())


def test_axis_0_that_is_the_batch_keeps_one_value_per_sample() -> None:
    assert per_batch_value(MaxReducer(), X, 2, in_graph=False).tolist() == [3, 7]
    assert per_batch_value(MaxReducer(), np.array([3, 7], np.float32), 2, in_graph=True).tolist() == [3, 7]
    assert per_batch_value(lambda x: x.shape, X, 3, in_graph=False) == X.shape  # other functions: as is


def test_axis_0_not_the_batch_of_several_samples_is_logged(caplog) -> None:
    x = np.zeros((5, 2, 3), np.float32)
    with caplog.at_level("WARNING"):
        value = per_batch_value(MeanReducer(), x, 2, in_graph=False, what="'attn/in_proj'")
    assert value.shape == (1,)
    assert "'attn/in_proj'" in caplog.text and "5 entries for a batch of 2 samples" in caplog.text


def test_in_graph_quantile_rows_that_are_not_samples_are_an_error() -> None:
    with pytest.raises(ValueError, match="inplace_statistics=False"):
        per_batch_value(QuantileReducer(0.5, inplace=True), np.zeros(4, np.float32), 1, in_graph=True)
