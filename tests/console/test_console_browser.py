"""The console in a real Chromium (Playwright): sign-in, the list, filters and their shareable
URL, live arrival while typing, the detail, every quick action, a rejection, tenant isolation,
CSRF refusal, reading with JavaScript off, and axe-core finding no serious violation.
Elements are found by role and label, as people and screen readers find them."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.console.browser import AXE, Watched
from tests.console.conftest import TOKENS, ConsoleSide

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def sign_in(page: Page, side: ConsoleSide, who: str = "acme", path: str = "/") -> None:
    await page.goto(side.url + path)
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Access token").fill(TOKENS[who])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("Signed in as")).to_be_visible()


def rows(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#incident-rows tr[data-id]")


async def test_sign_in_shows_the_tenants_incidents(
    watched: Watched, console_side: ConsoleSide
) -> None:
    page = watched.page
    await sign_in(page, console_side, "acme", "/?severity=RED")
    await expect(page).to_have_url(re.compile(r"/\?severity=RED$"))
    await expect(page.get_by_role("heading", name="Incidents")).to_be_visible()
    table = page.get_by_role("table", name=re.compile("Incidents of tenant acme"))
    await expect(table).to_be_visible()
    acme = await console_side.incident_id("acme", "d-1")
    await expect(page.locator(f"#row-{acme}")).to_be_visible()
    globex = await console_side.incident_id("globex", "d-1")
    await expect(page.locator(f"#row-{globex}")).to_have_count(0)


async def test_a_filter_makes_a_shareable_url(watched: Watched, console_side: ConsoleSide) -> None:
    page = watched.page
    await sign_in(page, console_side)
    severity = page.get_by_role("group", name="Severity")
    await severity.get_by_label("Yellow").check()
    await page.get_by_label("Environment").fill("prod")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page).to_have_url(re.compile(r"severity=YELLOW.*env=prod"))
    yellow = await console_side.incident_id("acme", "d-3")
    await expect(rows(page)).to_have_count(1)
    await expect(page.locator(f"#row-{yellow}")).to_be_visible()
    shared = await watched.context.new_page()  # the link, opened elsewhere, shows the same
    await shared.goto(page.url)
    await expect(shared.locator("#incident-rows tr[data-id]")).to_have_count(1)
    await expect(
        shared.get_by_role("group", name="Severity").get_by_label("Yellow")
    ).to_be_checked()
    await expect(shared.get_by_label("Environment")).to_have_value("prod")


async def test_a_new_incident_arrives_live_while_the_user_types(
    watched: Watched, console_side: ConsoleSide
) -> None:
    page = watched.page
    await page.goto(console_side.dev_url + "/?tenant=acme")
    await expect(rows(page).first).to_be_visible()
    field = page.get_by_label("Title contains")
    await field.click()
    await field.press_sequentially("half-typed")
    incident = await console_side.new_incident("acme", "b-live", minute=20)
    await expect(page.locator(f"#row-{incident}")).to_be_visible()
    await expect(page.locator(f"#row-{incident}")).to_contain_text("Deploy status RED")
    await expect(field).to_have_value("half-typed")
    await expect(field).to_be_focused()
    await field.press_sequentially(" more")  # typing goes on where it was
    await expect(field).to_have_value("half-typed more")
    other = await console_side.new_incident("globex", "b-live-globex", minute=21)
    await console_side.new_incident("acme", "b-live-2", minute=22)  # arrives after globex's
    await expect(rows(page).first).to_have_attribute(
        "data-id", await console_side.incident_id("acme", "b-live-2")
    )
    await expect(page.locator(f"#row-{other}")).to_have_count(0)
    async with httpx.AsyncClient(base_url=console_side.dev_url, timeout=30) as api:
        answer = await api.post(
            f"/v1/incidents/{incident}/commands", json={"type": "acknowledge"},
            headers={"X-Tenant": "acme", "X-Actor": "bob", "X-Roles": "ONCALL_ENGINEER"},
        )  # fmt: skip
        assert answer.json()["outcome"] == "applied"
    changed = page.locator(f"#row-{incident}")  # a changed incident's row is replaced in place
    await expect(changed).to_have_count(1)
    await expect(changed.locator(".badge.status-acknowledged")).to_be_visible()
    await expect(field).to_have_value("half-typed more")


async def test_the_detail_shows_the_verified_timeline(
    watched: Watched, console_side: ConsoleSide
) -> None:
    page = watched.page
    await sign_in(page, console_side)
    incident = await console_side.incident_id("acme", "d-1")
    await page.locator(f"#row-{incident}").get_by_role("link").click()
    await expect(page).to_have_url(re.compile(f"/console/incidents/{incident}$"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Deploy status RED")
    await expect(page.get_by_text("Hash chain verified")).to_be_visible()
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline.get_by_text("incident.created")).to_be_visible()
    await expect(page.get_by_role("table", name="Evidence references")).to_be_visible()
    await expect(page.get_by_text("Time to acknowledge (MTTA)")).to_be_visible()


async def act(page: Page, button: str, expected: str) -> None:
    await page.get_by_role("button", name=button).click()
    await expect(page.get_by_role("status")).to_contain_text(expected)


async def test_every_quick_action_and_its_outcome(
    watched: Watched, console_side: ConsoleSide
) -> None:
    page = watched.page
    incident = await console_side.new_incident("acme", "b-actions", minute=30)
    await page.goto(f"{console_side.dev_url}/console/incidents/{incident}?tenant=acme")
    await act(page, "Acknowledge", "Acknowledge: applied")
    await expect(page.locator("#incident .badges")).to_contain_text("ACKNOWLEDGED")
    await act(page, "Start mitigation", "Start mitigation: applied")
    await act(page, "Mark mitigated", "Mark mitigated: applied")
    await page.get_by_label("Note").fill("rolled back to the previous build")
    await act(page, "Add note", "Add note: applied")
    await page.get_by_label("New severity").select_option("YELLOW")
    await page.get_by_label("Severity change rationale").fill("impact contained")
    await act(page, "Change severity", "Change severity: applied")
    await page.get_by_label("Resolution rationale").fill("rollback verified")
    await act(page, "Resolve", "Resolve: applied")
    await expect(page.locator("#incident .badges")).to_contain_text("RESOLVED")
    timeline = page.get_by_role("list", name="Timeline")
    for text in ("incident.acknowledged", "incident.mitigating", "incident.mitigated",
                 "Note: rolled back to the previous build", "Rationale: impact contained",
                 "Rationale: rollback verified", "Actor: console"):  # fmt: skip
        await expect(timeline.get_by_text(text).first).to_be_visible()
    await expect(page.get_by_text("Hash chain verified")).to_be_visible()
    assert await console_side.status_of(incident) == "RESOLVED"


async def test_a_rejection_is_shown_with_its_reason(
    watched: Watched, console_side: ConsoleSide
) -> None:
    page = watched.page
    await sign_in(page, console_side)
    incident = await console_side.new_incident("acme", "b-reject", minute=31)
    await page.goto(f"{console_side.url}/console/incidents/{incident}")
    await act(page, "Resolve", "Resolve rejected (rationale_required)")
    await act(page, "Acknowledge", "Acknowledge: applied")  # the acme token may acknowledge
    assert await console_side.status_of(incident) == "ACKNOWLEDGED"


async def test_tenants_see_only_their_own(watched: Watched, console_side: ConsoleSide) -> None:
    page = watched.page
    await page.goto(console_side.dev_url + "/?tenant=acme")
    await page.get_by_label("Tenant").fill("globex")
    await page.get_by_role("button", name="Switch tenant").click()
    await expect(page).to_have_url(re.compile(r"tenant=globex"))
    globex = await console_side.incident_id("globex", "d-2")
    acme = await console_side.incident_id("acme", "d-2")
    await expect(page.locator(f"#row-{globex}")).to_be_visible()
    await expect(page.locator(f"#row-{acme}")).to_have_count(0)
    await page.locator(f"#row-{globex}").get_by_role("link").click()
    await expect(page).to_have_url(re.compile(r"tenant=globex"))  # the choice stays in the URL
    signed = await watched.context.new_page()
    await sign_in(signed, console_side, "globex")
    await signed.goto(f"{console_side.url}/console/incidents/{acme}")
    await expect(signed.get_by_role("heading", name="Not found")).to_be_visible()


async def test_a_forged_form_is_refused(watched: Watched, console_side: ConsoleSide) -> None:
    page = watched.page
    await sign_in(page, console_side)
    incident = await console_side.new_incident("acme", "b-csrf", minute=32)
    await page.goto(f"{console_side.url}/console/incidents/{incident}")
    button = page.get_by_role("button", name="Acknowledge", exact=True)
    form = page.locator("form", has=button)
    await form.locator("input[name=csrf]").evaluate("e => e.value = 'forged'")
    await button.click()
    await expect(page.get_by_role("alert")).to_contain_text("CSRF")
    assert await console_side.status_of(incident) == "OPEN"


async def test_reading_and_acting_work_with_javascript_off(
    browser: Browser, console_side: ConsoleSide
) -> None:
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(console_side.dev_url + "/?tenant=acme&env=staging")
        incident = await console_side.incident_id("acme", "d-2")
        await expect(rows(page)).to_have_count(1)
        await page.get_by_role("link", name=re.compile("Deploy status RED")).click()
        await expect(page.get_by_text("Hash chain verified")).to_be_visible()
        await page.get_by_label("Note").fill("read without scripts")
        await page.get_by_role("button", name="Add note").click()
        await expect(page.get_by_role("status")).to_contain_text("Add note: applied")
        timeline = page.get_by_role("list", name="Timeline")
        await expect(timeline.get_by_text("Note: read without scripts")).to_be_visible()
        assert incident in page.url
    finally:
        await context.close()


async def axe_violations(page: Page) -> list[dict[str, object]]:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => (await axe.run(document)).violations")
    return [v for v in result if v.get("impact") in ("serious", "critical")]


async def test_axe_core_finds_no_serious_violation(
    browser: Browser, console_side: ConsoleSide
) -> None:
    # axe is injected as a script of its own: only this context bypasses the page's CSP.
    context = await browser.new_context(bypass_csp=True)
    try:
        page = await context.new_page()
        incident = await console_side.incident_id("acme", "d-1")
        for path in ("/?tenant=acme", f"/console/incidents/{incident}?tenant=acme",
                     "/console/sign-in"):  # fmt: skip
            await page.goto(console_side.dev_url + path)
            found = await axe_violations(page)
            assert not found, [(v["id"], v.get("help"), v.get("nodes")) for v in found]
        await page.goto(console_side.dev_url + "/?tenant=acme")
        await page.keyboard.press("Tab")  # the skip link shows when focused
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    finally:
        await context.close()
