"""Pipelines: both forms, validation before decoding, errors that name the problem, the
registry as the web UI and `python -m engine.ops` see it."""
from __future__ import annotations

import json

import pytest

from engine import ops
from engine.errors import BadParameter, PipelineError, UnknownOperation
from engine.ops.__main__ import main as list_main

pytestmark = pytest.mark.timeout(60)

ISSUE_OPERATIONS = {
    "resize", "thumbnail", "crop", "rotate", "flip", "grayscale", "invert", "brightness", "gamma", "blur",
    "median", "bilateral", "sharpen", "threshold", "edge", "sobel", "laplacian", "erode", "dilate", "open",
    "close", "equalize", "clahe", "denoise", "sepia", "hsv", "pixelate", "segmentation", "faces", "text",
    "watermark", "jpeg", "png", "webp",
}


def test_every_operation_the_issue_asks_for_is_registered():
    assert set(ops.REGISTRY) >= ISSUE_OPERATIONS


def test_describe_is_json_and_declares_every_parameter():
    described = json.loads(json.dumps(ops.describe()))
    for name, op in described.items():
        assert op["name"] == name and op["help"] and op["kind"] in ("transform", "format")
        for p in op["params"]:
            assert p["type"] in ("int", "float", "bool", "str") and p["help"]
            assert ("default" in p) != bool(p.get("required"))


def test_text_and_structured_forms_are_the_same_pipeline():
    text = "resize:width=640|sharpen:amount=1.5|webp:quality=80"
    structured = [{"op": "resize", "params": {"width": 640}}, {"op": "sharpen", "params": {"amount": 1.5}},
                  {"op": "webp", "params": {"quality": 80}}]
    assert ops.canonical(text) == ops.canonical(structured)
    assert ops.canonical(ops.canonical(text)) == ops.canonical(text)
    assert ops.canonical("sharpen") == "sharpen:amount=1.0,sigma=1.0,threshold=0"


def test_text_values_with_separators_survive_the_canonical_form():
    pipeline = [{"op": "text", "params": {"text": " 50%, off | today "}}]
    text = ops.canonical(pipeline)
    assert "|" not in text and "text=%2050%25%2C%20off%20%7C%20today%20," in text
    assert ops.parse(text)[0].params["text"] == " 50%, off | today "
    assert ops.parse("text:text=Hello%2C world")[0].params["text"] == "Hello, world"


def test_unknown_operation_lists_the_valid_ones():
    with pytest.raises(UnknownOperation) as err:
        ops.parse("resize:width=10|sparkle")
    assert "'sparkle'" in err.value.message and "valid operations:" in err.value.message
    assert all(name in err.value.message for name in ISSUE_OPERATIONS)


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(BadParameter, match=r"resize: unknown parameter 'widht' — did you mean 'width'\?; "
                                           r"valid parameters: width, height"):
        ops.parse("resize:widht=10")


@pytest.mark.parametrize("pipeline, match", [
    ("", "empty step"), ("flip||flip", "empty step"), ("flip|", "empty step"), ("flip:direction", "key=value"),
    ([], "no steps"), ([{"op": 3}], "'op' name"), ([{"op": "flip", "params": [1]}], "map of names"),
    ([{"op": "flip", "extra": 1}], "unexpected keys"), (42, "text or a list"), ("|".join(["flip"] * 33), "limit is 32"),
    ("x" * 5000, "limit is 4096"),
])
def test_malformed_pipelines(pipeline, match):
    with pytest.raises(PipelineError, match=match):
        ops.parse(pipeline)


def _bad_values(p: dict) -> list:
    """Values that must be refused for a declared parameter, with what the error says."""
    bad = {"int": [("abc", "must be int"), (1.5, "must be int")],
           "float": [("abc", "must be float"), ("nan", "must be float"), ("inf", "must be float")],
           "bool": [("maybe", "must be bool"), (2.5, "must be bool")],
           "str": []}[p["type"]]
    if "min" in p:
        bad.append((p["min"] - 1, ">="))
    if "max" in p:
        bad.append((p["max"] + 1, "<="))
    if "choices" in p:
        bad.append(("not-a-choice" if p["type"] == "str" else 99999, "must be one of"))
    return bad


BAD_CASES = [(name, p["name"], value, match)
             for name, op in ops.describe().items() for p in op["params"] for value, match in _bad_values(p)]


