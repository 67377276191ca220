"""Survival: Kaplan–Meier, log-rank and RMST against independent hand computations and a published
example; k-means clusters recover the known phenotype; the Cox model and its checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from virtualbiopsy.errors import InputError
from virtualbiopsy.prediction.cohort import SIGNATURE, generate_cohort
from virtualbiopsy.prediction.cox import CoxRegression
from virtualbiopsy.prediction.data import DataWarning, prepare_dataset
from virtualbiopsy.prediction.models import TrainParameters, train
from virtualbiopsy.prediction.survival import (
    analyse_groups,
    cluster_patients,
    cluster_survival,
    curve_table,
    kaplan_meier,
    logrank,
    risk_groups,
)

# A small data set with tied event times, a censoring tied with an event, and three groups.
TIME = np.array([2, 3, 3, 5, 6, 6, 8, 9, 10, 12, 1, 2, 4, 4, 5, 7, 7, 9, 11, 3, 4, 6, 8, 8, 10, 13, 14], float)
EVENT = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 1])
GROUP = np.array(["a"] * 10 + ["b"] * 9 + ["c"] * 8, dtype=object)


def product_limit(time, event):
    """Kaplan–Meier by hand: S(t) = prod over event times t_i <= t of (1 - d_i / n_i)."""
    survival, curve = 1.0, {}
    for t in np.unique(time[event == 1]):
        at_risk = np.sum(time >= t)
        deaths = np.sum((time == t) & (event == 1))
        survival *= 1.0 - deaths / at_risk
        curve[float(t)] = survival
    return curve


def logrank_by_hand(time, event, group):
    """k-group log-rank: (O - E)' V^-1 (O - E) over k - 1 groups, hypergeometric variance per event time."""
    labels = sorted(set(group))
    k = len(labels)
    observed, expected, variance = np.zeros(k), np.zeros(k), np.zeros((k, k))
    for t in np.unique(time[event == 1]):
        at_risk = time >= t
        n = at_risk.sum()
        d = np.sum((time == t) & (event == 1))
        n_g = np.array([np.sum(at_risk & (group == g)) for g in labels], float)
        d_g = np.array([np.sum((time == t) & (event == 1) & (group == g)) for g in labels], float)
        observed += d_g
        expected += d * n_g / n
        if n > 1:
            variance += d * (n - d) / (n - 1) * (np.diag(n_g / n) - np.outer(n_g, n_g) / n**2)
    difference = (observed - expected)[:-1]
    statistic = float(difference @ np.linalg.solve(variance[:-1, :-1], difference))
    return statistic, float(chi2.sf(statistic, k - 1))


def test_kaplan_meier_matches_the_product_limit_by_hand():
    curves, tau = kaplan_meier(TIME, EVENT, GROUP)
    for curve in curves:
        rows = np.asarray(GROUP) == curve.group
        expected = product_limit(TIME[rows], EVENT[rows])
        for t, s in expected.items():
            index = np.searchsorted(curve.timeline, t)
            assert curve.timeline[index] == t and curve.survival[index] == pytest.approx(s, abs=1e-12)
        # median: the first time the curve is at or below one half
        below = [t for t, s in expected.items() if s <= 0.5]
        assert curve.median == (below[0] if below else np.inf)
        # restricted mean: area under the step function up to tau
        steps = [(0.0, 1.0)] + sorted(expected.items())
        area = sum(s * (min(nxt, tau) - min(t, tau)) for (t, s), (nxt, _) in zip(steps, steps[1:] + [(tau, 0.0)]))
        assert curve.rmst == pytest.approx(area, abs=1e-9)
        assert curve.n == rows.sum() and curve.events == EVENT[rows].sum()
    assert tau == min(TIME[np.asarray(GROUP) == g].max() for g in "abc")


@pytest.mark.parametrize("groups", [("a", "b"), ("a", "b", "c")])
def test_logrank_matches_the_hand_computation(groups):
    rows = np.isin(GROUP, groups)
    statistic, p = logrank_by_hand(TIME[rows], EVENT[rows], GROUP[rows])
    result = logrank(TIME[rows], EVENT[rows], GROUP[rows]).iloc[0]
    assert result["statistic"] == pytest.approx(statistic, rel=1e-9)
    assert result["p"] == pytest.approx(p, rel=1e-9) and result["df"] == len(groups) - 1


def test_published_example_freireich_leukaemia():
    """6-MP vs placebo remission times (Freireich 1963): log-rank chi-square 16.79, medians 23 and 8 weeks
    (as tabulated in Kleinbaum & Klein, Survival Analysis)."""
    mp = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
    mp_event = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    placebo = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
    time = np.array(mp + placebo, float)
    event = np.array(mp_event + [1] * 21)
    group = np.array(["6-MP"] * 21 + ["placebo"] * 21, dtype=object)
    analysis = analyse_groups(time, event, group)
    assert analysis.logrank["statistic"].iloc[0] == pytest.approx(16.79, abs=0.005)
    medians = dict(zip(analysis.summary["group"], analysis.summary["median_survival"]))
    assert medians == {"6-MP": 23.0, "placebo": 8.0}
    survival = product_limit(time[:21], event[:21])
    assert survival[6.0] == pytest.approx(18 / 21) and survival[7.0] == pytest.approx(18 / 21 * 16 / 17)


