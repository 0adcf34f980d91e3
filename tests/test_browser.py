"""End to end in Debian Chromium: customer page and teller console call through the server."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.serve_process import start_serve

pytestmark = pytest.mark.browser


FRAMES_DECODED = """async () => {
  const pc = window.vteller && window.vteller.pc;
  if (!pc) return 0;
  let n = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded || 0;
  });
  return n;
}"""


SCREEN_FRAMES = """async () => {
  const r = window.vteller.screenReceiver;
  let n = 0;
  if (r) (await r.getStats()).forEach((s) => { if (s.type === "inbound-rtp") n += s.framesDecoded || 0; });
  return n;
}"""


async def wait_frames(page, minimum: int, timeout_s: float = 30, probe: str = FRAMES_DECODED) -> int:
    deadline = time.monotonic() + timeout_s
    while (n := await page.evaluate(probe)) < minimum:
        if time.monotonic() > deadline:
            state = await page.evaluate(
                "() => window.vteller.pc && [window.vteller.pc.connectionState,"
                " window.vteller.pc.iceConnectionState, document.body.innerText]")
            raise AssertionError(f"{page.url}: {n} frames decoded, wanted {minimum}; {state}")
        await asyncio.sleep(0.25)
    return n


async def staff_login(page, server, path: str, username: str) -> None:
    """Open a staff page and log in with the dev account's printed password."""
    await page.goto(f"{server.url}{path}")
    await page.fill("#username", username)
    await page.fill("#password", server.passwords[username])
    await page.click("button[type=submit]")


async def browser_call(browser, server, teller_viewport=None, customer_context=None,
                       accept: bool = True):  # type: ignore[no-untyped-def]
    """A teller (teller1) available, a customer (born 1980) asking for a teller, the offer
    shown and, with `accept`, accepted: (teller page, customer page)."""
    teller = await (await browser.new_context(
        ignore_https_errors=True, **({"viewport": teller_viewport} if teller_viewport else {})
    )).new_page()
    customer = await (await browser.new_context(
        ignore_https_errors=True, **(customer_context or {}))).new_page()
    await staff_login(teller, server, "/teller", "teller1")
    await teller.click("#available")
    await teller.wait_for_selector("#teller-state[data-state=available]")
    await customer.goto(f"{server.url}/customer")
    await customer.fill("#birth-year", "1980")
    await customer.click("#start")
    await teller.wait_for_selector("#offer:not([hidden])")
    if accept:
        await teller.click("#accept")
    return teller, customer


