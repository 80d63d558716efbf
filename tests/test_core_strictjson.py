"""The bounded JSON reader of the compat sockets and the web gateway."""
import pytest

from engine.strictjson import BadJSON, loads


def test_strict_json_refuses_what_would_cost_recursion_or_a_long_scan():
    assert loads(b'{"task_id": 1, "task": "[edge]", "image": "{}"}', max_depth=2)["task"] == "[edge]"
    for raw, why in ((b"[" * 100_000, "holds 100000"), (b"[]" * 20_000, "holds 20000"), (b"[[[[" + b"]]]]", "too deep"),
                     (b'{"a": NaN}', "finite"), (b'{"a": 1e400}', "finite")):
        with pytest.raises(BadJSON, match=why):
            loads(raw, max_depth=3)
