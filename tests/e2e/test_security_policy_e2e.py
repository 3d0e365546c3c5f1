"""Pages work under the Content-Security-Policy in a real browser: the script that
replaced an inline handler (the language switch) still acts, and the API docs (Swagger
UI from drf-spectacular-sidecar) draw the API. The ``browser`` fixture fails the test
on any CSP violation Chromium reports."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_language_switch_works_without_an_inline_handler(servers, browser):
    from playwright.sync_api import expect

    # given the sign-in page in Vietnamese
    context = browser.new_context(locale="vi-VN")
    page = context.new_page()
    page.goto(f"{servers.web}/login/")
    expect(page.get_by_role("button", name="Đăng nhập")).to_be_visible()
    # when English is chosen in the language list (no button: the list submits itself)
    page.locator("#language").select_option("en")
    # then the page comes back in English
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "en"
    context.close()


def test_the_api_docs_draw_the_api_under_the_policy(servers, browser):
    from playwright.sync_api import expect

    # given the API docs page
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(f"{servers.web}/api/docs/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # then Swagger UI loads the schema and lists the API's operations
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Telehealth network API")
    expect(page.locator(".opblock").first).to_be_visible()
    context.close()