async def test_customer_and_teller_call_in_chromium(browser, tmp_path):
    server = start_serve(tmp_path / "srv", "--dev")
    try:
        teller_ctx = await browser.new_context(ignore_https_errors=True)
        customer_ctx = await browser.new_context(
            ignore_https_errors=True, viewport={"width": 390, "height": 844}, is_mobile=True)
        teller = await teller_ctx.new_page()
        customer = await customer_ctx.new_page()
        # record what the page speaks (headless Chromium has no speech voices)
        await customer.add_init_script("""
          window.__spoken = [];
          if (window.speechSynthesis) {
            window.speechSynthesis.speak = (u) => window.__spoken.push(u.text);
          }""")

        await staff_login(teller, server, "/teller", "teller1")
        await teller.wait_for_selector("#teller-state[data-state=offline]")
        await teller.click("#available")
        await teller.wait_for_selector("#teller-state[data-state=available]")

        supervisor_ctx = await browser.new_context(ignore_https_errors=True)
        supervisor = await supervisor_ctx.new_page()
        await staff_login(supervisor, server, "/supervisor", "supervisor1")
        await supervisor.wait_for_selector("#tellers tr[data-username=teller1]")

        await customer.goto(f"{server.url}/customer")
        await customer.fill("#name", "Barack Customer")
        await customer.fill("#birth-year", "1961")
        await customer.click("#start")
        await teller.wait_for_selector("#offer:not([hidden])")
        assert await customer.is_visible("#green")  # 65 years old: green channel
        assert await customer.evaluate("document.body.classList.contains('elderly')")
        assert await teller.text_content("#offer-name") == "Barack Customer"
        assert await teller.evaluate("document.body.dataset.ringing") == "true"  # the ring
        await teller.keyboard.press("Alt+A")  # accept from the keyboard
        await teller.wait_for_selector("#call:not([hidden])")
        assert await teller.evaluate("document.body.dataset.ringing") is None

        # decoded frames arrive on both sides, through the server, and keep growing
        first_c, first_t = await wait_frames(customer, 10), await wait_frames(teller, 10)
        later_c, later_t = await wait_frames(customer, first_c + 30), await wait_frames(
            teller, first_t + 30)
        assert later_c > first_c and later_t > first_t
        row = supervisor.locator("#tellers tr[data-username=teller1]")
        await row.filter(has_text="Barack Customer").wait_for(timeout=5000)
        assert "in a call" in await row.inner_text()  # the state "busy", in words
        assert await supervisor.text_content("#f-needed") == "1"  # Erlang C: 1 call so far
        assert await supervisor.text_content("#f-staffed") == "1"
        assert "default" in await supervisor.text_content("#s-aht")  # not measured yet
        await supervisor.screenshot(path=str(tmp_path / "supervisor.png"))

                # the teller mutes from the keyboard: the customer's page is told
        await teller.keyboard.press("Alt+M")
        await teller.wait_for_selector("#teller-mute[aria-pressed=true]")
        assert await teller.evaluate("vteller.local.getAudioTracks()[0].enabled") is False
        await teller.click("#teller-mute")
        await teller.wait_for_selector("#teller-mute[aria-pressed=false]")

        # screen share: request -> allow -> the teller decodes screen frames -> stop
        assert await teller.evaluate(SCREEN_FRAMES) == 0
        await teller.fill("#assist-purpose", "help you activate your card")
        await teller.click("#assist-request")
        await customer.wait_for_selector("#consent:not([hidden])")
        assert await customer.text_content("#consent-teller") == "Teller One"
        assert await customer.text_content("#consent-purpose") == "help you activate your card"
        spoken = await customer.evaluate("window.__spoken")
        assert any("asks to see your screen" in t for t in spoken), spoken
        await customer.click("#consent-allow")
        await customer.wait_for_selector("#share-bar:not([hidden])")
        await teller.wait_for_selector("#assist-state[data-state=active]")
        shared = await wait_frames(teller, 10, probe=SCREEN_FRAMES)
        await teller.screenshot(path=str(tmp_path / "teller-screen.png"))
        await customer.click("#share-stop")
        await teller.wait_for_selector("#assist-state[data-state=revoked]")
        await asyncio.sleep(1.0)
        settled = await teller.evaluate(SCREEN_FRAMES)
        await asyncio.sleep(1.5)
        assert await teller.evaluate(SCREEN_FRAMES) == settled >= shared

        # navigation push and the business decision
        await teller.click("#nav-push")
        await customer.wait_for_selector("#nav:not([hidden])")
        assert await customer.text_content("#nav-title") == "Activate a card"
        await teller.select_option("#decision", "incomplete")
        await teller.click("#decide")
        await teller.wait_for_selector("#decision-result:has-text('incomplete')")
        await customer.screenshot(path=str(tmp_path / "customer.png"))
        await teller.screenshot(path=str(tmp_path / "teller.png"))

        await customer.click("#hangup")
        await teller.wait_for_selector("#teller-state[data-state=wrap_up]")
        await customer.wait_for_selector("#start-panel:not([hidden])")
        # the end screen: the reference to quote and a survey
        await customer.wait_for_selector("#end:not([hidden])")
        assert len(await customer.text_content("#end-reference")) >= 8
        await customer.click("#survey button[type=submit]")  # no score yet
        await customer.wait_for_selector("#survey-result:has-text('1 to 5')")
        await customer.check("#survey input[value='4']")
        await customer.fill("#survey-comment", "clear and quick")
        await customer.click("#survey button[type=submit]")
        await customer.wait_for_selector("#survey-result:has-text('Thank you')")
        # the teller's disposition, in words, recorded once
        await teller.wait_for_selector("#wrapup-form:not([hidden])")
        await teller.select_option("#disposition", "follow_up")
        await teller.fill("#wrapup-notes", "post the card form")
        await teller.click("#wrapup-record")
        await teller.wait_for_selector("#last-call:has-text('Disposition: Follow-up needed')")
        assert await teller.is_hidden("#wrapup-form")
        await teller.click("#wrapup-done")
        await teller.wait_for_selector("#teller-state[data-state=available]")
        artefacts = Path("/tmp/vteller-browser")
        artefacts.mkdir(exist_ok=True)
        for f in ("customer.png", "teller.png", "supervisor.png", "teller-screen.png"):
            shutil.copy(tmp_path / f, artefacts / f)
    finally:
        server.stop()


