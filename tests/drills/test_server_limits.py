"""The production server's own limits (`neuronx.gunicorn_conf`): a long request target reaches
the API, which judges it by its content; only one beyond 8 KiB is refused by the server."""

from urllib.parse import quote

from tests.drills.stack import Stack, is_problem


def _target(length: int) -> str:
    """`GET /v1/leads?email=…` with a request target of `length` bytes, percent-encoded
    4-byte characters as a fuzzer sends them."""
    path = "/v1/leads?email="
    value = quote("\U0001f600" * ((length - len(path)) // 12))
    return path + value + "a" * (length - len(path) - len(value))


def test_a_long_query_reaches_the_api_and_an_overlong_one_is_refused(shared_stack: Stack) -> None:
    stack = shared_stack
    key = stack.tenant("drill-limits")
    with stack.client(key) as client:
        # Over gunicorn's default of 4,094 bytes, within the API's server limit: the API answers,
        # naming the value that is too long.
        long = client.get(_target(6000))
        assert is_problem(long, 422, "validation_error"), long.text[:300]
        assert "email" in long.text
        # Beyond 8,190 bytes the server refuses the request line itself.
        overlong = client.get(_target(9000))
        assert overlong.status_code == 414
        assert client.get("/v1/leads").status_code == 200  # and keeps serving
