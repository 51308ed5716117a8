"""The industry sub-brain's pages in a real browser against a real ``ibx serve``.

The lithium-battery sub-brain searches the catalog for a field, ticks two
plants' datasets and opens the request form with them; the preview says the
request would be refused — two plants are below the minimum cohort of 3 — and
why. It switches to every plant of its industry: the preview now allows it,
names the four consents that cover it and the plant left out (its consent
revoked in the demo's step 8). It submits, waits on the job's page (the page
reloads itself while the job is live; bounded) until the plants' agents have
computed it, and reads the result: the quartiles drawn as a box in an inline
SVG, the numbers, and the result's hash checked against the ledger.

The request is an MPC benchmark of ``cells_million``, a field no other test of
the shared world computes on (the release guard's differencing check compares
results on the same field).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.console.conftest import ConsolePages
    from tests.demo_world import LiveWorld

FIELD = "cells_million"
INDUSTRY = "lithium-battery"
CONSENTING = ("lanjiang-cells", "qingchuan-lineng", "xinghe-storage", "yunling-power")
REVOKED = "shimen-battery"
JOB_WAIT_MS = 120_000


def _preview(page: Page) -> None:
    with page.expect_navigation():
        page.click("#preview-button")


def test_the_subbrain_previews_submits_and_reads_its_result(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    from playwright.sync_api import expect

    subbrain = console_world.actors["sb-lithium-battery"]
    base = f"{console_world.url}/console/subbrain"
    page = console_page(subbrain, lang="en")

    # the catalog: every plant's monthly figures hold the field; the recipes do not
    page.click("nav.duty-nav a[href='/console/subbrain/catalog']")
    page.fill("#field", FIELD)
    page.fill("#industry", INDUSTRY)
    with page.expect_navigation():
        page.click("#search")
    rows = page.locator("tr[data-dataset]")
    found = sorted(r.get_attribute("data-dataset") or "" for r in rows.all())
    assert found == sorted(f"{p}.monthly" for p in (*CONSENTING, REVOKED))
    for chosen in CONSENTING[:2]:
        page.check(f"tr[data-dataset='{chosen}.monthly'] input[name=dataset]")
    with page.expect_navigation():
        page.click("#request-chosen")

    # the form holds the two datasets and the field
    assert page.is_checked("#by-datasets")
    assert page.input_value("#datasets").split() == [f"{p}.monthly" for p in CONSENTING[:2]]
    assert page.input_value("#fields") == FIELD
    page.select_option("#operation", "percentile_rank")
    page.click("details.sb-more summary")
    page.fill("#bound", "1000")
    page.fill("#deadline_seconds", "90")
    assert "--dataset lanjiang-cells.monthly" in page.inner_text("#cli")

    # two plants: refused for the cohort, and the page says why
    _preview(page)
    preview = page.locator("#preview")
    expect(preview).to_have_attribute("data-allowed", "false")
    expect(preview).to_have_attribute("data-reason", "cohort")
    assert "below the minimum of 3" in page.inner_text("#why")
    expect(page.locator("#cohort")).to_have_attribute("data-cohort", "0")
    expect(page.locator("#cohort")).to_have_attribute("data-minimum", "3")
    expect(page.locator("#left-out tr[data-why=min_cohort]")).to_have_count(2)
    assert page.input_value("#operation") == "percentile_rank", "the form is kept as it was"
    assert page.input_value("#bound") == "1000"

    # every plant of the industry: allowed, four consents, the revoked plant left out
    page.check("#by-industry")
    assert page.input_value("#industry") == INDUSTRY
    _preview(page)
    expect(preview).to_have_attribute("data-allowed", "true")
    expect(page.locator("#cohort")).to_have_attribute("data-cohort", "4")
    covered = sorted(
        r.get_attribute("data-owner") or "" for r in page.locator("#covered tr[data-owner]").all()
    )
    assert covered == sorted(CONSENTING)
    expect(page.locator(f"#left-out tr[data-owner={REVOKED}]")).to_have_attribute(
        "data-why", "revoked"
    )
    assert "allowed by 'p, subbrain, lithium-battery, dataset, compute, allow'" in page.inner_text(
        ".sb-policy"
    )
    assert f"--industry {INDUSTRY}" in page.inner_text("#cli")

    # submit: the job's page, which reloads itself until the agents have computed it (the
    # agents started with the world; a job waits for them, up to its deadline)
    with page.expect_navigation(
        url=re.compile(rf"{re.escape(base)}/jobs/job_[0-9a-f]{{32}}\?new=1")
    ):
        page.click("#submit-button")
    job_id = page.url.rsplit("/", 1)[1].split("?")[0]
    expect(page.locator("#submitted")).to_be_visible()
    job = page.locator("#job")
    expect(job).to_have_attribute(
        "data-state", re.compile("^(released|refused|failed|cancelled)$"), timeout=JOB_WAIT_MS
    )
    assert job.get_attribute("data-state") == "released", page.inner_text("#job")

    # the result: quartiles as a box, the numbers, the hash as on the ledger
    with console_world.url.client(subbrain.token) as api:
        result = api.get(f"/v1/results/{job_id}").json()
    figure = page.locator("#result figure[data-chart=box]")
    expect(figure).to_be_visible()
    assert figure.locator("svg rect.sb-box").count() == 1
    assert figure.locator("svg line.sb-median").count() == 1
    median = f"{result['values']['median'][0]:.6g}"
    assert median in page.inner_text("#values")
    assert page.inner_text("#result-hash").strip() == result["result_sha256"]
    expect(page.locator("#hash-check")).to_have_attribute("data-ok", "true")
    assert f"#{result['result_index']}" in page.inner_text("#hash-check")

    # a submission forged without the form's CSRF token is refused, and no job is made
    with console_world.url.client(subbrain.token) as api:
        before = len(api.get("/v1/jobs", params={"limit": 100}).json()["items"])
    forged = page.evaluate(
        """() => fetch('/console/subbrain/request', {method: 'POST',
             headers: {'content-type': 'application/x-www-form-urlencoded'},
             body: 'by=industry&industry=lithium-battery&purpose=benchmarking'
                   + '&operation=percentile_rank&fields=cells_million'}).then(r => r.status)"""
    )
    assert forged == 403
    with console_world.url.client(subbrain.token) as api:
        assert len(api.get("/v1/jobs", params={"limit": 100}).json()["items"]) == before
    # a job that is not its own (or none) is a 404 page, as the API answers
    missing = page.goto(f"{base}/jobs/job_{'0' * 32}")
    assert missing is not None and missing.status == 404

    # the jobs list shows it released; in Chinese by default
    zh = console_page(subbrain)
    zh.goto(f"{base}/jobs")
    row = zh.locator(f"tr[data-job={job_id}]")
    expect(row.locator("[data-state]")).to_have_text("已发布")


# --- the pieces, without a browser ------------------------------------------------------------


def test_the_forms_choices_are_the_pipelines() -> None:
    from consent import Operation, Purpose
    from exchange.console.subbrain_form import OPERATIONS, PURPOSES

    assert sorted(PURPOSES) == sorted(p.value for p in Purpose)
    assert sorted(OPERATIONS) == sorted(o.value for o in Operation)


def test_the_form_makes_a_request_the_pipeline_accepts() -> None:
    from exchange.console.subbrain_form import RequestForm
    from exchange.pipeline.request import ComputeRequest

    form = RequestForm.from_form(
        {
            "by": "datasets",
            "datasets": "a.x, b.x\nc.x",
            "purpose": "benchmarking",
            "operation": "histogram",
            "fields": "kwh_per_kwh",
            "bins": "0, 10，50",
            "epsilon": "0.5",
            "bound": "100",
            "deadline_seconds": "60",
            "csrf": "not a field of the request",
        }
    )
    body = form.body()
    request = ComputeRequest.from_dict(body)
    assert request.datasets == ("a.x", "b.x", "c.x")
    assert request.parameters.bins == (0.0, 10.0, 50.0)
    assert request.parameters.epsilon == 0.5
    assert form.cli() == (
        "ibx request submit --purpose benchmarking --operation histogram --field kwh_per_kwh "
        "--dataset a.x --dataset b.x --dataset c.x --bound 100 --bins 0,10,50 --epsilon 0.5 "
        "--deadline 60"
    )


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"by": "datasets", "datasets": " "}, "subbrain.form_no_datasets"),
        ({"by": "industry", "industry": ""}, "subbrain.form_no_industry"),
        ({"industry": "x", "bound": "lots"}, "subbrain.form_not_a_number"),
        ({"industry": "x", "epsilon": "nan"}, "subbrain.form_not_a_number"),
        ({"industry": "x", "length": "1.5"}, "subbrain.form_not_an_integer"),
    ],
    ids=["no-datasets", "no-industry", "bound", "epsilon-nan", "length"],
)
def test_a_form_that_makes_no_request_says_which_field(fields: dict[str, str], key: str) -> None:
    from exchange.console.subbrain_form import FormError, RequestForm

    with pytest.raises(FormError) as error:
        RequestForm.from_form(fields).body()
    assert error.value.key == key


def test_a_shell_cannot_be_smuggled_into_the_cli_line() -> None:
    from exchange.console.subbrain_form import RequestForm

    line = RequestForm(industry="x; rm -rf /", fields="a$(id)").cli()
    assert "'x; rm -rf /'" in line
    assert "'a$(id)'" in line


CHARTS = {
    "quartiles": ("quantiles", {"median": [5.0], "quartiles": [3.0, 5.0, 9.0]}, 0, "box"),
    "ranks": ("percentile_rank", {"median": [5.0], "quartiles": [3.0, 5.0, 9.0]}, 0, "box"),
    "min-max": ("min_max", {"min": [1.0], "max": [4.0]}, 0, "range"),
    "variance": ("variance", {"means": [2.0, 3.0], "variances": [1.0, 4.0]}, 0, "interval"),
    "histogram": ("histogram", {"counts": [3, None, 5]}, 0, "bars"),
    "regression": ("regression", {"coefficients": [1.5, -0.2]}, 0, "bars"),
    "slots": ("mean", {"mean": [1.0, 2.0, 3.0]}, 0, "bars"),
    "psi": ("set_intersection_size", {"size": [7]}, 4, "sets"),
    "one-mean": ("mean", {"mean": [34.7]}, 0, None),
    "dominance": ("dominance_check", {"sum": [10.0]}, 0, None),
    "suppressed-quartiles": ("quantiles", {"median": [None], "quartiles": [None] * 3}, 0, None),
}


@pytest.mark.parametrize(("operation", "values", "cohort", "kind"), CHARTS.values(), ids=CHARTS)
def test_a_chart_where_it_reads_better_than_numbers(
    operation: str, values: dict[str, list[float | None]], cohort: int, kind: str | None
) -> None:
    from exchange.console.subbrain_charts import chart_for

    chart = chart_for(operation, values, cohort=cohort, bins=(0, 1, 2, 3))
    assert (chart.kind if chart else None) == kind
    if chart is not None:
        for shape in chart.shapes:  # inside the drawing
            assert 0 <= shape.x <= chart.width and 0 <= shape.y <= chart.height, shape


def test_the_box_spans_the_quartiles_with_the_median_inside() -> None:
    from exchange.console.subbrain_charts import chart_for

    chart = chart_for("quantiles", {"quartiles": [30.0, 34.1, 39.6]})
    assert chart is not None
    [box] = [s for s in chart.shapes if s.cls == "sb-box"]
    [median] = [s for s in chart.shapes if s.cls == "sb-median"]
    assert box.x < median.x < box.x + box.w
    assert {"Q1 30", "34.1", "Q3 39.6"} <= {s.text for s in chart.shapes}


def test_a_suppressed_bin_is_marked_not_drawn_as_zero() -> None:
    from exchange.console.subbrain_charts import chart_for

    chart = chart_for("histogram", {"counts": [3, None, 5]}, bins=(0, 10, 20, 30))
    assert chart is not None
    assert len([s for s in chart.shapes if s.cls == "sb-suppressed"]) == 1
    assert len([s for s in chart.shapes if s.cls.startswith("sb-bar")]) == 2
    assert {"0–10", "10–20", "20–30"} <= {s.text for s in chart.shapes}


def test_the_psi_sets_are_one_circle_an_enterprise() -> None:
    from exchange.console.subbrain_charts import chart_for

    chart = chart_for("set_intersection_size", {"size": [2]}, cohort=4)
    assert chart is not None
    assert len([s for s in chart.shapes if s.cls.startswith("sb-set ")]) == 4
    assert [s.text for s in chart.shapes if s.tag == "text"] == ["2"]


@given(
    st.floats(-1e9, 1e9, allow_nan=False),
    st.floats(0, 1e9, allow_nan=False),
)
def test_ticks_cover_the_values_in_order(low: float, span: float) -> None:
    from exchange.console.subbrain_charts import nice_ticks

    high = low + span
    ticks = nice_ticks(low, high)
    assert ticks == sorted(ticks)
    assert ticks[0] <= low + 1e-6 * max(1.0, abs(low))
    assert ticks[-1] >= high - 1e-6 * max(1.0, abs(high))
    assert 2 <= len(ticks) <= 12


def test_a_private_mean_is_drawn_with_its_noise_range() -> None:
    from exchange.console.subbrain_charts import chart_for, laplace_95

    half = laplace_95(2 * 100 / 4, 1.0)
    chart = chart_for("mean", {"mean": [34.7]}, cohort=4, noise=half)
    assert chart is not None
    assert chart.kind == "interval"
    assert chart.caption == "subbrain.chart_noise"
    assert f"34.7 ± {half:.4g}" in {s.text for s in chart.shapes}


def test_the_noise_range_holds_95_percent_of_the_release_steps_noise() -> None:
    """The range the chart draws, against the very measurement the release step samples."""
    from exchange.console.subbrain_charts import laplace_95
    from mpc import DpMechanism, DpPolicy
    from mpc._dp_release import _measurement

    sensitivity, epsilon, draws = 50.0, 0.5, 4000
    measurement = _measurement(DpPolicy(DpMechanism.LAPLACE, epsilon), sensitivity, draws)
    noise = measurement([0.0] * draws)
    inside = sum(abs(x) <= laplace_95(sensitivity, epsilon) for x in noise) / draws
    assert 0.93 <= inside <= 0.97