async def test_identity_panel_and_liveness_prompts_in_chromium(browser, tmp_path, faces_dir):
    """The teller verifies the customer's face against the bank's reference photo and
    starts a liveness check; the customer sees and hears each prompt. The fake camera
    (a photo) cannot follow the prompts, so liveness must not pass."""

    import aiohttp

    from tests.helpers import insecure_ssl

    server = start_serve(tmp_path / "srv", "--dev",
                         env={"VTELLER_IDENTITY__CHALLENGE_TIMEOUT_S": "4"})
    try:
        teller = await (await browser.new_context(ignore_https_errors=True)).new_page()
        customer = await (await browser.new_context(
            ignore_https_errors=True, viewport={"width": 390, "height": 844},
            is_mobile=True)).new_page()
        await customer.add_init_script("""
          window.__spoken = [];
          if (window.speechSynthesis) {
            window.speechSynthesis.speak = (u) => window.__spoken.push(u.text);
          }""")
        await staff_login(teller, server, "/teller", "teller1")
        await teller.click("#available")
        await teller.wait_for_selector("#teller-state[data-state=available]")

        await customer.goto(f"{server.url}/customer")
        await customer.fill("#name", "Barack Customer")
        await customer.fill("#birth-year", "1950")
        await customer.click("#start")
        await teller.wait_for_selector("#offer:not([hidden])")
        # the bank backend enrolls the customer's ID photo (a different photo of him)
        # (the page shows its demo customer id in dev mode; its token is used up)
        shown = await customer.text_content("#dev-id")
        customer_id = shown.rsplit(": ", 1)[1].strip()
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
            r = await s.put(f"{server.url}/api/backend/references/{customer_id}",
                            data=(faces_dir / "obama2.jpg").read_bytes(),
                            headers={"Authorization": f"Bearer {server.passwords['dev-backend']}",
                                     "Content-Type": "image/jpeg"})
            assert r.status == 201, await r.text()
        await teller.click("#accept")
        await wait_frames(teller, 10)

        await teller.click("#id-verify")
        await teller.wait_for_selector("#id-verdict[data-verdict=verified]", timeout=20000)
        distance = float(await teller.text_content("#id-distance"))
        assert 0 < distance < 0.5
        assert await teller.locator("#id-trend polyline").count() == 1

        await teller.click("#id-liveness")
        await customer.wait_for_selector("#challenge:not([hidden])")
        try:
            await customer.wait_for_selector(
                "#challenge[data-action]:not([data-action=calibrate]):not([data-action=''])",
                timeout=15000)
        except Exception as exc:  # say why the check ended before its first prompt
            raise AssertionError(" | ".join([
                await teller.inner_text("#id-liveness-state"),
                await teller.inner_text("#id-liveness-reason"),
                await teller.inner_text("#id-steps"),
                await customer.inner_text("#challenge")])) from exc
        prompt = await customer.text_content("#challenge-prompt")
        assert prompt and "Step 1 of" in await customer.text_content("#challenge-step")
        assert prompt in await customer.evaluate("window.__spoken")  # elderly: spoken
        await customer.screenshot(path=str(tmp_path / "customer-liveness.png"))
        await teller.wait_for_selector(
            "#id-liveness-state[data-state=failed], #id-liveness-state[data-state=timed_out]",
            timeout=20000)
        assert await teller.locator("#id-steps li").count() >= 3

        # the gestures failed: the teller uses the spoken check instead, with a reason
        await teller.click("#spoken summary")
        await teller.select_option("#spoken-reason", "gesture_check_failed")
        await teller.click("#spoken-start")
        await customer.wait_for_selector("#challenge-phrase:not([hidden])")
        phrase = (await customer.text_content("#challenge-phrase")).strip()
        assert len(phrase.replace(" ", "")) == 6 and phrase.replace(" ", "").isdigit()
        await teller.wait_for_selector("#spoken-run:not([hidden])")
        assert (await teller.text_content("#spoken-phrase")).strip() == phrase
        assert await teller.locator("#spoken-questions li").count() == 2
        await teller.fill("#spoken-attest-notes", "read the digits and answered both")
        await teller.click("#spoken-pass")
        await teller.wait_for_selector("#spoken-state:text('passed')")
        await teller.screenshot(path=str(tmp_path / "teller-identity.png"), full_page=True)
        artefacts = Path("/tmp/vteller-browser")
        artefacts.mkdir(exist_ok=True)
        for f in ("customer-liveness.png", "teller-identity.png"):
            shutil.copy(tmp_path / f, artefacts / f)
    finally:
        server.stop()


