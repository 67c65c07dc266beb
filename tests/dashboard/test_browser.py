"""The dashboard in a real browser: headless Chromium from the system packages, driven by
Selenium. Signs in, sends real requests through the gateway under two app ids, and finds both
apps with the right counts; saves a screenshot to tests/artifacts/."""

from pathlib import Path

import requests

from tests.upstream import Reply

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def test_sign_in_and_see_both_apps_with_their_counts(browser, live_server, api_key, management_key, upstream):
    from selenium.webdriver.common.by import By

    upstream.script("primary", Reply(usage=(120, 40)))
    for app_id, count in (("web-shop", 3), ("mobile-app", 2)):
        for _ in range(count):
            response = requests.post(
                f"{live_server}/v1/chat/completions",
                timeout=10,
                json={"model": "test/primary", "messages": [{"role": "user", "content": "hello"}]},
                headers={"Authorization": f"Bearer {api_key}", "X-App-ID": app_id},
            )
            assert response.status_code == 200

    browser.get(f"{live_server}/dashboard/login")
    browser.find_element(By.ID, "key").send_keys(management_key)
    browser.find_element(By.ID, "sign-in").click()
    assert browser.find_element(By.ID, "requests").text == "5"
    browser.get(f"{live_server}/dashboard/apps")
    counts = {
        panel.get_attribute("data-app"): panel.find_element(By.CSS_SELECTOR, ".requests").get_attribute("data-requests")
        for panel in browser.find_elements(By.CSS_SELECTOR, "section.app")
    }
    assert counts == {"web-shop": "3", "mobile-app": "2"}
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.app svg.chart rect")) >= 6
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-apps.png"))
