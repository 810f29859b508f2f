"""The stacked statistics output adds no op for results that are flat already: a per-tensor result ``[B]`` goes
into the Concat as it is (fewer ops to compile), a per-channel one ``[B, C]`` is flattened."""
from __future__ import annotations

from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.stats_outputs import add_stats_outputs
from tests.test_abs_max_from_min import _model


def test_only_results_of_rank_two_and_more_are_reshaped_into_the_stack() -> None:
    layout = {"act": {f"{kind}_{granularity}": make_reducer(kind, granularity == "channel", inplace=True)
                      for kind in ("min", "max", "mean") for granularity in ("tensor", "channel")}}
    model = add_stats_outputs(_model(), layout, stack=True).model
    flattened = [op for op in model.get_ops() if op.get_friendly_name().startswith("stat_stack/")
                 and op.get_type_name() == "Reshape"]
    assert len(flattened) == 3 and all(op.get_input_partial_shape(0).rank.get_length() == 2 for op in flattened)
    concat = next(op for op in model.get_ops() if op.get_friendly_name() == "stat_stack/concat")
    assert concat.get_input_size() == 6
