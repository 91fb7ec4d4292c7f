"""The UI in headless Chromium (the distribution's, driven by Playwright): the ``juspay`` connection form,
the nightly run's grid and its push task's log, as screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.system.deployment import ADMIN_PASSWORD, say

CHROMIUM = "/usr/bin/chromium"
# As the machine needs them: no sandbox as root, and no background calls to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STANDARD_LABELS = ("Base URL (optional)", "Merchant ID", "API key")
EXTRA_LABELS = ("Environment", "Request deadline (s)", "Attempts per request", "Fulfilment time zone")


def _log_in(page: Any, api: str) -> None:
    page.set_default_timeout(30_000)
    page.goto(f"{api}/", wait_until="networkidle")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.locator("button[type=submit]").click()
    page.get_by_role("button", name="Admin").wait_for()  # logged in: the navigation is drawn


def check_ui(api: str, screenshots: Path, *, nightly_run: str) -> None:
    """Log in, check the connection form of type ``juspay``, and save what a user would look at."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _log_in(page, api)

            page.goto(f"{api}/connections", wait_until="networkidle")
            page.get_by_role("button", name="Add Connection").click()
            dialog = page.get_by_role("dialog")
            dialog.locator("input[name=connection_id]").fill("juspay_from_the_form")
            dialog.get_by_role("combobox").click()
            page.keyboard.type("Juspay")
            page.get_by_role("option", name="Juspay", exact=True).click()
            for label in STANDARD_LABELS:
                dialog.get_by_text(label, exact=True).wait_for()
            page.screenshot(path=str(screenshots / "connection-form-standard.png"), full_page=True)
            dialog.get_by_text("Extra Fields", exact=True).click()
            for label in EXTRA_LABELS:
                dialog.get_by_text(label, exact=True).wait_for()
            page.screenshot(path=str(screenshots / "connection-form-extras.png"), full_page=True)
            say(f"connection form of type juspay: {', '.join(STANDARD_LABELS + EXTRA_LABELS)} shown")

            page.goto(f"{api}/dags/juspay_nightly_sync", wait_until="networkidle")
            page.get_by_text("push_fulfilments").first.wait_for()
            page.screenshot(path=str(screenshots / "nightly-grid.png"), full_page=True)
            page.goto(
                f"{api}/dags/juspay_nightly_sync/runs/{nightly_run}/tasks/push_fulfilments",
                wait_until="networkidle",
            )
            page.get_by_text("Juspay fulfilment sync", exact=False).first.wait_for()
            page.screenshot(path=str(screenshots / "nightly-push-log.png"), full_page=True)
            say("the nightly run's grid and its push task's log (with the report table) rendered")
        finally:
            browser.close()


def check_juspay_page(
    api: str, screenshots: Path, *, dag_id: str, run_id: str, pushes: list[dict], refused: set[str]
) -> None:
    """The Juspay page in the navigation and the Juspay tab of a DAG run, as a logged-in user sees them:
    the tab's counts are the run history's (``pushes``: one dict per try, as the database holds them),
    the orders Juspay refused in the first try (``refused``, the sandbox's unknown ones) are listed,
    a run's link on the page opens Airflow's run page in the whole window. Screenshots for the docs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            _log_in(page, api)
            page.get_by_role("button", name="Browse").click()  # where a user finds it
            page.get_by_text("Juspay syncs", exact=True).first.click()
            page.wait_for_url("**/plugin/juspay")
            frame = page.frame_locator("iframe")
            frame.get_by_text("Recent runs").wait_for()
            frame.get_by_text(dag_id).first.wait_for()
            assert frame.locator("svg rect").count() > 0, "the outcomes chart has bars"
            page.screenshot(path=str(screenshots / "juspay-page.png"), full_page=True)
            say("the Juspay page: recent runs, outcomes per day, failure reasons, keys in flight")

            frame.locator(f"a[href*='/runs/{quote(run_id, safe='')}']").first.click()
            page.wait_for_url(f"**/dags/{dag_id}/runs/**")
            say(f"a run's link on the page opened Airflow's own page: {page.url.removeprefix(api)}")

            page.goto(f"{api}/dags/{dag_id}/runs/{quote(run_id, safe='')}", wait_until="networkidle")
            try:  # the run's tabs are links; the plugin's is named after its view and ends in its url_route
                page.locator("a[href$='/plugin/juspay-run']", has_text="Juspay").first.click()
            except Exception:
                page.screenshot(path=str(screenshots / "juspay-run-no-tab.png"), full_page=True)
                raise
            tab = page.frame_locator("iframe")
            tab.get_by_text("Juspay pushes of this run").wait_for()
            text = tab.locator("body").inner_text()
            for push in pushes:
                row = tab.locator("tr", has_text=f"{push['task_id']}").filter(
                    has_text=str(push["try_number"])
                )
                assert row.count() >= 1, f"try {push['try_number']} is listed"
                assert f"{push['sent']:,}" in text and f"{push['skipped']:,}" in text, (push, text[:2000])
            failed_first = text.split("Failed in push_fulfilments, try 1")[1]
            assert all(order in failed_first for order in sorted(refused)[:20]), "the first try's refusals"
            page.screenshot(path=str(screenshots / "juspay-run-tab.png"), full_page=True)
            say(f"the Juspay tab of {dag_id} / {run_id}: {len(pushes)} pushes with the run history's counts")
        finally:
            browser.close()


def check_docs(site: Path, screenshots: Path) -> None:
    """The built documentation site, served on loopback: the landing page's five-minute DAG and a how-to
    page's example DAG are drawn, every image loads, and both pages are saved as screenshots."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # the system test's own lines say what matters
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                for path, shows, name in (
                    ("index.html", "airflow dags test juspay_bulk_from_xcom", "docs-landing.png"),
                    ("howto/bulk.html", "BulkFulfilmentOperator", "docs-howto-bulk.png"),
                    ("ledger.html", "Runs may overlap", "docs-ledger.png"),
                    ("syncs.html", "The Juspay page", "docs-syncs.png"),
                ):
                    page.goto(f"{base}/{path}", wait_until="networkidle")
                    page.get_by_text(shows, exact=False).first.wait_for()
                    broken = page.evaluate(
                        "[...document.images].filter(i => !i.complete || !i.naturalWidth).map(i => i.src)"
                    )
                    assert broken == [], f"{path}: images that do not load: {broken}"
                    page.screenshot(path=str(screenshots / name), full_page=True)
                # The page with the widest code (a REST call on one line): every line wraps, none is cut.
                page.goto(f"{base}/howto/nightly.html", wait_until="networkidle")
                cut = page.evaluate(
                    "[...document.querySelectorAll('div.highlight pre')]"
                    ".filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.textContent.slice(0, 60))"
                )
                assert cut == [], f"code cut at the right edge: {cut}"
                say("the documentation site: three pages drawn, images loaded, code wrapped")
            finally:
                browser.close()
    finally:
        server.shutdown()
