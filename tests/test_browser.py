"""The admin in a real browser: headless Chromium against a live server and a real runjobs.

Needs Chromium and its driver (``apt-get install -y chromium chromium-driver``) and
selenium (in the ``test`` extra). Saves screenshots in ``artifacts/screenshots/``; copies
them to ``docs/_static/screenshots/`` where they are missing there, or always with
``ONCEJOB_UPDATE_SCREENSHOTS=1``, so that a test run does not rewrite committed images.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from django.utils import timezone

from django_oncejob.jobs import triggers
from django_oncejob.jobs.registry import parse_jobs
from django_oncejob.models import Instance, JobState, Run, ScheduleVersion
from tests.processes import ROOT, Fleet, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.processes]

# pytest-django's live server listens on this address: the loopback interface only.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

ARTIFACTS = ROOT / "artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "_static" / "screenshots"
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1360,1000",
)
INSTALL = (
    "The browser tests need Chromium and chromedriver: install them with "
    "`apt-get install -y chromium chromium-driver` (Debian, Ubuntu), or put both on PATH "
    "(CHROMIUM and CHROMEDRIVER name them elsewhere). Deselect these tests with -m 'not browser'."
)

JOBS: dict[str, Any] = {
    "nightly-report": {
        "func": "tests.jobs.record",
        "cron": "30 2 * * *",
        "timezone": "Europe/Paris",
        "description": "Mails yesterday's sales to the managers.",
    },
    "sync-inventory": {
        "func": "tests.jobs.record",
        "interval": {"minutes": 15},
        "description": "Pulls stock levels from the warehouse.",
    },
    "export-invoices": {
        "func": "tests.jobs.fail",
        "cron": "0 * * * *",
        "description": "Sends new invoices to the accounting system.",
    },
    "send-reminders": {"func": "tests.jobs.record", "cron": "*/30 8-18 * * mon-fri"},
    "rebuild-search": {
        "func": "tests.jobs.sleep_then_record",
        "cron": "15 4 * * sun",
        "args": [6],
        "description": "Rebuilds the product search index.",
    },
    "import-archive": {
        "func": "tests.jobs.record",
        "at": "2025-01-06T03:00:00+00:00",
        "enabled": False,
        "description": "One-off import of the 2024 archive.",
    },
}
TRACEBACK = "\n".join(
    [
        "Traceback (most recent call last):",
        '  File "/srv/shop/.venv/lib/python3.12/site-packages/django_oncejob/running/'
        'pipeline.py", line 333, in _call',
        "    value = job.resolve()(*job.args, **job.kwargs)",
        "            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        '  File "/srv/shop/billing/jobs.py", line 41, in export_invoices',
        "    response.raise_for_status()",
        '  File "/srv/shop/.venv/lib/python3.12/site-packages/httpx/_models.py", line 829, '
        "in raise_for_status",
        "    raise HTTPStatusError(message, request=request, response=self)",
        "httpx.HTTPStatusError: Server error '503 Service Unavailable' for url "
        "'https://accounting.example.com/api/invoices'",
    ]
)


def find_program(name: str, *candidates: str) -> str:
    for candidate in (os.environ.get(name.upper()), *candidates):
        path = shutil.which(candidate) if candidate else None
        if path:
            return path
    pytest.fail(INSTALL)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = find_program("chromium", "chromium", "chromium-browser")
    chromedriver = find_program("chromedriver", "chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail("The browser tests need selenium: pip install -e '.[test]'.")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=chromedriver)
    )
    driver.set_page_load_timeout(30)
    # A click that submits a form can return before the next page is there: look for
    # elements until they appear (the first find after a click was flaky on Django 4.2).
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


def seed_history(now: datetime) -> None:
    """A day of history on the jobs' real fire times, as a screenshot should show it."""
    jobs, errors = parse_jobs(JOBS)
    assert errors == []
    rows = []
    for job in jobs.values():
        if not job.enabled:
            continue
        start = now - timedelta(hours=26)
        for n, when in enumerate(triggers.fire_times(job.trigger, start, 200)):
            if when > now - timedelta(minutes=3):
                break
            when = when.astimezone(UTC)
            status, error, traceback = "succeeded", "", ""
            if job.id == "export-invoices" and n % 9 == 4:
                status, error, traceback = (
                    "failed",
                    TRACEBACK.strip().splitlines()[-1],
                    TRACEBACK,
                )
            elif job.id == "export-invoices" and now - timedelta(hours=4) < when < now - timedelta(
                hours=2
            ):
                status, error = (
                    "missed",
                    "Missed: no instance ran it within its misfire grace time.",
                )
            elif job.id == "send-reminders" and when > now - timedelta(hours=3):
                status, error = "paused", "Skipped: the job was paused."
            started = None if status in ("missed", "paused") else when + timedelta(milliseconds=180)
            took = timedelta(seconds=1.3 + (n % 5) * 0.7)
            rows.append(
                Run(
                    job=job.id,
                    scheduled_for=when,
                    owner=("worker-1", "worker-2")[n % 2],
                    status=status,
                    claimed_at=when + timedelta(milliseconds=4),
                    started_at=started,
                    finished_at=(started + took) if started else when + timedelta(minutes=1),
                    error=error,
                    traceback=traceback,
                )
            )
    Run.objects.bulk_create(rows)
    JobState.objects.create(
        job="send-reminders", paused=True, changed_at=now - timedelta(hours=3), changed_by="olga"
    )
    Instance.objects.create(
        owner="worker-2",
        host="worker-2",
        pid=2817,
        version="0.1.0",
        started_at=now - timedelta(days=2),
        heartbeat_at=now - timedelta(minutes=40),
        stopped_at=now - timedelta(minutes=40),
    )


