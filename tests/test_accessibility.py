"""axe-core (from the npm registry, run in Debian Chromium) finds no accessibility
violation, of any impact, on the pages people use: the customer page in Chinese and
English (start, waiting in the queue, elderly mode, in a call) on a phone, and the
teller, supervisor and auditor consoles in both languages (the teller's offer and call in
Chinese)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serve_process import start_serve
from tests.test_browser import staff_login

pytestmark = pytest.mark.browser

AXE_VERSION = "4.14.1"  # MPL-2.0; pinned so a new rule set does not turn CI red overnight
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vteller-tests"

VIOLATIONS = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
  .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}))"""


@pytest.fixture(scope="session")
def axe_js() -> str:
    """axe.min.js, installed once from the npm registry into the user's cache."""
    folder = CACHE / f"axe-core-{AXE_VERSION}"
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if not script.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (axe-core comes from the npm registry)")
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund",
                        "--silent", f"axe-core@{AXE_VERSION}"], check=True, timeout=300)
    return script.read_text()


async def violations(page, axe: str) -> list[dict]:  # type: ignore[no-untyped-def]
    await page.add_script_tag(content=axe)  # the context bypasses the page's CSP for this
    return await page.evaluate(VIOLATIONS)


async def test_pages_have_no_accessibility_violations(browser, tmp_path, axe_js):
    server = start_serve(tmp_path / "srv", "--dev")
    found: dict[str, list[dict]] = {}
    try:
        for locale, lang in (("zh-CN", "zh"), ("en-US", "en")):
            ctx = await browser.new_context(ignore_https_errors=True, bypass_csp=True,
                                            locale=locale, is_mobile=True,
                                            viewport={"width": 390, "height": 844})
            page = await ctx.new_page()
            await page.goto(f"{server.url}/customer")
            assert await page.input_value("#lang") == lang
            found[f"customer {lang} start"] = await violations(page, axe_js)
            await page.fill("#name", "Customer")
            await page.fill("#birth-year", "1950")  # elderly mode: large text and buttons
            await page.click("#start")
            await page.wait_for_selector("#waiting:not([hidden])")
            await page.wait_for_function("document.body.classList.contains('elderly')")
            # nobody is logged in to serve: the booking of an appointment is offered
            await page.wait_for_selector("#slot option", state="attached")
            found[f"customer {lang} waiting, elderly, booking offered"] = await violations(page, axe_js)
            await page.click("#leave")
            await page.wait_for_selector("#start-panel:not([hidden])")
            await ctx.close()
        for (path, user, ready), locale in itertools.product(
                (("/teller", "teller1", "#teller-state[data-state=offline]"),
                 ("/supervisor", "supervisor1", "#board:not([hidden])"),
                 ("/auditor", "auditor1", "#console:not([hidden])")), ("zh-CN", "en-US")):
            ctx = await browser.new_context(ignore_https_errors=True, bypass_csp=True,
                                            locale=locale, viewport={"width": 1440, "height": 900})
            page = await ctx.new_page()
            await page.goto(f"{server.url}{path}")
            await page.wait_for_selector("#login:not([hidden])")
            found[f"{path} {locale} login"] = await violations(page, axe_js)
            await staff_login(page, server, path, user)
            await page.wait_for_selector(ready)
            found[f"{path} {locale} console"] = await violations(page, axe_js)
            await ctx.close()

        # in a call: the teller's tools (in Chinese) and the customer's controls (English)
        teller = await (await browser.new_context(ignore_https_errors=True, bypass_csp=True,
                                                  locale="zh-CN", viewport={"width": 1440, "height": 900})
                        ).new_page()
        await staff_login(teller, server, "/teller", "teller1")
        await teller.wait_for_selector("#console:not([hidden])")
        await teller.click("#available")
        await teller.wait_for_selector("#teller-state[data-state=available]")
        customer = await (await browser.new_context(
            ignore_https_errors=True, bypass_csp=True, is_mobile=True,
            viewport={"width": 390, "height": 844})).new_page()
        await customer.goto(f"{server.url}/customer")
        await customer.click("#start")
        await teller.wait_for_selector("#offer:not([hidden])")
        assert "剩余" in await teller.text_content("#offer-countdown")  # the ring counts down
        found["/teller offer"] = await violations(teller, axe_js)
        await teller.click("#accept")
        await teller.wait_for_selector("#call:not([hidden])")
        await customer.wait_for_selector("#in-call:not([hidden])")
        found["/teller in call"] = await violations(teller, axe_js)
        found["customer in call"] = await violations(customer, axe_js)
        # an error shows beside the tool that caused it, not in a box at the top
        await teller.click("#id-verify")  # the demo customer has no reference photo
        await teller.wait_for_function(
            "document.getElementById('identity-error').textContent.length > 0")
        assert await teller.text_content("#error") == ""
        assert await teller.text_content("#call-timer") not in ("", None)
        await teller.click("#id-verify")  # trying again clears it until the answer
        await teller.wait_for_function(
            "document.getElementById('identity-error').textContent.length > 0")
    finally:
        server.stop()
    assert len(found) == 19
    assert {page: v for page, v in found.items() if v} == {}