def test_curve_table_is_a_staircase():
    analysis = analyse_groups(TIME, EVENT, GROUP)
    table = curve_table(analysis)
    a = [(t, s) for g, t, s in zip(table["group"], table["time"], table["survival"]) if g == "a"]
    assert a[0] == (0.0, 1.0) and all(t1 <= t2 for (t1, _), (t2, _) in zip(a, a[1:]))
    assert all(s1 >= s2 for (_, s1), (_, s2) in zip(a, a[1:]))


def test_kmeans_clusters_recover_the_phenotype_and_separate_survival(cohort_200):
    clustering, analysis = cluster_survival(cohort_200.table, cohort_200.table["os_days"], cohort_200.table["os_event"],
                                            k=2, features=SIGNATURE)
    aggressive = cohort_200.truth["aggressive"]
    second = clustering.labels == "cluster 2"
    agreement = max(np.mean(second == aggressive), np.mean(second != aggressive))
    assert agreement > 0.8
    assert analysis.logrank["p"].iloc[0] < 0.01
    summary = analysis.summary.set_index("group")
    worse = "cluster 2" if np.mean(aggressive[second]) > 0.5 else "cluster 1"
    better = "cluster 1" if worse == "cluster 2" else "cluster 2"
    assert summary.loc[worse, "median_survival"] < summary.loc[better, "median_survival"]
    assert summary.loc[worse, "rmst"] < summary.loc[better, "rmst"]
    # the same data give the same clusters; k is the user's
    again = cluster_patients(cohort_200.table, 2, features=SIGNATURE)
    assert (again.labels == clustering.labels).all()
    three = cluster_patients(cohort_200.table, 3, features=SIGNATURE)
    assert sorted(set(three.labels)) == ["cluster 1", "cluster 2", "cluster 3"]
    sizes = [np.sum(three.labels == f"cluster {i}") for i in (1, 2, 3)]
    assert sizes == sorted(sizes, reverse=True)


def test_clustering_and_survival_inputs_are_checked():
    cohort = generate_cohort(n_patients=40, seed=1)
    with pytest.raises(InputError, match="k = 1"):
        cluster_patients(cohort.table, 1, features=SIGNATURE)
    with pytest.raises(InputError, match="signature feature.*tumour_volume"):
        cluster_patients(cohort.table, 2, features=["adc_mean", "tumour_volume"])
    with pytest.raises(InputError, match="constant or empty"):
        cluster_patients(cohort.table.assign(x=1.0), 2, features=["x"])
    with pytest.raises(InputError, match="at least two groups"):
        logrank(TIME, EVENT, ["a"] * len(TIME))
    with pytest.raises(InputError, match="1 \\(event\\) or 0"):
        kaplan_meier(TIME, EVENT * 2, GROUP)
    assert list(risk_groups([0.1, -0.3, 0.5], 0.2)) == ["low risk", "low risk", "high risk"]


def test_cox_regression_predicts_lifelines_log_partial_hazard():
    cohort = generate_cohort(n_patients=120, seed=2)
    X = cohort.table[list(SIGNATURE)].to_numpy(float)
    y = np.column_stack([cohort.table["os_days"], cohort.table["os_event"]])
    model = CoxRegression(penalizer=0.1).fit(X, y)
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    reference = model.model_.predict_log_partial_hazard(frame).to_numpy()
    np.testing.assert_allclose(model.predict(X), reference, atol=1e-9)


@pytest.mark.slow
def test_cox_model_cindex_and_risk_groups(cohort_200):
    dataset = prepare_dataset(cohort_200.table, time="os_days", event="os_event", features=[*SIGNATURE, "noise_1"])
    model = train(dataset, TrainParameters(model="cox", n_bootstrap=200,
                                           grid={"select__k": [3], "model__penalizer": [0.1]}))
    c_index = model.metrics.set_index("metric").loc["c_index"]
    assert c_index.ci_low > 0.5, c_index
    assert model.risk_cut is not None and set(model.cv_predictions["risk_group"]) == {"high risk", "low risk"}
    predictions = model.predict(dataset.X, dataset.case_ids)
    assert np.mean(predictions["risk_group"] == "high risk") == pytest.approx(0.5, abs=0.01)  # median cut
    analysis = analyse_groups(dataset.time, dataset.event, model.cv_predictions["risk_group"])
    assert analysis.logrank["p"].iloc[0] < 0.05  # out-of-fold risk groups separate survival


def test_cox_refuses_too_few_events_and_warns_on_few_per_feature():
    cohort = generate_cohort(n_patients=60, seed=3)
    table = cohort.table.copy()
    table["os_event"] = 0
    table.loc[table.index[:8], "os_event"] = 1
    dataset = prepare_dataset(table, time="os_days", event="os_event", features=cohort.features)
    with pytest.raises(InputError, match="Too few events for a Cox model: 8"):
        train(dataset, TrainParameters(model="cox"))
    table.loc[table.index[:25], "os_event"] = 1
    dataset = prepare_dataset(table, time="os_days", event="os_event", features=cohort.features)
    with pytest.warns(DataWarning, match="events per feature"):
        train(dataset, TrainParameters(model="cox", n_bootstrap=20, outer_folds=3, inner_folds=2,
                                       grid={"select__k": [2], "model__penalizer": [1.0]}))