async def test_auditor_verifies_replays_and_seeks_in_chromium(browser, tmp_path):
    """A recorded call; the auditor finds it, opens it with a reason (verified first),
    plays the recordings and seeks with the timeline; after tampering it shows failed."""
    server = start_serve(tmp_path / "srv", "--dev", env={"VTELLER_RECORD_CALLS": "true"})
    try:
        teller, customer = await browser_call(browser, server)
        await wait_frames(teller, 90)  # ~3 s of video recorded
        await teller.select_option("#decision", "incomplete")
        await teller.click("#decide")
        await teller.wait_for_selector("#decision-result:has-text('incomplete')")
        await customer.click("#hangup")
        await teller.wait_for_selector("#teller-state[data-state=wrap_up]")
        await teller.click("#wrapup-done")  # closes the session: trail sealed
        await teller.wait_for_selector("#teller-state[data-state=available]")
        await asyncio.sleep(1.0)

        auditor = await (await browser.new_context(ignore_https_errors=True)).new_page()
        await staff_login(auditor, server, "/auditor", "auditor1")
        await auditor.fill("#f-teller", "teller1")
        await auditor.click("#search-form button[type=submit]")
        row = auditor.locator("#results tr").first
        await row.wait_for()
        session_id = await row.get_attribute("data-session")
        await row.locator("button").click()
        await auditor.fill("#reason", "quality review of card orders, ticket QA-12")
        await auditor.click("#open")
        await auditor.wait_for_selector("#verification[data-ok=true]")
        assert "Integrity verified" in await auditor.text_content("#verification")
        started = await auditor.text_content("#results tr td")
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (UTC|GMT)", started), started
        assert "teller accepted" in await auditor.text_content("#timeline")  # labels
        assert await auditor.locator("#markers .marker").count() >= 5  # events on the scrubber
        media_start = await auditor.evaluate("() => window.vteller.mediaStart")
        assert media_start > 0  # the queue and the offer come before any media
        assert abs(float(await auditor.input_value("#scrub")) - media_start) < 0.5
        video = auditor.locator("video[data-track='customer.video.webm.vtenc']")
        await video.wait_for()
        await auditor.wait_for_function(
            "() => document.querySelector(\"video[data-track='customer.video.webm.vtenc']\")"
            ".readyState >= 1", timeout=15000)
        await auditor.click("#play")
        await asyncio.sleep(1.5)
        played = await video.evaluate("v => v.currentTime")
        assert played > 0.3
        # seek with the timeline: the "accepted" event, then the last event
        buttons = auditor.locator("#timeline li button")
        assert await buttons.count() >= 5
        await auditor.click("#pause")
        last = buttons.last
        target = float(await last.get_attribute("data-t"))
        await last.click()
        await asyncio.sleep(0.5)
        offset = await auditor.evaluate(
            "() => window.vteller.players.find(p => p.el.dataset.track === "
            "'customer.video.webm.vtenc').offset")
        position = await video.evaluate("v => v.currentTime")
        assert abs(position - min(target - offset, await video.evaluate("v => v.duration"))) < 1.0
        await auditor.screenshot(path=str(tmp_path / "auditor.png"), full_page=True)

        # tamper with a recording on disk: opening shows the failure prominently
        blob = tmp_path / "srv" / "var" / "recordings" / session_id / "teller.audio.webm.vtenc"
        raw = bytearray(blob.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        blob.write_bytes(bytes(raw))
        await auditor.click("#open")
        await auditor.wait_for_selector("#verification[data-ok=false]")
        assert "INTEGRITY CHECK FAILED" in await auditor.text_content("#verification")
        assert "teller.audio" in await auditor.text_content("#verification li.problem")
        await auditor.screenshot(path=str(tmp_path / "auditor-failed.png"), full_page=True)
        artefacts = Path("/tmp/vteller-browser")
        artefacts.mkdir(exist_ok=True)
        for f in ("auditor.png", "auditor-failed.png"):
            shutil.copy(tmp_path / f, artefacts / f)
    finally:
        server.stop()


async def test_four_eyes_approval_in_chromium(browser, tmp_path):
    """General enquiries configured as four-eyes: the teller's approval waits; the
    auditor sees it among the approvals waiting, opens the session with a reason and
    confirms it; the call's outcome becomes final."""
    types = '[{"id": "general", "title": "General enquiry", "four_eyes": true}]'
    server = start_serve(tmp_path / "srv", "--dev",
                         env={"VTELLER_REVIEW__BUSINESS_TYPES": types})
    try:
        teller, customer = await browser_call(browser, server)
        await wait_frames(teller, 30)  # the call is up
        await teller.select_option("#decision", "approve")
        await teller.click("#decide")
        await teller.wait_for_selector("#decision-result:has-text('second approval')")
        await customer.click("#hangup")
        await teller.wait_for_selector("#teller-state[data-state=wrap_up]")
        await teller.click("#wrapup-done")
        await teller.wait_for_selector("#teller-state[data-state=available]")
        await asyncio.sleep(1.0)

        auditor = await (await browser.new_context(ignore_https_errors=True)).new_page()
        await staff_login(auditor, server, "/auditor", "auditor1")
        row = auditor.locator("#approvals tr").first
        await row.wait_for()
        assert "teller1" in await row.text_content()
        await row.locator("button").click()
        await auditor.wait_for_selector("#four-eyes:not([hidden])")
        await auditor.fill("#reason", "second approval of the enquiry, ticket QA-7")
        await auditor.fill("#approval-reason", "identity and answers checked in the replay")
        await auditor.click("#confirm-approval")  # not opened yet: refused
        await auditor.wait_for_selector("#approval-result:has-text('open')")
        await auditor.click("#open")
        await auditor.wait_for_selector("#verification[data-ok=true]")
        await auditor.click("#confirm-approval")
        await auditor.wait_for_selector("#approval-result:has-text('Approval confirmed')")
        await auditor.wait_for_selector("#approvals-empty:not([hidden])")
        await auditor.screenshot(path=str(tmp_path / "auditor-four-eyes.png"), full_page=True)
    finally:
        server.stop()


async def test_sales_script_in_chromium(browser, tmp_path):
    """A sales script (dual recording): the teller reads each statement and asks, the
    customer confirms it on screen (a question first on one); approval is refused
    until every statement is confirmed, then accepted."""
    types = json.dumps([{"id": "general", "title": "Fund sale", "script": [
        {"id": "product", "title": "The product", "text": "It is a fund, not a deposit."},
        {"id": "risks", "title": "Risks", "text": "I may lose money I invest."}]}])
    server = start_serve(tmp_path / "srv", "--dev",
                         env={"VTELLER_REVIEW__BUSINESS_TYPES": types})
    try:
        teller, customer = await browser_call(browser, server)
        await teller.wait_for_selector("#script-panel:not([hidden])")
        await teller.click("#decide")  # approve before the script: refused
        await teller.wait_for_selector("#review-error:has-text('not confirmed')")

        await teller.click("#script-steps li[data-step=product] button")
        await customer.wait_for_selector("#script:not([hidden])")
        assert "not a deposit" in await customer.text_content("#script-text")
        assert "1 of 2" in await customer.text_content("#script-index")
        await customer.click("#script-question")
        await teller.wait_for_selector("#script-steps li[data-step=product][data-state=question]")
        await teller.click("#script-steps li[data-step=product] button")  # ask again
        await customer.wait_for_selector("#script:not([hidden])")
        await customer.click("#script-confirm")
        await teller.wait_for_selector("#script-steps li[data-step=product][data-state=confirmed]")
        await teller.click("#script-steps li[data-step=risks] button")
        await customer.wait_for_selector("#script:not([hidden])")
        assert "lose money" in await customer.text_content("#script-text")
        await customer.click("#script-confirm")
        await teller.wait_for_selector("#script-steps li[data-step=risks][data-state=confirmed]")
        await teller.select_option("#decision", "approve")
        await teller.click("#decide")
        await teller.wait_for_selector("#decision-result:has-text('approve')")
        await teller.screenshot(path=str(tmp_path / "teller-script.png"), full_page=True)
    finally:
        server.stop()


async def test_customer_shares_location_in_chromium(browser, tmp_path):
    """A region-limited service: the page asks, the customer shares the phone's place
    (Chromium's geolocation, granted), the teller sees it allowed."""
    types = json.dumps([{"id": "general", "title": "V-CIP", "allowed_regions": [
        {"id": "in", "south": 6.5, "west": 68.0, "north": 35.7, "east": 97.5}]}])
    server = start_serve(tmp_path / "srv", "--dev",
                         env={"VTELLER_REVIEW__BUSINESS_TYPES": types})
    try:
        teller, customer = await browser_call(browser, server, customer_context={
            "permissions": ["geolocation"],
            "geolocation": {"latitude": 28.61, "longitude": 77.21, "accuracy": 20}})
        await teller.wait_for_selector("#location-state[data-state=not_shared]")
        await customer.wait_for_selector("#location:not([hidden])")
        await customer.click("#location-share")
        await teller.wait_for_selector("#location-state[data-state=allowed]")
        assert "(in)" in await teller.text_content("#location-state")
    finally:
        server.stop()


async def test_customer_checks_camera_and_microphone_in_chromium(browser, tmp_path):
    """Before joining: the customer sees their own picture and the microphone level
    moves (Chromium's fake camera and its beeping fake microphone)."""
    server = start_serve(tmp_path / "srv", "--dev")
    try:
        customer = await (await browser.new_context(ignore_https_errors=True)).new_page()
        await customer.goto(f"{server.url}/customer")
        await customer.click("#check-devices")
        await customer.wait_for_function(
            "() => document.querySelector('#preview').videoWidth > 0", timeout=15000)
        await customer.wait_for_function(
            "() => document.querySelector('#mic-level').value > 0.02", timeout=15000)
        await customer.wait_for_selector("#device-result:has-text('work')")
    finally:
        server.stop()


async def test_closed_hours_shown_in_chinese_in_chromium(browser, tmp_path):
    """Outside the opening hours: the customer's page says so in their language, with
    the hours, the bank's zone and the next opening."""
    from tests.test_hours import _closed_now

    server = start_serve(tmp_path / "srv", "--dev", env={
        "VTELLER_ROUTING__OPENING_HOURS": json.dumps(_closed_now())})
    try:
        customer = await (await browser.new_context(ignore_https_errors=True)).new_page()
        await customer.goto(f"{server.url}/customer#lang=zh")
        await customer.fill("#birth-year", "1950")
        await customer.click("#start")
        await customer.wait_for_selector("#closed:not([hidden])")
        assert "现在不是视频柜员服务时间" in await customer.text_content("#closed-title")
        assert "下次开放时间" in await customer.text_content("#closed-next")
        hours = await customer.text_content("#closed-hours")
        assert "10:00-11:00" in hours and "UTC" in hours and "不开放" in hours
        assert await customer.is_visible("#start")  # may try again later
    finally:
        server.stop()


KEY_TELLER_CONTROLS = ("#customer-name", "#remote", "#hangup", "#teller-mute", "#decide",
                       "#decision", "#id-verify", "#id-liveness", "#assist-request")


async def test_teller_console_fits_one_1440x900_screen_in_chromium(browser, tmp_path):
    """In a call, the customer's video, the call controls, the decision and the identity
    and screen-share tools are all on screen at 1440x900 without scrolling (the tools
    column scrolls on its own for the rest)."""
    server = start_serve(tmp_path / "srv", "--dev")
    try:
        teller, _ = await browser_call(browser, server,
                                       teller_viewport={"width": 1440, "height": 900})
        await wait_frames(teller, 10)
        await teller.evaluate("window.scrollTo(0, 0)")
        outside = await teller.evaluate("""(ids) => ids.filter((id) => {
            const r = document.querySelector(id).getBoundingClientRect();
            return r.width === 0 || r.top < 0 || r.bottom > innerHeight || r.right > innerWidth;
          })""", list(KEY_TELLER_CONTROLS))
        await teller.screenshot(path=str(tmp_path / "teller-1440.png"))
        assert outside == [], outside
    finally:
        server.stop()


async def test_customer_page_in_chinese_reaches_a_chinese_speaking_teller(browser, tmp_path):
    """A phone set to Chinese gets the page in Chinese and joins with language zh, so a
    teller who speaks Chinese is offered the call; in elderly mode Hang up stays on
    screen; after the call the camera and microphone are off; English on request."""
    server = start_serve(tmp_path / "srv", "--dev")  # the dev teller speaks en and zh
    try:
        teller = await (await browser.new_context(ignore_https_errors=True)).new_page()
        ctx = await browser.new_context(ignore_https_errors=True, locale="zh-CN",
                                        viewport={"width": 390, "height": 844}, is_mobile=True)
        customer = await ctx.new_page()
        sent: list[str] = []
        customer.on("websocket", lambda ws: ws.on("framesent", lambda data: sent.append(data)))
        await staff_login(teller, server, "/teller", "teller1")
        await teller.wait_for_selector("#teller-state[data-state=offline]")
        await teller.click("#available")
        await teller.wait_for_selector("#teller-state[data-state=available]")

        await customer.goto(f"{server.url}/customer")
        assert await customer.text_content("#start") == "联系柜员"
        assert await customer.evaluate("document.documentElement.lang") == "zh-CN"
        assert await customer.input_value("#lang") == "zh"
        await customer.fill("#name", "王奶奶")
        await customer.fill("#birth-year", "1950")
        await customer.click("#start")
        await teller.wait_for_selector("#offer:not([hidden])")
        joins = [f for f in sent if '"queue.join"' in f]
        assert joins and '"language": "zh"' in joins[0].replace('":"', '": "'), joins
        assert await teller.text_content("#offer-name") == "王奶奶"
        assert await teller.text_content("#offer-language") == "Chinese (中文)"
        await teller.click("#accept")
        await wait_frames(customer, 10)
        status = await customer.text_content("#status")
        assert any(w in status for w in ("正在为您接通柜员", "已接通")), status
        assert await customer.text_content("#hangup") == "挂断"
        assert await customer.evaluate("document.body.classList.contains('elderly')")
        box = await customer.locator("#hangup").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 844, box  # on screen, no scrolling
        await customer.screenshot(path=str(tmp_path / "customer-zh.png"))

        await customer.evaluate("window.__tracks = window.vteller.local.getTracks()")
        assert await customer.evaluate("window.__tracks.every((t) => t.readyState === 'live')")
        await customer.click("#hangup")
        await customer.wait_for_selector("#start-panel:not([hidden])")
        assert await customer.text_content("#status") == "通话已结束，谢谢您。"
        assert await customer.evaluate(
            "window.__tracks.length === 2 && window.__tracks.every((t) => t.readyState === 'ended')"
            " && window.vteller.local === null")  # the camera light goes out

        await customer.select_option("#lang", "en")
        assert await customer.text_content("#start") == "Talk to a teller"
        await customer.reload()  # the choice is kept
        assert await customer.text_content("#start") == "Talk to a teller"
        artefacts = Path("/tmp/vteller-browser")
        artefacts.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "customer-zh.png", artefacts / "customer-zh.png")
    finally:
        server.stop()


