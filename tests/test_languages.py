"""Every page in Simplified Chinese and English, in Debian Chromium.

The catalogues are complete (every key in both languages, every key a page names
exists), and the staff consoles, driven through a real call, show no word of the other
language: the teller console at login, offline, ringing, in the call and in wrap-up; the
supervisor board with a customer nobody can serve; the auditor console with the call's
session opened. A switch of language redraws the page at once."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.serve_process import start_serve
from tests.test_browser import staff_login, wait_frames

pytestmark = pytest.mark.browser

CATALOGUES = ("customer", "staff", "teller", "supervisor", "auditor")

CHECK_CATALOGUES = """async (names) => {
  const out = {};
  for (const name of names) {
    const c = (await import(`/static/lang/${name}.js`)).default;
    out[`${name}: only in en`] = Object.keys(c.en).filter((k) => !(k in c.zh));
    out[`${name}: only in zh`] = Object.keys(c.zh).filter((k) => !(k in c.en));
  }
  const i18n = await import("/static/i18n.js");
  out["keys the page names that no catalogue has"] = [...document.querySelectorAll(
    "[data-i18n],[data-i18n-label],[data-i18n-placeholder],[data-i18n-title]")]
    .flatMap((el) => [el.dataset.i18n, el.dataset.i18nLabel, el.dataset.i18nPlaceholder, el.dataset.i18nTitle])
    .filter((k) => k && !i18n.has(k));
  return out;
}"""

# What a reader sees: the rendered text, the title, and the placeholders, accessible
# names and tooltips of visible elements; less what is marked translate="no" (people's
# names, ids, host names, reasons people typed), which is data, in whatever language.
SEEN = """() => {
  let body = document.body.innerText;
  for (const el of document.querySelectorAll("[translate=no]")) {
    if (el.checkVisibility() && el.innerText) body = body.replace(el.innerText, "");
  }
  const texts = [document.title, body];
  for (const el of document.querySelectorAll("[placeholder],[aria-label],[title]")) {
    if (el.checkVisibility()) texts.push(el.getAttribute("placeholder") || "", el.getAttribute("aria-label") || "", el.getAttribute("title") || "");
  }
  return texts.join("\\n");
}"""

# Words that stay as they are in Chinese: key names, units, acronyms and the language
# switch's own bilingual label.
LATIN_KEPT = {"Alt", "Erlang", "English", "Language", "GMT", "UTC", "TAN", "MB", "ID"}
CJK_KEPT = ("中文", "语言")  # the language switch


def foreign_words(text: str, lang: str) -> list[str]:
    if lang == "zh":
        return sorted({w for w in re.findall(r"[A-Za-z]{2,}", text) if w not in LATIN_KEPT})
    for kept in CJK_KEPT:
        text = text.replace(kept, "")
    return sorted(set(re.findall(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+", text)))


async def assert_in(page, lang: str, where: str) -> None:  # type: ignore[no-untyped-def]
    assert await page.evaluate("document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en")
    found = foreign_words(await page.evaluate(SEEN), lang)
    assert not found, f"{where} in {lang} shows words of another language: {found}"


async def test_catalogues_are_complete_in_both_languages(browser, tmp_path):
    server = start_serve(tmp_path / "srv", "--dev")
    try:
        page = await (await browser.new_context(ignore_https_errors=True)).new_page()
        for path in ("/customer", "/teller", "/supervisor", "/auditor"):
            await page.goto(f"{server.url}{path}")
            gaps = await page.evaluate(CHECK_CATALOGUES, list(CATALOGUES))
            assert {k: v for k, v in gaps.items() if v} == {}, path
    finally:
        server.stop()


@pytest.mark.parametrize("locale,lang,customer", [("zh-CN", "zh", "王奶奶"),
                                                  ("en-US", "en", "Ann Customer")])
async def test_staff_consoles_speak_the_readers_language(browser, tmp_path, locale, lang, customer):
    server = start_serve(tmp_path / "srv", "--dev")
    try:
        async def page_for(viewport):  # type: ignore[no-untyped-def]
            ctx = await browser.new_context(ignore_https_errors=True, locale=locale, viewport=viewport)
            return await ctx.new_page()
        console = {"width": 1440, "height": 900}
        teller = await page_for(console)
        supervisor = await page_for(console)
        auditor = await page_for(console)
        phone = await (await browser.new_context(
            ignore_https_errors=True, locale=locale, is_mobile=True,
            viewport={"width": 390, "height": 844})).new_page()

        await teller.goto(f"{server.url}/teller")
        await teller.wait_for_selector("#login:not([hidden])")
        await assert_in(teller, lang, "teller login")
        await staff_login(teller, server, "/teller", "teller1")
        await teller.wait_for_selector("#teller-state[data-state=offline]")
        await assert_in(teller, lang, "teller console, offline")

        # a customer waits while the only teller is offline: the supervisor is alerted
        await phone.goto(f"{server.url}/customer")
        await phone.fill("#name", customer)
        await phone.fill("#birth-year", "1950")
        await phone.click("#start")
        await staff_login(supervisor, server, "/supervisor", "supervisor1")
        await supervisor.locator("#unservable").wait_for(state="visible")
        await supervisor.locator("#waiting tr").first.wait_for()
        await assert_in(supervisor, lang, "supervisor board with an unservable customer")
        row = await supervisor.inner_text("#waiting tr")
        assert ("绿色通道" if lang == "zh" else "green channel") in row, row  # the class, in words

        await teller.click("#available")
        await teller.wait_for_selector("#offer:not([hidden])")
        await assert_in(teller, lang, "teller console, ringing")
        assert await teller.text_content("#offer-name") == customer
        assert await teller.text_content("#offer-language") == ("中文" if lang == "zh" else "English")
        await teller.click("#accept")
        await wait_frames(teller, 5)
        await teller.wait_for_function("document.getElementById('business-title').textContent !== ''")
        await assert_in(teller, lang, "teller console, in the call")

        await teller.click("#hangup")
        await teller.wait_for_selector("#wrapup-form:not([hidden])")
        await assert_in(teller, lang, "teller console, wrap-up")
        options = await teller.eval_on_selector_all("#disposition option", "os => os.map(o => o.text)")
        assert ("已解决" if lang == "zh" else "Resolved") in options, options
        await teller.click("#wrapup-record")
        await teller.wait_for_selector("#wrapup-form", state="hidden")
        await teller.click("#wrapup-done")  # closes the session: the trail is sealed
        await teller.wait_for_selector("#teller-state[data-state=available]")
        await assert_in(teller, lang, "teller console, after the call")

        await staff_login(auditor, server, "/auditor", "auditor1")
        await auditor.locator("#results tr").first.wait_for()
        await auditor.click("#results tr button")
        await auditor.fill("#reason", "检查 4711" if lang == "zh" else "check 4711")
        for _ in range(20):  # the session is sealed a moment after the hang-up
            await auditor.click("#open")
            await auditor.wait_for_selector("#verification[data-ok]")
            if await auditor.get_attribute("#verification", "data-ok") == "true":
                break
            await asyncio.sleep(0.5)
        await auditor.wait_for_selector("#player:not([hidden])")
        assert await auditor.get_attribute("#verification", "data-ok") == "true"
        await assert_in(auditor, lang, "auditor console, a session opened")
        timeline = await auditor.inner_text("#timeline")
        assert ("柜员接听" if lang == "zh" else "teller accepted") in timeline, timeline

        # the switch redraws at once, the state of the teller included
        other = "en" if lang == "zh" else "zh"
        await teller.select_option("#lang", other)
        await assert_in(teller, other, "teller console after the switch")
        await teller.reload()  # the choice is kept
        await teller.wait_for_selector("#console:not([hidden])")
        await assert_in(teller, other, "teller console reloaded")
    finally:
        server.stop()