@pytest.mark.parametrize("op, param, value, match", BAD_CASES)
def test_every_bad_parameter_value_is_refused_by_name(op, param, value, match):
    required = {"text": {"text": "hi"}, "watermark": {"mark": "iVBORw0KGgo="}}.get(op, {})
    if op == "resize" and param not in ("width", "height"):
        required = {"width": 10}
    params = {**required, param: value}
    with pytest.raises(BadParameter) as err:
        ops.parse([{"op": op, "params": params}])
    assert f"{op}: parameter {param!r}" in err.value.message and match in err.value.message


def test_bad_parameter_cases_cover_every_declared_parameter():
    covered = {(op, param) for op, param, _, _ in BAD_CASES}
    declared = {(name, p["name"]) for name, op in ops.describe().items() for p in op["params"]
                if p["type"] != "str" or "choices" in p}
    assert covered == declared


@pytest.mark.parametrize("pipeline, match", [
    ("resize", "give width, height or both"), ("median:size=4", "must be odd"),
    ("threshold:method=adaptive,block=10", "must be odd"), ("rotate:background=red", "hex RRGGBB"),
    ("faces:colour=12345", "hex RRGGBB"), ("text:colour=zzzzzz,text=a", "hex RRGGBB"),
    ([{"op": "text", "params": {"text": ""}}], "1 to 200 characters"), ("text", "'text' is required"),
    ("watermark", "'mark' is required"), ("watermark:mark=!!!", "must be base64"),
    ("watermark:mark=aGVsbG8=", "not a PNG"),
])
def test_cross_parameter_and_string_checks_happen_at_parse_time(pipeline, match):
    with pytest.raises(BadParameter, match=match):
        ops.parse(pipeline)


@pytest.mark.parametrize("pipeline, first, later, instead", [
    ("png|grayscale", "png", "grayscale", "grayscale|png"),
    ("jpeg:quality=80|resize:width=64|webp", "jpeg", "resize", "resize:width=64|jpeg:quality=80|webp"),
    ([{"op": "json"}, {"op": "faces"}], "json", "faces", "faces|json"),
])
def test_a_format_step_before_another_step_is_refused_with_the_order_to_write(pipeline, first, later, instead):
    """A format step only chooses the encoding, after every step: in the middle it would do
    nothing where it stands, so the registry and the declared schema both refuse it."""
    from engine import pipeline_syntax as syntax

    schema = json.loads(json.dumps(ops.describe()))  # as workers declare it: each operation's "kind"
    for check in (ops.parse, lambda p: syntax.check(p, schema)):
        with pytest.raises(PipelineError) as err:
            check(pipeline)
        assert err.value.code == "bad_pipeline"
        assert f"'{first}' comes before '{later}'" in err.value.message
        assert "format steps (jpeg, json, png, webp) go last and choose the output format" in err.value.message
        assert err.value.message.endswith(f"write {instead!r}")
    assert ops.parse(instead) and syntax.check(instead, schema)
    assert [s.op.name for s in ops.parse("faces|png|json")] == ["faces", "png", "json"]  # the last one chooses
    del schema["png"]["kind"]  # a worker too old to declare kinds: the broker cannot tell, the worker refuses
    assert syntax.check("png|grayscale", schema)


def test_a_bad_pipeline_is_refused_before_the_image_is_read():
    with pytest.raises(UnknownOperation):
        ops.run(b"not an image at all", "flip|nope")


def test_text_values_are_typed():
    (step,) = ops.parse("resize:width=64,upscale=no,mode=fill,height=32")
    assert step.params == {"width": 64, "height": 32, "mode": "fill", "interpolation": "auto", "upscale": False}