async def test_supervisor_confirms_force_actions_and_sees_unservable_customers(browser, tmp_path):
    server = start_serve(tmp_path / "srv", "--dev")
    try:
        teller = await (await browser.new_context(ignore_https_errors=True)).new_page()
        supervisor = await (await browser.new_context(
            ignore_https_errors=True, viewport={"width": 1440, "height": 900})).new_page()
        customer = await (await browser.new_context(ignore_https_errors=True)).new_page()
        await staff_login(teller, server, "/teller", "teller1")
        await teller.click("#available")
        await teller.wait_for_selector("#teller-state[data-state=available]")
        await staff_login(supervisor, server, "/supervisor", "supervisor1")
        force = supervisor.locator("#tellers tr[data-username=teller1] button[data-status=break]")
        await force.click()  # first click only asks
        await supervisor.locator("#tellers tr[data-username=teller1] button",
                                 has_text="Confirm: force break for Teller One?").wait_for()
        await asyncio.sleep(1.5)  # the board redraws every second; the question stays
        assert await teller.get_attribute("#teller-state", "data-state") == "available"
        await force.click()
        await teller.wait_for_selector("#teller-state[data-state=break]")

        await customer.goto(f"{server.url}/customer")
        await customer.click("#start")
        banner = supervisor.locator("#unservable")
        await banner.wait_for(state="visible")
        assert (await banner.text_content()).startswith("1 customer is waiting with nobody")
        assert await supervisor.locator("#waiting tr.alert").count() == 1
    finally:
        server.stop()


