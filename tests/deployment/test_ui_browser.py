"""The provider's UI in a real browser: headless Chromium (the system's ``chromium``, driven by
Playwright) against the deployment tier's Airflow, after the example DAGs ran there.

Screenshots go to ``test-output/browser/`` (gitignored).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from airflow_deployment import REPO, AirflowDeployment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "test-output" / "browser"
WAIT_MS = 60_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the system's chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def runs(deployment: AirflowDeployment) -> dict[str, Any]:
    """The examples run through the scheduler: training with tracking, and a DuckLake transform."""
    project = f"ui{uuid.uuid4().hex[:10]}"
    deployment.control.ducklake_model("orders", project=project, duration_s=2, tests=[{"name": "not_null_id"}])
    track = deployment.trigger("modelops_train_and_track")
    transform = deployment.trigger("modelops_transform_and_test", {"project_name": project})
    assert deployment.wait_run("modelops_train_and_track", track) == "success"
    assert deployment.wait_run("modelops_transform_and_test", transform) == "success"
    return {
        "track": track,
        "transform": transform,
        "training_run": deployment.xcom("modelops_train_and_track", track, "train", "run_id"),
        "model_version": deployment.xcom("modelops_train_and_track", track, "report_model_version")["modelVersionRid"],
        "ducklake_run": deployment.xcom("modelops_transform_and_test", transform, "transform_and_test", "run_id"),
    }


@pytest.fixture(scope="module")
def browser(deployment: AirflowDeployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1500, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, deployment: AirflowDeployment) -> Iterator[Any]:
    """A tab of a logged-in user (the UI's own JWT cookie)."""
    browser.clear_cookies()
    browser.add_cookies([{"name": "_token", "value": deployment.token, "url": deployment.base_url}])
    tab = browser.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    tab.close()


def _frame(page: Any, title: str) -> Any:
    return page.frame_locator(f'iframe[title="{title}"]')


def _row(frame: Any, remote_id: str) -> Any:
    return frame.locator("tr.run", has_text=remote_id)


def test_model_runs_page_lists_runs_with_working_links(page, deployment, runs):
    page.goto(f"{deployment.base_url}/plugin/model-runs")
    frame = _frame(page, "Model runs")
    training, ducklake = _row(frame, runs["training_run"]), _row(frame, runs["ducklake_run"])
    ducklake.wait_for()
    page.screenshot(path=SHOTS / "model-runs.png")

    assert "Foundry" in training.locator("td").nth(0).inner_text()
    assert runs["model_version"] in training.inner_text()
    assert "succeeded" in training.locator("td").nth(3).inner_text()
    cells = ducklake.locator("td")
    assert "DuckLake" in cells.nth(0).inner_text() and "SUCCESS" in cells.nth(3).inner_text()
    assert "1 test passed; 1 of 1 models built" in cells.nth(7).inner_text()
    # The Pluto run is listed once, as the finish task closed it.
    pluto = frame.locator("tr.run", has_text="modelops_train_and_track").filter(has_text="Pluto")
    pluto_rows = [r for r in pluto.all() if runs["track"] in r.inner_text()]
    assert len(pluto_rows) == 1 and "COMPLETED" in pluto_rows[0].inner_text()

    # The remote link is the run's page in the service (the sandbox serves one).
    remote = ducklake.locator("td.remote a")
    href = remote.get_attribute("href")
    assert href and runs["ducklake_run"] in href and remote.get_attribute("target") == "_blank"
    assert httpx.get(href, timeout=30).status_code == 200
    # Links into Airflow leave the frame and open the page in the UI itself.
    run_path = f"/dags/modelops_transform_and_test/runs/{quote(runs['transform'], safe='')}"
    assert ducklake.locator("a.dag-run").get_attribute("href") == run_path
    ducklake.locator("a.task").click()
    page.wait_for_url(re.compile(re.escape(f"{run_path}/tasks/transform_and_test") + "$"))
    page.get_by_text("DuckLakeModelRunOperator").first.wait_for()


def test_model_runs_page_filters_and_pages(page, deployment, runs):
    page.goto(f"{deployment.base_url}/plugin/model-runs")
    frame = _frame(page, "Model runs")
    _row(frame, runs["ducklake_run"]).wait_for()

    frame.locator("#filter-service").select_option("DuckLake")
    frame.locator("#apply-filters").click()
    frame.locator("#filter-service option[selected]", has_text="DuckLake").wait_for(state="attached")
    services = frame.locator("tr.run td:first-child").all_inner_texts()
    assert services and all(s.startswith("DuckLake") for s in services)
    assert _row(frame, runs["ducklake_run"]).count() == 1 and _row(frame, runs["training_run"]).count() == 0

    frame.locator("#filter-service").select_option("")
    frame.locator("#filter-dag").select_option("modelops_train_and_track")
    frame.locator("#filter-status").select_option("failed")
    frame.locator("#apply-filters").click()
    frame.locator("#filter-status option[selected]", has_text="failed").wait_for(state="attached")
    assert _row(frame, runs["training_run"]).count() == 0  # it succeeded
    frame.locator("#filter-status").select_option("succeeded")
    frame.locator("#apply-filters").click()
    _row(frame, runs["training_run"]).wait_for()
    dags = frame.locator("tr.run a.dag").all_inner_texts()
    assert dags and set(dags) == {"modelops_train_and_track"}
    page.screenshot(path=SHOTS / "model-runs-filtered.png")

    # Paging: one run per page walks through them with "older" links.
    page.goto(f"{deployment.base_url}/modelops/runs?per_page=1")
    first = page.locator("tr.run").inner_text()
    assert re.search(r"page 1 of \d+", page.locator(".pager").inner_text())
    page.locator('a[rel="next"]').click()
    page.locator(".pager", has_text="page 2 of").wait_for()
    assert page.locator("tr.run").count() == 1 and page.locator("tr.run").inner_text() != first


def _tab(page: Any, deployment: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> Any:
    page.goto(f"{deployment.base_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}/plugin/remote-run")
    return _frame(page, "Remote run")


def test_remote_run_tab_of_a_training_task(page, deployment, runs):
    frame = _tab(page, deployment, "modelops_train_and_track", runs["track"], "train")
    frame.locator("h1", has_text=runs["training_run"]).wait_for()
    page.screenshot(path=SHOTS / "remote-run-training.png")
    facts = frame.locator("#facts").inner_text()
    assert runs["model_version"] in facts and "succeeded" in facts
    timeline = frame.locator("#timeline tbody tr").all_inner_texts()
    assert len(timeline) >= 2 and "SUCCEEDED" in timeline[-1]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", timeline[0])
    assert runs["model_version"] in frame.locator("#outputs").inner_text()
    metrics = frame.locator("#metrics tbody tr").all_inner_texts()  # the version's, from its experiment
    assert [m.split()[0] for m in metrics] == ["accuracy", "loss"], metrics
    assert frame.locator("#links a", has_text="Open in Foundry").get_attribute("href").endswith(runs["training_run"])


def test_remote_run_tab_of_a_ducklake_task_and_of_another_task(page, deployment, runs):
    frame = _tab(page, deployment, "modelops_transform_and_test", runs["transform"], "transform_and_test")
    frame.locator("h1", has_text=runs["ducklake_run"]).wait_for()
    page.screenshot(path=SHOTS / "remote-run-ducklake.png")
    steps = frame.locator("#steps tbody tr").all_inner_texts()
    assert len(steps) == 1 and steps[0].startswith("orders") and "SUCCESS" in steps[0]
    tests = frame.locator("#tests tbody tr").all_inner_texts()
    assert len(tests) == 1 and "PASS" in tests[0]

    frame = _tab(page, deployment, "modelops_transform_and_test", runs["transform"], "report")
    note = frame.locator("#no-remote-run")
    note.wait_for()
    assert "did not start or watch a remote run" in note.inner_text()


def test_task_logs_end_with_a_summary_line_and_carry_no_masking_warning(deployment, runs):
    """The task logs of the examples in a real Airflow: each provider task's last word on its run is
    one summary line, and the sandbox's connections log no masking warning (Airflow warns in every
    task log for each connection extra string shorter than 5 characters)."""
    track, transform = "modelops_train_and_track", "modelops_transform_and_test"
    summaries = {
        (track, runs["track"], "train"): f"Foundry training run {re.escape(runs['training_run'])}",
        (track, runs["track"], "verify_deployment"): r"Foundry deployment check \S+",
        (track, runs["track"], "pluto_finish"): r"Pluto tracking run \S+",
        (transform, runs["transform"], "transform_and_test"): f"DuckLake model run {re.escape(runs['ducklake_run'])}",
    }
    for (dag_id, run_id, task_id), run in summaries.items():
        text = deployment.log(dag_id, run_id, task_id, 1)
        # "<service> <kind> <id>: <outcome> ... after <duration>; ...; <link>", once.
        lines = re.findall(f"^{run}: succeeded.* after .*http.*$", text, re.MULTILINE)
        assert len(lines) == 1, (task_id, text[-3000:])
        assert "Skipping masking" not in text, (task_id, text[-3000:])


def test_an_unauthenticated_request_is_refused(browser, deployment):
    for path in ("/modelops/runs", "/modelops/task?dag_id=modelops_train_and_track&run_id=x&task_id=train"):
        assert httpx.get(f"{deployment.base_url}{path}", timeout=30).status_code == 401
    browser.clear_cookies()
    tab = browser.new_page()
    try:
        response = tab.goto(f"{deployment.base_url}/modelops/runs")
        assert response is not None and response.status == 401
        assert "Model runs" not in tab.content()
    finally:
        tab.close()


@pytest.mark.parametrize(
    "label, enums",
    [
        ("Palantir Foundry", {"Scheme": "https"}),
        ("DuckLake data platform", {"Scheme": "https", "Auth kind": "bearer (JWT)", "Cancel route": "detect"}),
        ("Pluto (Trainy)", {}),
    ],
)
def test_connection_forms_show_no_null(page, deployment, label, enums):
    page.goto(f"{deployment.base_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    kind = dialog.get_by_role("combobox").first
    kind.click()
    kind.fill(label.split()[0])
    page.get_by_role("option", name=label).click()
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    dialog.get_by_text("Connect timeout (s)").wait_for()
    slug = label.split()[0].lower()
    page.screenshot(path=SHOTS / f"connection-form-{slug}.png", full_page=True)
    assert not re.search(r"\bnull\b", dialog.inner_text(), re.IGNORECASE)
    text = dialog.inner_text()
    for field, shown in enums.items():  # each enum shows its default, right under its label
        assert re.search(re.escape(field) + r"\s*\*?\s*" + re.escape(shown), text), (field, text)
    if "Scheme" in enums:  # the dropdown offers the values and nothing else
        dialog.get_by_role("combobox").nth(1).click()  # the first extra field, after the type
        options = page.get_by_role("option").all_inner_texts()
        assert options == ["https", "http (only for a local sandbox)"], options
        # Choosing the default closes the menu; Escape could close the whole dialog instead.
        page.get_by_role("option", name="https").click()
    # Numbers show their defaults (read in one go: the form may re-render between element reads).
    numbers = dialog.get_by_role("spinbutton").evaluate_all("els => els.map(e => e.value)")
    assert "10,30,6" in ",".join(numbers), numbers
