"""`tandem dashboard` (issue 22) in a real headless browser (Debian's chromium, driven by
Selenium through Debian's chromedriver: nothing downloads a browser). The pages load with no
console error and show the running apps, their components, policies and access control;
screenshots are saved under test-artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness import APPS, start_app_sidecar, start_sidecar, wait_until
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tandem.cli.ports import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: guarded}
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
      - appId: dash-caller
        defaultAction: allow
"""

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: calm}
spec:
  policies: {timeouts: {quick: 2s}}
  targets: {apps: {dash-callee: {timeout: quick}}}
"""


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are needed (.ci/run)"
    return chromium, driver


@pytest.fixture(scope="module")
def mesh(tandem_home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dash")
    (folder / "config.yaml").write_text(CONFIG)
    resources = folder / "res"
    resources.mkdir()
    (resources / "resiliency.yaml").write_text(RESILIENCY)
    callee = start_app_sidecar(
        tandem_home, "dash-callee", APPS / "echo_app.py", "--config", str(folder / "config.yaml")
    )
    caller = start_sidecar(tandem_home, "dash-caller", "--resources-path", str(resources))
    workflows = start_sidecar(
        tandem_home,
        "dash-wf",
        command=[sys.executable, str(APPS / "workflow_app.py")],
        env={"WF_LOG": str(folder / "activities.jsonl")},
    )
    wait_until(lambda: "workflow app ready" in workflows.text(), 60, "the workflow app")
    dash_port = free_port()
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli.main", "dashboard", "--port", str(dash_port)],
        env={**os.environ, "TANDEM_HOME": str(tandem_home)},
    )
    url = f"http://127.0.0.1:{dash_port}"
    wait_until(lambda: _up(url), 30, "the dashboard to serve")
    yield url, caller, callee, workflows
    dashboard.terminate()
    dashboard.wait(10)
    for s in (caller, callee, workflows):
        s.stop()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/overview", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_window_size(1400, 900)
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))


def fresh(action):
    """``action`` as a poll: the page re-renders every 2 s, so an element found may be
    gone by the time it is read or clicked; that attempt then counts as not yet."""

    def attempt() -> bool:
        try:
            return bool(action())
        except StaleElementReferenceException:
            return False

    return attempt


def test_the_apps_page_shows_the_mesh(mesh, browser):
    url, caller, callee, _ = mesh
    # Some traffic, so the callee has requests to show.
    wait_until(
        lambda: httpx.get(f"{caller.base}/v1.0/invoke/dash-callee/method/x").status_code == 200,
        30,
        "the caller to reach the callee",
    )
    browser.get(url)

    def apps_listed() -> bool:
        rows = browser.find_elements(By.CSS_SELECTOR, "#apps tbody tr")
        return {"dash-caller", "dash-callee"} <= {r.get_attribute("data-app") for r in rows}

    def row(app: str):
        return browser.find_element(By.CSS_SELECTOR, f'tr[data-app="{app}"]')

    def click(app: str):
        return lambda: row(app).click() or True

    wait_until(fresh(apps_listed), 30, "both apps on the page")
    # A loaded box may show the callee's health a refresh later.
    wait_until(
        fresh(lambda: {"healthy", str(callee.http_port)} <= set(row("dash-callee").text.split())),
        30,
        "the callee healthy, on its port",
    )
    wait_until(fresh(click("dash-callee")), 10, "a click on the callee's row")
    details = browser.find_element(By.ID, "app-details")
    wait_until(fresh(lambda: "statestore" in details.text), 30, "the callee's components")
    assert '"appId": "dash-caller"' in details.text  # who may call it
    wait_until(fresh(click("dash-caller")), 10, "a click on the caller's row")
    wait_until(fresh(lambda: "Resiliency calm" in details.text), 30, "the caller's policies")
    shot(browser, "apps")
    browser.find_element(By.CSS_SELECTOR, 'a[data-tab="workflows"]').click()
    assert browser.find_element(By.ID, "tab-workflows").is_displayed()
    shot(browser, "workflows")
    assert console_errors(browser) == []


def test_a_workflow_is_listed_its_history_shown_and_terminated(mesh, browser):
    url, _, _, workflows = mesh
    started = httpx.post(
        f"{workflows.base}/v1.0-beta1/workflows/dapr/waiter/start?instanceID=dash-1",
        json={},
        timeout=10,
    )
    assert started.status_code == 202, started.text
    browser.get(f"{url}/#workflows")

    def choose_app() -> bool:
        Select(browser.find_element(By.ID, "wf-app")).select_by_value("dash-wf")
        return True

    wait_until(fresh(choose_app), 20, "the workflow app in the list of apps")
    row_css = 'tr[data-instance="dash-1"]'

    def listed() -> bool:
        browser.find_element(By.CSS_SELECTOR, "#wf-filter button").click()
        rows = browser.find_elements(By.CSS_SELECTOR, row_css)
        return bool(rows) and "RUNNING" in rows[0].text

    wait_until(fresh(listed), 20, "the running instance in the list")
    wait_until(
        fresh(lambda: browser.find_element(By.CSS_SELECTOR, row_css).click() or True),
        10,
        "a click on it",
    )
    wait_until(
        fresh(lambda: "executionStarted" in browser.find_element(By.ID, "wf-history").text),
        20,
        "the instance's history",
    )
    shot(browser, "workflow-history")
    browser.find_element(By.CSS_SELECTOR, 'button[data-action="terminate"]').click()

    def terminated() -> bool:
        # Termination completes asynchronously: show the instance again until it says so.
        browser.find_element(By.CSS_SELECTOR, row_css).click()
        return browser.find_element(By.ID, "wf-state").text == "TERMINATED"

    wait_until(fresh(terminated), 20, "the terminated state")
    got = httpx.get(f"{workflows.base}/v1.0-beta1/workflows/dapr/dash-1", timeout=10).json()
    assert got["runtimeStatus"] == "TERMINATED"
    shot(browser, "workflow-terminated")
    assert console_errors(browser) == []


def test_actions_need_the_dashboard_header(mesh):
    url, *_ = mesh
    refused = httpx.post(f"{url}/api/apps/dash-callee/workflows/abc/terminate", timeout=10)
    assert refused.status_code == 403 and refused.json()["errorCode"] == "ERR_FORBIDDEN"
    missing = httpx.get(f"{url}/api/apps/nobody/workflows", timeout=10)
    assert missing.status_code == 404
