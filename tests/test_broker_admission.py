"""Admission as an ordered list of checks, each owning its options: an option no check reads
is refused with bad_parameter (it was silently ignored), with a real broker and workers."""
import pytest

from engine.broker.admission import CHECKS, OPTIONS
from engine.errors import BadParameter


def test_every_option_a_client_may_send_is_owned_by_exactly_one_check():
    owners = [name for check in CHECKS for name in check.options]
    assert sorted(owners) == sorted(OPTIONS) == ["cache", "deadline_ms", "trace_id"]


@pytest.mark.parametrize("options, fragment", [
    ({"priority": 5}, "unknown option 'priority' (known: cache, deadline_ms, trace_id)"),
    ({"deadline": 500, "cache": False}, "unknown option 'deadline'"),
    ({"cache": "no"}, "options.cache must be true or false"),
])
def test_an_option_no_check_reads_or_a_bad_cache_flag_is_refused(cluster, jpegs, options, fragment):
    with cluster.client() as client:
        with pytest.raises(BadParameter) as info:
            client.process(jpegs["coins.jpg"], "grayscale", options=options)
        assert fragment in str(info.value)
        after = client.info()
        assert client.process(jpegs["coins.jpg"], "grayscale", options={"cache": False}).format == "jpeg"
    assert sum(w["tasks_done"] for w in after["workers"]) == 0  # no worker saw the refused one
