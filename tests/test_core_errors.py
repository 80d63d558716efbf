"""engine/errors.py is the only place an error code is spelled, and errors carry their wire meta."""
import ast
from pathlib import Path

from engine.errors import ERRORS_BY_CODE, ProtocolError, ResultTooLarge, TaskError, VersionError, error_from_code

ENGINE = Path(__file__).resolve().parent.parent / "engine"
CODES = set(ERRORS_BY_CODE) | {ProtocolError.code, VersionError.code}


def test_no_error_code_is_spelled_outside_the_errors_module():
    found = []
    for path in ENGINE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Attribute)
                                                   and node.func.attr in ("get", "pop", "setdefault")):  # dict keys
                args = [*node.args, *(k.value for k in node.keywords)]
                found += [f"{path.relative_to(ENGINE)}:{a.lineno} {a.value!r}" for a in args
                          if isinstance(a, ast.Constant) and a.value in CODES]
    assert not found, "write the class's .code (e.g. BusyError.code) instead of: " + ", ".join(found)


def test_a_wire_errors_meta_reaches_the_callers_exception():
    err = error_from_code(ResultTooLarge.code, "too big", task_id="t", meta={"max_message_bytes": 5})
    assert isinstance(err, ResultTooLarge) and err.meta == {"max_message_bytes": 5} and err.task_id == "t"
    unknown = error_from_code("from_the_future", "?", meta=None)
    assert type(unknown) is TaskError and unknown.code == "from_the_future" and unknown.meta == {}