def screenshot(driver: Any, name: str, *, full_page: bool = True) -> Path:
    """A screenshot, of the whole page or the window, in the artifacts and where due the docs."""
    capture: dict[str, Any] = {"format": "png"}
    if full_page:
        # Down to the end of the content, not of the window: no empty space below.
        width = driver.execute_script("return document.documentElement.scrollWidth")
        height = driver.execute_script(
            "const leaves = [...document.querySelectorAll('#content-main *')]"
            "  .filter((e) => e.children.length === 0);"
            "const bottom = Math.max(...leaves.map((e) => e.getBoundingClientRect().bottom));"
            "return Math.ceil(bottom + window.scrollY) + 32;"
        )
        capture.update(
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
    png = base64.b64decode(driver.execute_cdp_cmd("Page.captureScreenshot", capture)["data"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(png)
    docs = DOCS_SCREENSHOTS / path.name
    if os.environ.get("ONCEJOB_UPDATE_SCREENSHOTS") == "1" or not docs.exists():
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs)
    return path


def text_of(driver: Any, selector: str) -> str:
    """The text of the first element ``selector`` finds, ``""`` while the page changes.

    A node of the page being left can be missing, stale, or (Chromium's inspector says)
    no longer of the document: each a WebDriverException.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, selector).text)
    except WebDriverException:
        return ""


def poll(driver: Any, url: str, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Reload ``url`` until ``condition`` holds, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        driver.get(url)
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}.")
        time.sleep(0.5)


def log_in(browser: Any, base: str) -> None:
    """Log in as alice, with the admin's navigation sidebar folded away for the screenshots."""
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/admin/login/")
    browser.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("secret-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(lambda: "Log out" in browser.page_source, 10, "the login")


def test_run_now_from_the_jobs_overview_in_a_browser(
    browser: Any,
    live_server: Any,
    fleet: Callable[..., Fleet],
    settings: Any,
    django_user_model: Any,
) -> None:
    from selenium.webdriver.common.by import By

    settings.ONCEJOB = {"JOBS": JOBS}
    settings.STATIC_ROOT = str(ADMIN_STATIC)  # the live server serves the admin's CSS
    django_user_model.objects.create_superuser("alice", "alice@example.com", "secret-pw")
    seeded_at = timezone.now()
    seed_history(seeded_at)
    instances = fleet(JOBS, {"CONTROL_INTERVAL": 1, "OWNER": "worker-1"})
    instances.start()
    wait_for(lambda: Instance.objects.filter(owner="worker-1").exists(), 10, "a heartbeat")
    base = live_server.url

    log_in(browser, base)

    overview = f"{base}/admin/django_oncejob/jobstate/"
    browser.get(overview)
    # Django 4.2's header is an h1 too ("Django administration"); the page title is in #content.
    assert browser.find_element(By.CSS_SELECTOR, "#content h1").text == "Jobs"
    row = browser.find_element(By.ID, "job-import-archive")
    assert "disabled" in row.text
    assert "paused" in browser.find_element(By.ID, "job-send-reminders").text

    # A job that fails, run now: its failure lands in the history.
    browser.find_element(By.CSS_SELECTOR, "[aria-label='Run export-invoices now']").click()
    assert "will run once" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    wait_for(
        lambda: Run.objects.filter(job="export-invoices", manual=True, status="failed").exists(),
        15,
        "the manual run of export-invoices to fail",
    )

    # Run now on a job that works, with the confirmation on screen.
    browser.get(overview)
    browser.find_element(By.CSS_SELECTOR, "[aria-label='Run nightly-report now']").click()
    message = browser.find_element(By.CSS_SELECTOR, ".messagelist .success").text
    assert "Job “nightly-report” will run once, on one live instance" in message
    screenshot(browser, "jobs-overview")

    # The history shows the new manual run, once the instance has run it.
    history = f"{base}/admin/django_oncejob/run/?job=nightly-report"

    def manual_row_done() -> bool:
        rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        return bool(rows) and "manual, by alice" in rows[0].text and "succeeded" in rows[0].text

    poll(browser, history, manual_row_done, 15, "the manual run in the history")
    browser.get(f"{base}/admin/django_oncejob/run/")
    screenshot(browser, "history", full_page=False)

    # The job's own page: its definition, next runs and runs; paused there, it comes back
    # to the page, and the pause is among the admin's recent actions.
    browser.get(overview)
    browser.find_element(By.LINK_TEXT, "nightly-report").click()
    wait_for(lambda: text_of(browser, "#content h1") == "nightly-report", 10, "the job's page")
    definition = browser.find_element(By.CSS_SELECTOR, "table.oncejob-definition").text
    assert "tests.jobs.record" in definition and "Europe/Paris" in definition
    runs = browser.find_elements(By.CSS_SELECTOR, "table.oncejob-runs tbody tr")
    assert "manual, by alice" in runs[0].text
    browser.find_element(By.CSS_SELECTOR, "[aria-label='Pause nightly-report']").click()
    wait_for(lambda: "is paused" in text_of(browser, ".messagelist"), 10, "the pause")
    assert text_of(browser, "#content h1") == "nightly-report"
    screenshot(browser, "job")
    browser.find_element(By.CSS_SELECTOR, "[aria-label='Resume nightly-report']").click()
    wait_for(lambda: "is resumed" in text_of(browser, ".messagelist"), 10, "the resume")
    browser.get(f"{base}/admin/")
    recent = browser.find_element(By.ID, "recent-actions-module").text
    assert recent.count("nightly-report") == 3, recent  # run now, pause, resume

    # The failed run's page: the error and the traceback, readable.
    failed = Run.objects.get(job="export-invoices", manual=True)
    browser.get(f"{base}/admin/django_oncejob/run/{failed.pk}/change/")
    traceback = browser.find_element(By.CSS_SELECTOR, "pre.oncejob-traceback").text
    assert "RuntimeError: the job broke" in traceback
    # Only a seeded row: near the top of the hour the instance runs export-invoices for real.
    seeded = Run.objects.filter(
        job="export-invoices", status="failed", manual=False, scheduled_for__lt=seeded_at
    ).first()
    assert seeded is not None
    browser.get(f"{base}/admin/django_oncejob/run/{seeded.pk}/change/")
    assert "HTTPStatusError" in browser.find_element(By.CSS_SELECTOR, "pre.oncejob-traceback").text
    screenshot(browser, "failed-run")

    # A job that takes a while, run now: the instance running it says so.
    browser.get(overview)
    browser.find_element(By.CSS_SELECTOR, "[aria-label='Run rebuild-search now']").click()
    wait_for(
        lambda: Run.objects.filter(job="rebuild-search", status="running").exists(),
        10,
        "rebuild-search to start",
    )
    browser.get(f"{base}/admin/django_oncejob/instance/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert ["alive" in row.text for row in rows] == [True, False]
    assert rows[0].find_element(By.CSS_SELECTOR, ".field-running").text == "1"
    screenshot(browser, "instances")

    assert instances.stop() == [0], instances.logs()
    ran = [job for job, _, _ in instances.runs()]
    assert ran.count("nightly-report") == 1


def test_a_schedule_overridden_and_reset_in_a_browser(
    browser: Any,
    live_server: Any,
    fleet: Callable[..., Fleet],
    settings: Any,
    django_user_model: Any,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    jobs = {**JOBS, "sync-inventory": {**JOBS["sync-inventory"], "overridable": True}}
    settings.ONCEJOB = {"JOBS": jobs}
    settings.STATIC_ROOT = str(ADMIN_STATIC)
    django_user_model.objects.create_superuser("alice", "alice@example.com", "secret-pw")
    instances = fleet(jobs, {"CONTROL_INTERVAL": 1, "OWNER": "worker-1"})
    instances.start()
    base = live_server.url
    log_in(browser, base)

    page = f"{base}/admin/django_oncejob/jobstate/sync-inventory/change/"
    browser.get(page)
    assert "from settings" in text_of(browser, ".oncejob-job")
    browser.find_element(By.LINK_TEXT, "Change the schedule").click()
    wait_for(lambda: "Change the schedule of" in text_of(browser, "#content h1"), 10, "the form")

    # A bad cron is refused with the words of the system check, and nothing is saved.
    interval = browser.find_element(By.NAME, "interval")
    interval.clear()
    browser.find_element(By.NAME, "cron").send_keys("99 * * * *")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    error = text_of(browser, ".errorlist.nonfield")
    assert "'sync-inventory'['cron']" in error and "99" in error, error
    screenshot(browser, "schedule-refused")

    browser.find_element(By.NAME, "cron").clear()
    browser.find_element(By.NAME, "interval").send_keys("600")
    retries = browser.find_element(By.NAME, "retries")
    retries.clear()
    retries.send_keys("2")
    Select(browser.find_element(By.NAME, "overlap")).select_by_value("skip")
    browser.find_element(By.NAME, "note").send_keys("The warehouse API is rate-limited")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(
        lambda: "switches to its new schedule" in text_of(browser, ".messagelist"), 10, "saved"
    )
    job_text = text_of(browser, ".oncejob-job")
    assert "Switches to a new version at" in job_text
    assert "The warehouse API is rate-limited" in job_text
    screenshot(browser, "schedule-pending")

    # The audit trail: who changed what, before and after.
    browser.get(f"{base}/admin/django_oncejob/jobstate/sync-inventory/history/")
    trail = text_of(browser, "#change-history")
    assert "Schedule overridden" in trail and '"seconds": 600' in trail, trail
    screenshot(browser, "schedule-history", full_page=False)

    # Once in force, a click goes back to the deployed schedule, at the next switch.
    wait_for(
        lambda: (
            ScheduleVersion.objects.get(source="override").effective_from  # type: ignore[operator]
            < timezone.now()
        ),
        15,
        "the override in force",
    )
    browser.get(page)
    assert "overridden in the admin" in text_of(browser, ".oncejob-job")
    assert "every 10 minutes" in text_of(browser, ".oncejob-job")
    browser.find_element(By.XPATH, "//button[text()='Back to the deployed schedule']").click()
    wait_for(
        lambda: "switches to its new schedule" in text_of(browser, ".messagelist"), 10, "reset"
    )
    changes = ScheduleVersion.objects.filter(job="sync-inventory").exclude(source="deploy")
    assert list(changes.values_list("source", flat=True).order_by("pk")) == ["override", "reset"]
    screenshot(browser, "schedule-reset")
    assert instances.stop() == [0], instances.logs()