def test_module_lists_every_operation(capsys):
    assert list_main([]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n{name} " in "\n" + listing for name in ISSUE_OPERATIONS)
    assert list_main(["--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(ops.REGISTRY)


def test_module_shows_the_operations_named_in_aligned_columns(capsys):
    assert list_main(["resize", "text"]) == 0
    listing = capsys.readouterr().out
    blocks = [b.splitlines() for b in listing.strip().split("\n\n")]
    assert [b[0].split()[0] for b in blocks] == ["resize", "text"]  # only those, no syntax preamble
    for block in blocks:
        head, rows = block[1], block[2:]
        assert len(rows) == len(ops.REGISTRY[block[0].split()[0]].params)
        op = ops.REGISTRY[block[0].split()[0]]
        for column in ("type", "default", "range"):  # no cell runs into the next column
            at = head.index(column)
            assert all(row[at - 2:at] == "  " for row in rows), (column, block)
        starts = {row.index(p.help) for row, p in zip(rows, op.params)}  # the help column is aligned too
        assert len(starts) == 1, block
    with pytest.raises(SystemExit) as stopped:
        list_main(["resise"])
    assert stopped.value.code == 2 and "did you mean 'resize'" in capsys.readouterr().err


PARITY_CASES = ["grayscale", "resize:width=640|sharpen:amount=1.5|webp:quality=80", "jpeg:quality=80,subsampling=420",
                "text:text=Hello%2C world", "edge:low=50,high=150.5", "grayscale|sparkle", "greyscale", "edge:low=-5",
                "edge:low=banana", "edge:lo=5", "grayscale||png", "", [{"op": "resize", "params": {"width": 64}}],
                [{"op": "nope"}], "flip:mode=diagonal", "png:compression=9", "png|grayscale",
                "jpeg:quality=80|resize:width=64|png", [{"op": "webp"}, {"op": "flip"}], "grayscale|png|json"]


@pytest.mark.parametrize("pipeline", PARITY_CASES, ids=str)
def test_checking_against_the_declared_schema_agrees_with_the_registry(pipeline):
    """What the broker checks (the workers' declared schema, no OpenCV) gives the same
    canonical text, or the same error, as the registry a worker runs."""
    from engine import pipeline_syntax as syntax

    schema = json.loads(json.dumps(ops.describe()))  # as it crosses the wire in READY
    try:
        expected = ops.canonical(pipeline)
    except PipelineError as exc:
        with pytest.raises(type(exc)) as got:
            syntax.check(pipeline, schema)
        assert str(got.value) == str(exc)
    else:
        assert syntax.canonical(syntax.check(pipeline, schema)) == expected


@pytest.mark.parametrize("pipeline", PARITY_CASES, ids=str)
def test_the_check_the_gateway_and_the_command_line_make_from_info_agrees_with_the_registry(pipeline):
    """``offered(info).check``, what the web gateway and the command line run on the broker's
    INFO answer, gives the registry's canonical text, or its error with the same message."""
    from engine import pipeline_syntax as syntax

    offer = syntax.offered(json.loads(json.dumps({"ops": ops.describe(), "ops_differ": []})))
    try:
        expected = ops.canonical(pipeline)
    except PipelineError as exc:
        with pytest.raises(type(exc)) as got:
            offer.check(pipeline)
        assert str(got.value) == str(exc)
    else:
        checked = offer.check(pipeline)
        assert checked.text == expected and checked.steps is not None


def test_when_info_cannot_say_only_the_syntax_is_checked_and_the_broker_decides():
    from engine import pipeline_syntax as syntax

    unreadable = {"grayscale": {"params": "a newer engine's form"}}
    for info, why in (({"ops": {"grayscale": {}}, "truncated": True}, "cut to operation names"),
                      ({"ops": {}}, "no connected worker"), (None, "no connected worker"),
                      ({"ops": unreadable}, "")):
        offer = syntax.offered(info)
        assert why in offer.note
        assert offer.check(" grayscale:sparkle=1 ") == ("grayscale:sparkle=1", None)  # as written
        with pytest.raises(PipelineError, match="empty step"):
            offer.check("grayscale||png")
    assert syntax.check_declarations("grayscale", {}) == (None, None)
    assert syntax.check_declarations("grayscale", {1: unreadable}) == (None, None)  # its workers decide
    with pytest.raises(UnknownOperation, match="did you mean 'grayscale'"):  # what it can read, it checks
        syntax.offered({"ops": unreadable}).check("greyscale")


def test_a_worker_parses_each_pipeline_text_once_and_remembers_a_bounded_number():
    from engine.ops import pipeline as pl

    pl._parse_text.cache_clear()
    text = "resize:width=64|sharpen:amount=1.5|jpeg:quality=80"
    first = ops.parse(text)
    again = ops.parse(text)
    assert again == first and again is not first  # equal steps; the caller gets its own list
    assert pl._parse_text.cache_info().hits == 1
    for _ in range(2):  # an error is raised each time, never remembered
        with pytest.raises(UnknownOperation):
            ops.parse("sparkle")
    long_text = "grayscale" + " " * pl.MEMO_MAX_CHARS  # too long to keep
    assert ops.parse(long_text) == ops.parse("grayscale")
    assert pl._parse_text.cache_info().currsize == 2  # the first text and "grayscale"
    for width in range(pl.MEMO_TEXTS + 50):  # a peer sending endless distinct pipelines
        ops.parse(f"resize:width={width + 1}")
    assert pl._parse_text.cache_info().currsize == pl.MEMO_TEXTS
