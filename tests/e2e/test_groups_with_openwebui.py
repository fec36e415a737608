"""Policy by Open WebUI group against the real Open WebUI 0.12.4, in both connection modes.

The groups are made with Open WebUI's admin API; bff learns them from Open WebUI (mode 1: it
asks with the user's own credential) or from the headers Open WebUI fills on the connection
(mode 2: `{{USER_GROUPS}}`, since the signed user token has no groups). The policy is
tests/e2e/rbac.toml.
"""

import time

import httpx
import pytest
from conftest import Account, Stack
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from test_monitoring_page import open_page, panel_text, screenshot, sign_in_to_open_webui
from test_with_openwebui import bearer, logged_request, openwebui_chat, wait_for_status

MODES = ["session", "bearer"]


@pytest.fixture(scope="module")
def research(stack) -> str:
    return stack.create_group("e2e-research")


def long_chat(stack: Stack, account: Account) -> httpx.Response:
    """A chat through Open WebUI with the model only e2e-research may use."""
    return openwebui_chat(stack, account, stream=False, model="mock-gpt-long")


@pytest.mark.parametrize("mode", MODES)
def test_a_groups_model_is_for_its_members_only(stack, research, mode):
    stack.connect(mode)
    member, outsider = stack.add_user(f"member-{mode}", "user"), stack.add_user(f"outsider-{mode}", "user")
    stack.set_members(research, "add", member)
    answered = long_chat(stack, member)
    assert answered.status_code == 200, answered.text
    assert "longer canned answer" in answered.json()["choices"][0]["message"]["content"]
    refused = long_chat(stack, outsider)
    assert refused.status_code == 403, refused.text
    line = logged_request(stack, user_id=outsider.id, status=403)
    assert line["error_code"] == "model_not_allowed", line


@pytest.mark.parametrize("mode", MODES)
def test_a_change_of_membership_takes_effect_within_the_cache_ttl(stack, research, mode):
    stack.connect(mode)
    user = stack.add_user(f"joiner-{mode}", "user")
    assert long_chat(stack, user).status_code == 403  # and, in mode 1, now in bff's cache
    limit = stack.cache_ttl + 2
    stack.set_members(research, "add", user)
    assert wait_for_status(lambda: long_chat(stack, user), 200, limit) <= limit
    stack.set_members(research, "remove", user)
    assert wait_for_status(lambda: long_chat(stack, user), 403, limit) <= limit


def group_tokens_today(stack: Stack, account: Account, group: str) -> int:
    report = httpx.get(f"{stack.bff.url}/observability/quota", headers=bearer(account.token), timeout=30).json()
    scopes = [scope for scope in report["scopes"] if scope["scope"] == f"group:{group}"]
    assert scopes, report
    return scopes[0]["used"]["tokens_today"]


@pytest.mark.parametrize("mode", MODES)
def test_a_group_budget_spent_by_one_member_refuses_the_next(stack, mode):
    stack.connect(mode)
    name = f"e2e-support-{mode}"
    support = stack.create_group(name)
    first, second = stack.add_user(f"first-{mode}", "user"), stack.add_user(f"second-{mode}", "user")
    stack.set_members(support, "add", first, second)
    assert openwebui_chat(stack, first, stream=False).status_code == 200
    deadline = time.monotonic() + 10
    while group_tokens_today(stack, second, name) < 1:  # settled after the answer
        assert time.monotonic() < deadline, "the group's budget was never charged"
        time.sleep(0.2)
    refused = openwebui_chat(stack, second, stream=False)
    assert refused.status_code == 429, refused.text
    line = logged_request(stack, user_id=second.id, status=429)
    assert line["error_code"] == "insufficient_quota", line


def usage_by_task(stack: Stack, account: Account) -> dict:
    usage = httpx.get(f"{stack.bff.url}/observability/usage", headers=bearer(account.token), timeout=30).json()
    return {line["task"]: line["requests"] for line in usage["by_task"]}


@pytest.mark.parametrize("mode", MODES)
def test_one_message_typed_in_open_webui_is_one_chat_and_its_tasks(stack, browser, mode):
    stack.connect(mode)
    user = stack.add_user(f"typist-{mode}", "user")
    sign_in_to_open_webui(browser, stack, user)
    browser.get(f"{stack.openwebui}/")
    try:
        box = WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "chat-input"))
    except Exception:
        screenshot(browser, f"openwebui-no-chat-input-{mode}")
        raise
    box.click()
    box.send_keys("Hello", Keys.ENTER)
    # The answer, then Open WebUI's own requests about it (title, tags, follow-ups).
    expected = {None: 1, "title_generation": 1, "tags_generation": 1, "follow_up_generation": 1}
    deadline = time.monotonic() + 60
    while (seen := usage_by_task(stack, user)) != expected:
        assert time.monotonic() < deadline, f"bff counted {seen}, expected {expected}"
        time.sleep(0.5)
    # Each in its own bucket: one chat request this minute, three tasks.
    report = httpx.get(f"{stack.bff.url}/observability/quota", headers=bearer(user.token), timeout=30).json()
    used = report["scopes"][0]["used"]
    assert (used["requests_this_minute"], used["tasks_this_minute"]) == (1, 3), used
    line = logged_request(stack, user_id=user.id, task="title_generation")
    assert line["status"] == 200


def test_the_monitoring_page_shows_spend_by_team(stack, browser, research):
    stack.connect("session")
    member = stack.add_user("team-member", "user")
    stack.set_members(research, "add", member)
    assert long_chat(stack, member).status_code == 200
    open_page(browser, stack.bff.url, cookie=stack.admin.token)
    WebDriverWait(browser, 30).until(lambda b: "e2e-research" in panel_text(b, "teams"))
    teams = panel_text(browser, "teams")
    assert "Spend by team" in teams
    spend = panel_text(browser, "spend")
    assert "Open WebUI: title generation" in spend or "people (what they typed)" in spend, spend
    screenshot(browser, "monitoring-teams")
    # A user does not see the teams panel (it is every group's spend).
    open_page(browser, stack.bff.url, cookie=member.token)
    assert not browser.find_element(By.ID, "teams").is_displayed()
