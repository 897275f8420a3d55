import math

import numpy as np
import pytest

from depthlm.errors import DepthLMError
from depthlm.metrics import METRIC_NAMES, MetricInputError, aggregate, depth_metrics, metrics_by_group
from depthlm.parsing import parse_distance
from depthlm.prompts import get_template
from depthlm.records import read_records

LN125 = math.log(1.25)


def test_hand_computed_values():
    # valid ratios 1, 1.25, 1.25 (exactly 1.25 is NOT a delta1 hit); None and NaN are parse
    # failures; -1 is a miss but not a parse failure.
    pred = [1.0, 2.5, 4.0, None, -1.0, math.nan]
    gt = [1.0, 2.0, 5.0, 3.0, 2.0, 4.0]
    m = depth_metrics(pred, gt)
    assert m["n"] == 6 and m["n_valid"] == 3
    assert m["parse_failure_rate"] == pytest.approx(2 / 6)
    assert m["delta1"] == pytest.approx(1 / 6)
    assert m["delta2"] == pytest.approx(3 / 6)
    assert m["delta3"] == pytest.approx(3 / 6)
    assert m["abs_rel"] == pytest.approx((0 + 0.5 / 2 + 1 / 5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 0.25 / 2 + 1 / 5) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 0.25 + 1) / 3))
    assert m["rmse_log"] == pytest.approx(LN125 * math.sqrt(2 / 3))
    assert m["log10"] == pytest.approx(2 / 3 * math.log10(1.25))
    # d = (0, ln 1.25, -ln 1.25): mean 0, so silog = 100 * rmse_log
    assert m["silog"] == pytest.approx(100 * LN125 * math.sqrt(2 / 3))
    assert set(m) == {*METRIC_NAMES, "n", "n_valid"}
    assert all(isinstance(m[k], float) for k in METRIC_NAMES)


def test_silog_is_scale_invariant_and_rmse_log_is_not():
    gt = np.array([1.0, 2.0, 7.5, 30.0])
    m = depth_metrics(2 * gt, gt)
    assert m["silog"] == pytest.approx(0.0, abs=1e-6)
    assert m["rmse_log"] == pytest.approx(math.log(2))
    assert m["delta1"] == 0.0 and m["delta3"] == 0.0  # 2 > 1.25**3


def test_silog_standard_convention():
    gt = np.array([1.0, 1.0])
    pred = np.array([math.e, 1.0])  # d = (1, 0)
    assert depth_metrics(pred, gt)["silog"] == pytest.approx(100 * math.sqrt(0.5 - 0.25))


def test_negative_prediction_is_a_miss_not_a_hit():
    # The reference computed max(p/g, g/p) < 1.25 on raw values: -2 vs 2 gives -1 < 1.25, a "hit".
    m = depth_metrics([-2.0, 0.0, math.inf], [2.0, 2.0, 2.0])
    assert m["delta1"] == m["delta2"] == m["delta3"] == 0.0
    assert m["n_valid"] == 0 and m["parse_failure_rate"] == 0.0
    assert all(math.isnan(m[k]) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"))


def test_all_parse_failures():
    m = depth_metrics([None, None], [1.0, 2.0])
    assert m["parse_failure_rate"] == 1.0 and m["delta1"] == 0.0 and math.isnan(m["abs_rel"])


def test_empty_input_gives_nan_metrics_and_zero_counts():
    m = depth_metrics([], [])
    assert m["n"] == 0 and m["n_valid"] == 0
    assert all(math.isnan(m[k]) for k in METRIC_NAMES)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, None])
def test_bad_ground_truth_raises_clear_value_error(bad):
    with pytest.raises(ValueError, match="ground-truth depth must be positive and finite.*index 1"):
        depth_metrics([1.0, 1.0], [1.0, bad])


def test_input_errors_are_value_errors_and_depthlm_errors():
    with pytest.raises(MetricInputError, match="2 predictions but 1 ground-truth"):
        depth_metrics([1.0, 2.0], [1.0])
    with pytest.raises(DepthLMError, match="ground-truth depths must be numbers"):
        depth_metrics([1.0], ["far"])
    with pytest.raises(MetricInputError, match="predictions must be numbers or None"):
        depth_metrics(["3 m"], [1.0])


def test_numpy_inputs_match_lists():
    pred, gt = [0.9, 3.0, None], [1.0, 2.0, 4.0]
    a = depth_metrics(pred, gt)
    b = depth_metrics(np.array([0.9, 3.0, np.nan]), np.array(gt))
    assert a == pytest.approx(b, nan_ok=True)


def test_aggregate_is_unweighted_mean_over_datasets():
    big = depth_metrics([1.0] * 9 + [10.0], [1.0] * 10)  # delta1 0.9, n 10
    small = depth_metrics([None], [1.0])  # delta1 0, n 1, errors NaN
    avg = aggregate({"big": big, "small": small})
    assert avg["delta1"] == pytest.approx((0.9 + 0.0) / 2)  # not the pooled 9 / 11
    assert avg["parse_failure_rate"] == pytest.approx((0.0 + 1.0) / 2)
    assert math.isnan(avg["abs_rel"])  # undefined for one dataset: undefined on average
    assert avg["n"] == 11 and avg["n_valid"] == 10 and avg["datasets"] == 2
    assert aggregate({"big": big})["abs_rel"] == pytest.approx(0.9)
    empty = aggregate({})
    assert empty["n"] == 0 and empty["datasets"] == 0 and math.isnan(empty["delta1"])


def test_metrics_by_group_splits_parallel_lists():
    groups = ["nyu", "kitti", "nyu", "kitti", "nyu"]
    pred = [1.0, 10.0, None, 30.0, 2.0]
    gt = [1.0, 20.0, 3.0, 30.0, 2.0]
    per = metrics_by_group(groups, pred, gt)
    assert list(per) == ["kitti", "nyu"]
    assert per["nyu"] == pytest.approx(depth_metrics([1.0, None, 2.0], [1.0, 3.0, 2.0]), nan_ok=True)
    assert per["kitti"]["delta1"] == 0.5 and per["nyu"]["delta1"] == pytest.approx(2 / 3)
    assert aggregate(per)["delta1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_metrics_by_group_errors_name_the_group():
    with pytest.raises(MetricInputError, match="differ in length"):
        metrics_by_group(["a"], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(MetricInputError, match="group 'b'"):
        metrics_by_group(["a", "b"], [1.0, 2.0], [1.0, -2.0])


def test_real_ibims_answers_parse_and_score(ibims1):
    gt = np.concatenate([r.depths for r in read_records(ibims1 / "ibims1_val.jsonl")])
    assert gt.size == 10_000
    template = get_template("reference")
    pred = [parse_distance(template.format_answer(g)) for g in gt]
    m = depth_metrics(pred, gt)
    # answers carry 2 decimals: every answer is a hit and off by at most 5 mm
    assert m["n_valid"] == 10_000 and m["parse_failure_rate"] == 0.0 and m["delta1"] == 1.0
    assert m["rmse"] <= 0.005 and m["abs_rel"] <= 0.005 / gt.min()
    # the reference's negative-answer fault on real depths: all "hits" there, all misses here
    negative = [parse_distance(f"-{g:.2f} m") for g in gt]
    assert depth_metrics(negative, gt)["delta1"] == 0.0
    assert np.mean(np.maximum(-gt / gt, gt / -gt) < 1.25) == 1.0
