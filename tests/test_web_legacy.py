"""The legacy JSON endpoint under hostile input: it checks credentials and size before it
decodes, refuses deep nesting and non-finite numbers with 400, and every answer it gives
is strict JSON. Real broker with real workers, real gateway, real HTTP; plus a bounded
hypothesis fuzz of the endpoint."""
import base64
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_helpers import User, jpeg

from engine import errors as E

pytestmark = pytest.mark.timeout(240)

IMAGE_B64 = base64.b64encode(jpeg("coffee.jpg")).decode()
EXAMPLES = 80


@pytest.fixture(scope="module")
def legacy_user(web):
    user = User(web, "legacy")
    yield user
    user.close()


def _no_constants(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict_json(content: bytes):
    """The body decoded as strict JSON (no NaN or Infinity), or an AssertionError."""
    try:
        return json.loads(content, parse_constant=_no_constants)
    except ValueError as exc:
        raise AssertionError(f"not strict JSON ({exc}): {content[:200]!r}") from None


def post(user: User, body: bytes, **headers) -> httpx.Response:
    return user.api.post("/api/v1/legacy", content=body, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("body", [b"[" * 100_000, b"{\"a\":" * 100_000, b"[" * 50_000 + b"]" * 50_000,
                                  b'{"task_id": 1, "task": "grayscale", "image": ' + b"[" * 40 + b"]" * 40 + b"}"],
                         ids=["open-arrays", "open-objects", "closed-arrays", "nested-field"])
def test_deep_nesting_is_a_400_with_a_json_body(legacy_user, body):
    r = post(legacy_user, body)
    assert r.status_code == 400, r.text[:200]
    answer = strict_json(r.content)
    assert answer["code"] == "bad_json" and "deep" in answer["error"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers_are_refused(legacy_user, number):
    body = f'{{"task_id": "t", "task": "grayscale|png", "image": "{IMAGE_B64}", "scale": {number}}}'
    r = post(legacy_user, body.encode())
    assert r.status_code == 400, r.text[:200]
    answer = strict_json(r.content)
    assert answer["code"] == "bad_json" and "finite" in answer["error"]


def test_credentials_are_checked_before_the_body_is_decoded(web):
    with httpx.Client(base_url=web.url, timeout=30.0) as anon:
        r = anon.post("/api/v1/legacy", content=b"[" * 100_000, headers={"Content-Type": "application/json"})
        assert r.status_code == 401
        assert strict_json(r.content)["code"] == E.Unauthorized.code


def test_odd_strings_are_echoed_as_strict_json(legacy_user):
    body = b'{"task_id": "\\ud800", "task": "\\udfff grayscale", "image": "' + IMAGE_B64.encode() + b'"}'
    r = post(legacy_user, body)
    assert r.status_code == 422, r.text[:200]
    assert strict_json(r.content)["task_id"] == "\ud800"


json_leaves = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
               | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
legacy_bodies = st.fixed_dictionaries({
    "task_id": st.text(max_size=16) | st.integers() | json_values,
    "task": st.sampled_from(["grayscale", "grayscale|png", "blur:radius=3|jpeg", "", "no_such_op", "edge:low=-5"])
    | st.text(max_size=24) | json_values,
    "image": st.sampled_from([IMAGE_B64, "", "%%%", base64.b64encode(b"not an image").decode()])
    | st.text(max_size=24) | json_values,
}).map(lambda d: json.dumps(d).encode())
raw_bodies = st.sampled_from([b"", b"null", b"NaN", b"[Infinity]", b'{"task_id": -Infinity}', b"\xff\xfe",
                              b'"\\ud800"', b"1" * 5000, b"[" * 3000, b"{}" * 3]) | st.binary(max_size=64)
bodies = legacy_bodies | json_values.map(lambda v: json.dumps(v).encode()) | raw_bodies


def test_fuzzed_bodies_never_get_a_server_error_and_answers_are_strict_json(legacy_user):
    @given(body=bodies)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(body):
        r = post(legacy_user, body)
        assert r.status_code < 500, (body[:200], r.status_code, r.text[:200])
        answer = strict_json(r.content)
        assert isinstance(answer, dict) and ("image" in answer) == (r.status_code == 200)

    run()
