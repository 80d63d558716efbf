"""The wire format: round trips, and every malformed message refused with a reason."""
import msgpack
import pytest

from engine import protocol as P
from engine.errors import ProtocolError, VersionError


@pytest.mark.parametrize("msg, payloads", [
    (P.Ready(capacity=4, host="h", pid=7, ops={"grayscale": {}}), ()),
    (P.Request(task_id="t1", pipeline="grayscale", options={"deadline_ms": 5}), (b"img",)),
    (P.Request(task_id="t2", pipeline=[{"op": "edge", "params": {"low": 5}}]), (b"img",)),
    (P.Reply(task_id="t1", meta={"format": "jpeg", "width": 3}), (b"out",)),
    (P.Error(task_id="t1", code="bad_image", message="corrupt"), ()),
    (P.Heartbeat(sender="abc"), ()),
    (P.Disconnect(reason="bye", drain=True), ()),
    (P.Cancel(task_id="t9"), ()),
    (P.Info(data={"queue_depth": 1}), ()),
])
def test_every_message_type_survives_a_round_trip(msg, payloads):
    decoded, got_payloads = P.decode(P.encode(msg, *payloads))
    assert decoded == msg
    assert got_payloads == list(payloads)


def _raw(header) -> list:
    return [msgpack.packb(header)]


@pytest.mark.parametrize("frames, fragment", [
    ([], "empty message"),
    ([b"\xc1not msgpack"], "not valid msgpack"),
    ([msgpack.packb([1, 2])], "must be a msgpack map"),
    (_raw({"v": 1, "t": 99}), "unknown message type"),
    (_raw({"v": 1, "t": P.REQUEST, "id": "x", "pipeline": "grayscale"}), "must carry 1 payload"),
    (_raw({"v": 1, "t": P.REQUEST, "pipeline": "grayscale"}) + [b"img"], "lacks the required field 'id'"),
    (_raw({"v": 1, "t": P.REQUEST, "id": 5, "pipeline": "grayscale"}) + [b"img"], "'id' must be str"),
    (_raw({"v": 1, "t": P.REQUEST, "id": "", "pipeline": "grayscale"}) + [b"img"], "1 to 128 characters"),
    (_raw({"v": 1, "t": P.READY, "cap": True}), "'cap' must be int"),
    (_raw({"v": 1, "t": P.READY, "cap": -1}), "must not be negative"),
    ([b"\x80" + b"x" * (P.MAX_HEADER_BYTES + 1)], "the limit is"),
])
def test_malformed_messages_are_refused_with_a_reason(frames, fragment):
    with pytest.raises(ProtocolError) as info:
        P.decode(frames)
    assert fragment in str(info.value)


def test_another_protocol_version_is_named_in_the_error():
    with pytest.raises(VersionError) as info:
        P.decode(_raw({"v": 2, "t": P.HEARTBEAT}))
    assert info.value.code == "unsupported_version"
    assert "version 2" in str(info.value)


def test_encode_refuses_the_wrong_number_of_payloads():
    with pytest.raises(ValueError):
        P.encode(P.Request(task_id="t", pipeline="grayscale"))


def test_peek_finds_the_task_id_of_a_message_that_failed_to_decode():
    frames = _raw({"v": 1, "t": P.REQUEST, "id": "abc", "pipeline": "grayscale"})
    assert P.peek_task_id(frames) == "abc"
    assert P.peek_task_id([b"garbage"]) is None


def test_hot_path_frame_builders_write_the_same_bytes_as_encode():
    from engine import protocol as P

    for options in (None, {"deadline_ms": 5}):
        assert P.request_frames("t1", "grayscale", options, b"img") == \
            P.encode(P.Request(task_id="t1", pipeline="grayscale", options=options), b"img")
    assert P.reply_frames("t2", {"width": 3}, b"out") == P.encode(P.Reply(task_id="t2", meta={"width": 3}), b"out")