async def test_customer_books_an_appointment_the_booked_teller_gets_in_chromium(browser, tmp_path):
    """Nobody can serve now: the customer (in Chinese) is offered the free times, in
    the bank's time zone, and books one. Coming back in its window, the booked teller is
    offered the call with the booking shown."""
    server = start_serve(tmp_path / "srv", "--dev", env={
        "VTELLER_APPOINTMENTS__LEAD_S": "0", "VTELLER_APPOINTMENTS__JOIN_EARLY_S": "86400"})
    try:
        customer = await (await browser.new_context(
            ignore_https_errors=True, locale="zh-CN", is_mobile=True,
            viewport={"width": 390, "height": 844})).new_page()
        await customer.goto(f"{server.url}/customer")
        await customer.click("#start")
        await customer.wait_for_selector("#booking:not([hidden])")
        await customer.wait_for_selector("#slot option", state="attached")
        assert await customer.text_content("#booking-title") == "预约视频柜员"
        first = await customer.eval_on_selector("#slot", "s => s.options[0].text")
        assert "UTC" in first, first  # the zone is named
        await customer.click("#book")
        await customer.wait_for_selector("#booked:not([hidden])")
        booked = await customer.text_content("#booked-at")
        assert booked.startswith("您的视频预约："), booked
        await customer.click("#leave")

        await customer.click("#start")  # back in the window: a booked request
        teller = await (await browser.new_context(ignore_https_errors=True)).new_page()
        await staff_login(teller, server, "/teller", "teller1")
        await teller.click("#available")
        await teller.wait_for_selector("#offer-appointment:not([hidden])")
        note = await teller.text_content("#offer-appointment")
        assert note.startswith("Booked appointment at") and "this customer booked you" in note
    finally:
        server.stop()


