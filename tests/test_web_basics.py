import uuid

import pytest
from django.urls import reverse

from tests.helpers import named_urls

pytestmark = pytest.mark.django_db

# Pages for people not logged in: logging in, and setting a password from an emailed link.
PUBLIC = {
    "login",
    "healthz",
    "favicon",
    "metrics",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "accept_invitation",
}
# A dummy value for each URL parameter: the login check runs before any lookup.
DUMMY = {"slug": "x", "api_id": "msgbatch_x", "key": uuid.uuid4(), "custom_id": "c", "pk": 1}


def test_it_sends_anonymous_visitors_of_every_page_to_the_login(client):
    urls = {name: parameters for name, parameters in named_urls() if name not in PUBLIC}
    assert {"home", "batch_detail", "result_raw", "submission_submit"} <= set(urls)
    assert len(urls) >= 20
    login = reverse("login")
    for name, parameters in sorted(urls.items()):
        address = reverse(name, kwargs={key: DUMMY[key] for key in parameters})
        for method in (client.get, client.post):
            response = method(address)
            assert response.status_code == 302, (name, method.__name__, response.status_code)
            assert response["Location"].startswith(login), (name, method.__name__)


def test_it_shows_a_styled_login_page(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"css/dashboard.css" in response.content
    assert b'name="password"' in response.content


def test_it_logs_in_and_lands_on_the_empty_home(client, user):
    response = client.post(
        reverse("login"), {"username": "owner", "password": "pw-owner-123"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("home")
    assert b"No workspaces yet" in response.content


def test_it_explains_a_wrong_password(client, user):
    response = client.post(reverse("login"), {"username": "owner", "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_it_logs_out_with_a_post(owner_client):
    response = owner_client.post(reverse("logout"))
    assert response.status_code == 302
    assert owner_client.get(reverse("home")).status_code == 302


def test_the_layout_loads_vendored_htmx_and_sends_the_csrf_token_with_it(owner_client):
    html = owner_client.get(reverse("home")).content.decode()
    assert "/static/vendor/htmx-2.0.11.min.js" in html
    assert 'hx-headers=\'{"x-csrftoken": "' in html
    assert "http://" not in html.split("<body")[0].replace("http://www.w3.org", "")


def test_it_renders_times_in_the_zone_the_browser_reported(rf):
    from django.http import HttpRequest, HttpResponse
    from django.utils import timezone

    from dashboard.middleware import TimezoneMiddleware

    seen = []

    def remember_the_zone(request: HttpRequest) -> HttpResponse:
        seen.append(timezone.get_current_timezone())
        return HttpResponse()

    middleware = TimezoneMiddleware(remember_the_zone)
    for cookie in ("Asia/Tokyo", "Not/AZone", "../../etc/passwd", ""):
        request = rf.get("/")
        request.COOKIES["tz"] = cookie
        middleware(request)
    assert [str(zone) for zone in seen] == ["Asia/Tokyo", "UTC", "UTC", "UTC"]
    assert str(timezone.get_current_timezone()) == "UTC"  # nothing leaks to the next request


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_logins_are_throttled_for_a_user_and_say_when_to_try_again(client, user, settings, path):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post(path, {"username": "owner", "password": "wrong"})
    # Locked out now: even the right password waits, and the form says until when.
    response = client.post(path, {"username": "owner", "password": "pw-owner-123"})
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins. Try again in 15 minutes, at" in page
    assert "_auth_user_id" not in client.session


def test_failures_from_one_address_lock_out_other_usernames_too(client, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for name in ("alice", "bob", "carol"):
        client.post("/login/", {"username": name, "password": "guess"})
    response = client.post("/login/", {"username": "owner", "password": "pw-owner-123"})
    assert response.status_code == 429


def test_failures_from_one_address_never_lock_the_user_out_elsewhere(client, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    attacker = {"REMOTE_ADDR": "203.0.113.9"}
    for _ in range(3):
        client.post("/login/", {"username": "owner", "password": "guess"}, **attacker)
    right = {"username": "owner", "password": "pw-owner-123"}
    assert client.post("/login/", right, **attacker).status_code == 429
    assert client.post("/login/", right, REMOTE_ADDR="198.51.100.7").status_code == 302


def test_a_right_password_before_the_limit_logs_in_and_counts_afresh(client, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        client.post("/login/", {"username": "owner", "password": "wrong"})
    assert (
        client.post("/login/", {"username": "owner", "password": "pw-owner-123"}).status_code == 302
    )


def test_every_page_has_an_icon_and_a_skip_link(client, user):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301 and icon["Location"].endswith("favicon.svg")
    client.force_login(user)
    page = client.get(reverse("home")).content.decode()
    assert 'rel="icon"' in page and 'href="#main"' in page and 'id="main"' in page


def test_every_answer_carries_the_content_security_policy(client):
    policy = client.get("/login/").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == directives["script-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["object-src"] == directives["frame-ancestors"] == "'none'"
