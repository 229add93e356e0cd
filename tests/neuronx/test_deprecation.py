import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.conftest import problem
from tests.neuronx.deprecated_urls import SINCE

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.neuronx.deprecated_urls")]


def test_deprecated_operation_announces_its_sunset(alice):
    response = alice.get("/v1/legacy-leads")
    assert response.status_code == 200
    assert response["Deprecation"] == f"@{int(SINCE.timestamp())}"
    assert response["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
    assert '</v1/leads>; rel="successor-version"' in response["Link"]
    assert 'rel="deprecation"' in response["Link"]


def test_errors_of_a_deprecated_operation_carry_the_headers_too(anonymous):
    response = anonymous.get("/v1/legacy-leads")
    problem(response, 401, "authentication_failed")
    assert response["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"


def test_the_schema_marks_it_deprecated():
    schema = SchemaGenerator(urlconf="tests.neuronx.deprecated_urls").get_schema(public=True)
    operation = schema["paths"]["/v1/legacy-leads"]["get"]
    assert operation["deprecated"] is True
    assert operation["x-neuronx-operation"]["deprecated"] is True
    assert "Sunset" in operation["responses"]["200"]["headers"]