MONITOR_INBOUND = """async () => {
  const pc = window.vteller.monitor;
  if (!pc) return null;
  const out = { state: pc.connectionState, audio: 0, video: 0 };
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") out.audio += s.packetsReceived || 0;
    if (s.type === "inbound-rtp" && s.kind === "video") out.video += s.framesDecoded || 0;
  });
  return out;
}"""


async def test_supervisor_listens_to_a_call_and_the_teller_sees_it_in_chromium(browser, tmp_path):
    """Listen-only monitoring from the supervisor dashboard: the supervisor's page
    receives both voices and the cameras of a live call; the teller's console says who
    listens; stopping clears it."""
    server = start_serve(tmp_path / "srv", "--dev")
    try:
        teller, customer = await browser_call(browser, server)
        await wait_frames(teller, 10)
        supervisor = await (await browser.new_context(
            ignore_https_errors=True, viewport={"width": 1440, "height": 900})).new_page()
        await staff_login(supervisor, server, "/supervisor", "supervisor1")
        listen = supervisor.locator("#tellers tr[data-username=teller1] button[data-action=listen]")
        await listen.click()
        await supervisor.wait_for_selector("#monitor:not([hidden])")
        deadline = time.monotonic() + 20
        while True:
            got = await supervisor.evaluate(MONITOR_INBOUND)
            if got and got["audio"] > 50 and got["video"] > 10:
                break
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.25)
        await teller.wait_for_selector("#monitored:not([hidden])")
        assert "Supervisor One" in await teller.text_content("#monitored")
        assert await customer.locator("text=listening").count() == 0  # the bank's policy
        await supervisor.click("#monitor-stop")
        await teller.wait_for_selector("#monitored", state="hidden")
        await supervisor.wait_for_selector("#monitor", state="hidden")
    finally:
        server.stop()
