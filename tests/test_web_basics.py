import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db

PUBLIC = {"login", "healthz"}
# A dummy value for each URL parameter: the login check runs before any lookup.
DUMMY = {"slug": "x", "api_id": "msgbatch_x", "key": uuid.uuid4(), "custom_id": "c"}


def _named_urls(resolver=None, parameters=()):
    """(name, parameter names) of every named URL but the admin's and the emulator's."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        own = (*parameters, *pattern.pattern.converters)
        if isinstance(pattern, URLResolver):
            if pattern.namespace in ("admin", "emulator"):
                continue  # the admin has its own login; the emulator has API-key auth
            yield from _named_urls(pattern, own)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield pattern.name, own


def test_it_sends_anonymous_visitors_of_every_page_to_the_login(client):
    urls = {name: parameters for name, parameters in _named_urls() if name not in PUBLIC}
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
    from django.utils import timezone

    from dashboard.middleware import TimezoneMiddleware

    seen = []
    middleware = TimezoneMiddleware(lambda request: seen.append(timezone.get_current_timezone()))
    for cookie in ("Asia/Tokyo", "Not/AZone", "../../etc/passwd", ""):
        request = rf.get("/")
        request.COOKIES["tz"] = cookie
        middleware(request)
    assert [str(zone) for zone in seen] == ["Asia/Tokyo", "UTC", "UTC", "UTC"]
    assert str(timezone.get_current_timezone()) == "UTC"  # nothing leaks to the next request
