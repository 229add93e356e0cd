"""The unfiltered lead list reads its pages with fixed SQL: the same pages, positions and links
as DRF's keyset pagination of the queryset, cursor by cursor, forward and back."""

from base64 import b64encode
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from gtm_api.selectors.leads import lead_list
from gtm_api.serializers import LeadOutput
from neuronx.pagination import CursorPagination, FixedPages
from tests.factories import LeadFactory, TenantFactory

pytestmark = pytest.mark.django_db


def _page(source, params: dict[str, str]):
    request = Request(APIRequestFactory().get("/v1/leads", params))
    paginator = CursorPagination()
    page = paginator.paginate_queryset(source, request)
    assert page is not None
    return (
        LeadOutput(page, many=True).data,
        paginator.get_next_link(),
        paginator.get_previous_link(),
    )


def _cursor(link: str | None) -> dict[str, str]:
    assert link is not None
    return {"limit": parse_qs(urlsplit(link).query)["limit"][0], **_params(link)}


def _params(link: str) -> dict[str, str]:
    return {"cursor": parse_qs(urlsplit(link).query)["cursor"][0]}


@pytest.fixture
def tenant():
    tenant = TenantFactory(slug="pages")
    for n in range(7):
        LeadFactory(tenant=tenant, attributes={"n": n}, score=n * 10 if n % 2 else None)
    LeadFactory(tenant=TenantFactory(slug="elsewhere"))
    return tenant


def test_every_page_and_link_is_drf_s(tenant):
    fixed = lead_list(tenant=tenant)
    assert isinstance(fixed, FixedPages)
    params = {"limit": "3"}
    seen, visited = [], 0
    while True:
        ours, theirs = _page(fixed, params), _page(fixed.orm(), params)
        assert ours == theirs
        results, next_link, previous_link = ours
        seen += [lead["id"] for lead in results]
        if previous_link:  # and back again, by the reverse cursor
            assert _page(fixed, _cursor(previous_link)) == _page(
                fixed.orm(), _cursor(previous_link)
            )
        visited += 1
        if not next_link:
            break
        params = _cursor(next_link)
    assert visited == 3
    expected = sorted(fixed.orm().values_list("id", flat=True), reverse=True)
    assert seen == expected and len(seen) == 7


@pytest.mark.parametrize(
    "cursor",
    [
        {"r": "1"},  # reverse without a position
        {"o": "2", "p": "lead_Z"},  # an offset: DRF's own path
        {"o": "1", "r": "1", "p": "lead_0"},
        {"p": "lead_"},  # before every id
        {"r": "1", "p": "lead_"},
    ],
)
def test_any_cursor_a_client_sends_gives_drf_s_answer(tenant, cursor):
    fixed = lead_list(tenant=tenant)
    assert isinstance(fixed, FixedPages)
    params = {"limit": "2", "cursor": b64encode(urlencode(cursor).encode()).decode()}
    assert _page(fixed, params) == _page(fixed.orm(), params)


def test_filters_take_the_orm_path(tenant):
    assert not isinstance(lead_list(tenant=tenant, stage="new"), FixedPages)
