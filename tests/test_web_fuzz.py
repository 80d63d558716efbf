"""A schemathesis fuzz of the OpenAPI description: no request, however odd, gets a 5xx.

Real gateway, real broker with real workers (a random body sent to /process reaches a
worker and must come back as 415, not 500). Bounded: a few examples per operation.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from web_helpers import User

pytestmark = pytest.mark.timeout(120)
EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def fuzzer(web):
    user = User(web, "fuzzer")
    yield user
    user.close()


def operations():
    from engine.web.openapi import openapi_document

    schema = schemathesis.openapi.from_dict(openapi_document())
    return [result.ok() for result in schema.get_all_operations()]


# schemathesis's own pytest plugin does not work with pytest 9 yet, so each operation is
# a parametrized test that runs the operation's hypothesis strategy itself.
@pytest.mark.parametrize("operation", operations(), ids=lambda op: op.label)
def test_no_request_gets_a_server_error(operation, web, fuzzer):
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        # The browser session and its CSRF header: a fuzzed DELETE /tokens/{id} cannot lock us out.
        response = case.call(base_url=web.url, cookies=dict(fuzzer.browser.cookies),
                             headers={"X-CSRF-Token": fuzzer.csrf}, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])

    run()


def test_the_served_description_is_the_one_fuzzed(web, fuzzer):
    from engine.web.openapi import openapi_document

    assert fuzzer.browser.get("/api/v1/openapi.json").json() == openapi_document()

