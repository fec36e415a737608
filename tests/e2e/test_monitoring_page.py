"""The monitoring page in a real browser (Debian's chromium), signed in the way users are: with
Open WebUI's `token` cookie, which belongs to the host 127.0.0.1 whatever the port.

Screenshots of each state go to target/screenshots/ (git-ignored).
"""

import time

import httpx
import pytest
from conftest import SCREENSHOTS, Account, Stack
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from wire import MOCK_ANSWER, chat


def bff_chat(stack: Stack, account: Account) -> None:
    response = httpx.post(
        f"{stack.bff.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {account.token}"},
        json=chat(),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    wait_reported(stack, account)


def wait_reported(stack: Stack, account: Account) -> None:
    """Until bff's reports show ACCOUNT's requests (they are written a moment after the chat)."""
    for _ in range(100):
        usage = httpx.get(
            f"{stack.bff.url}/observability/usage",
            headers={"Authorization": f"Bearer {account.token}"},
            timeout=10,
        ).json()
        if usage["totals"]["requests"] > 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{account.id}'s requests never showed in the reports")


def sign_in_to_open_webui(browser, stack: Stack, account: Account) -> None:
    """Open WebUI's own sign-in form; it sets the `token` cookie."""
    browser.get(f"{stack.openwebui}/auth")
    browser.delete_all_cookies()
    browser.execute_script("localStorage.clear()")  # Open WebUI keeps the last session there too
    browser.get(f"{stack.openwebui}/auth")
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "email"))
    browser.find_element(By.ID, "email").send_keys(account.email)
    browser.find_element(By.ID, "password").send_keys(account.password)
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
    # The cookie comes with the answer; Open WebUI's page keeps the token in localStorage a moment
    # later, and leaving before that leaves the page signed out.
    WebDriverWait(browser, 30).until(lambda b: b.get_cookie("token") and b.execute_script("return localStorage.token"))


def open_page(browser, bff_url: str, cookie: str | None = None):
    """The page on bff's port; COOKIE replaces the session cookie Open WebUI would have set."""
    if cookie:
        browser.get(f"{bff_url}/health")
        browser.delete_all_cookies()
        browser.add_cookie({"name": "token", "value": cookie, "path": "/"})
    browser.get(f"{bff_url}/monitoring")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "body[data-loaded]"))


def panel_text(browser, section: str) -> str:
    return browser.find_element(By.ID, section).text


def screenshot(browser, name: str, height: int = 2300) -> None:
    browser.set_window_size(1280, height)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    browser.set_window_size(1280, 1100)


def test_a_user_signed_in_to_open_webui_sees_their_own_data(stack, browser):
    stack.connect("session")
    user = stack.add_user("page-user", "user")
    bff_chat(stack, stack.admin)  # someone else's data, which this user must not see
    sign_in_to_open_webui(browser, stack, user)
    for button in browser.find_elements(By.XPATH, "//button[normalize-space()=\"Okay, Let's Go!\"]"):
        button.click()
    box = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "chat-input"))
    box.click()
    box.send_keys("Hello bff", Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda b: MOCK_ANSWER in b.find_element(By.TAG_NAME, "body").text)
    screenshot(browser, "openwebui-chat", 900)
    wait_reported(stack, user)

    open_page(browser, stack.bff.url)
    assert f"Signed in as {user.name} ({user.id}), user" in browser.find_element(By.ID, "viewer").text
    assert "mock-gpt" in panel_text(browser, "spend")
    traces = panel_text(browser, "traces")
    assert user.name in traces and user.id in traces and stack.admin.id not in traces
    assert "Langfuse not configured" in traces
    assert "Langfuse not configured" in panel_text(browser, "spend")
    assert user.id in panel_text(browser, "quota")
    for admin_only in ("admin-filter", "top-users"):
        assert not browser.find_element(By.ID, admin_only).is_displayed()
    assert "up" in panel_text(browser, "health")
    screenshot(browser, "monitoring-user")
    browser.set_window_size(390, 844)
    browser.save_screenshot(str(SCREENSHOTS / "monitoring-phone.png"))
    browser.set_window_size(1280, 1100)


def test_an_admin_sees_everyones_data_and_filters_by_user(stack, browser):
    user = stack.add_user("filtered", "user")
    bff_chat(stack, user)
    bff_chat(stack, stack.admin)
    open_page(browser, stack.bff.url, cookie=stack.admin.token)
    traces = panel_text(browser, "traces")
    assert user.id in traces and stack.admin.id in traces
    # People are shown by the name Open WebUI gives them, the id beside it: the top spender (other
    # tests' users may outspend this one) and this user in the traces.
    ranked = httpx.get(
        f"{stack.bff.url}/observability/usage/users",
        headers={"Authorization": f"Bearer {stack.admin.token}"},
        timeout=10,
    ).json()["users"]
    top = panel_text(browser, "top-users")
    assert ranked[0]["name"] in top and ranked[0]["email"] in top and ranked[0]["user_id"] in top
    assert user.name in traces
    assert browser.find_element(By.ID, "admin-filter").is_displayed()
    screenshot(browser, "monitoring-admin")

    browser.find_element(By.ID, "filter-user").send_keys(user.id, Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda b: stack.admin.id not in panel_text(b, "traces"))
    assert user.id in panel_text(browser, "traces")
    WebDriverWait(browser, 30).until(lambda b: user.id in panel_text(b, "quota"))


def test_a_user_editing_the_pages_requests_still_sees_only_their_own(stack, browser):
    user = stack.add_user("curious", "user")
    bff_chat(stack, user)
    bff_chat(stack, stack.admin)
    open_page(browser, stack.bff.url, cookie=user.token)
    fetch = """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {credentials: "same-origin"})
          .then(r => r.json().then(body => done({status: r.status, body})));
    """
    admin = stack.admin.id
    traces = browser.execute_async_script(fetch, f"/observability/traces?user_id={admin}")
    assert {item["user_id"] for item in traces["body"]["data"]} == {user.id}
    usage = browser.execute_async_script(fetch, f"/observability/usage?user_id={admin}")
    assert usage["body"]["user_id"] == user.id
    quota = browser.execute_async_script(fetch, f"/observability/quota?user_id={admin}&role=admin")
    assert (quota["body"]["user_id"], quota["body"]["role"]) == (user.id, "user")
    ranked = browser.execute_async_script(fetch, "/observability/usage/users")
    assert ranked["status"] == 403


@pytest.mark.parametrize("who", ["admin", "user"])
def test_dependencies_down_show_their_error_states(stack, bff_dependencies_down, browser, who):
    account = stack.admin if who == "admin" else stack.add_user("sees-down", "user")
    open_page(browser, bff_dependencies_down.url, cookie=account.token)
    health = panel_text(browser, "health")
    assert "Degraded: litellm, langfuse down" in health
    if who == "user":
        assert "not answering or failing (an administrator sees why)" in health
    else:
        assert "not answering or failing" not in health  # the admin reads the real reason
    for panel in ("spend", "traces"):
        assert "Langfuse unreachable: " in panel_text(browser, panel)
    screenshot(browser, f"monitoring-dependencies-down-{who}")
