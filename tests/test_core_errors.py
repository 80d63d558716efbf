"""engine/errors.py is the only place an error code is spelled, every exception is under its
root, and errors carry their wire meta."""
import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import engine
from engine import errors
from engine.errors import (
    CLASSES_BY_CODE,
    CODES,
    ERRORS_BY_CODE,
    EngineError,
    ProtocolError,
    ResultTooLarge,
    TaskError,
    TransientError,
    VersionError,
    error_from_code,
    is_retryable,
)

ENGINE = Path(__file__).resolve().parent.parent / "engine"
CLASS_CODES = set(CLASSES_BY_CODE)  # distinctive words: spelled nowhere else, in any call
ERRORS_MODULE_NAMES = {"E", "e", "errors"}  # how modules import engine.errors


def _sources():
    for path in sorted(ENGINE.rglob("*.py")):
        if path.name != "errors.py":
            yield path, ast.parse(path.read_text(), str(path))


def test_no_error_code_is_spelled_outside_the_errors_module():
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Attribute)
                                                   and node.func.attr in ("get", "pop", "setdefault")):  # dict keys
                args = [*node.args, *(k.value for k in node.keywords)]
                found += [f"{path.relative_to(ENGINE)}:{a.lineno} {a.value!r}" for a in args
                          if isinstance(a, ast.Constant) and a.value in CLASS_CODES]
    assert not found, "write the class's .code (e.g. BusyError.code) instead of: " + ", ".join(found)


def _code_slots() -> dict[str, set[int]]:
    """Callable name -> positions of its ``code`` argument (functions, __init__s, dataclass fields)."""
    slots: dict[str, set[int]] = {}
    for _path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                if "code" in names:
                    skip = 1 if names[0] in ("self", "cls") else 0
                    slots.setdefault(node.name, set()).add(names.index("code") - skip)
            elif isinstance(node, ast.ClassDef):
                body_fields = [s.target.id for s in node.body if isinstance(s, ast.AnnAssign)
                               and isinstance(s.target, ast.Name) and "ClassVar" not in ast.unparse(s.annotation)]
                init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
                if init is not None:
                    names = [a.arg for a in init.args.args[1:]]
                    if "code" in names:
                        slots.setdefault(node.name, set()).add(names.index("code"))
                elif "code" in body_fields:
                    slots.setdefault(node.name, set()).add(body_fields.index("code"))
    return slots


def _code_values(tree: ast.AST, slots: dict[str, set[int]]):
    """Every expression the engine passes, sends or stores as an error code."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            for i in slots.get(name, ()):
                if i < len(node.args):
                    yield node.args[i]
            yield from (k.value for k in node.keywords if k.arg in ("code", "error_code"))
            if name == "getattr" and len(node.args) == 3 and getattr(node.args[1], "value", None) == "code":
                yield node.args[2]  # the code of an error that has none
        elif isinstance(node, ast.Dict):
            yield from (v for k, v in zip(node.keys, node.values, strict=True)
                        if isinstance(k, ast.Constant) and k.value in ("code", "error_code"))
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, (ast.Name, ast.Attribute)) and getattr(t, "id", getattr(t, "attr", None)) == "code"
                for t in node.targets):
            yield node.value


def _resolve(expr: ast.expr, imported: dict[str, str]):
    """(value, where it is defined) for a code written as a name of engine.errors, else None."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        owner = expr.value.id
        if owner in ERRORS_MODULE_NAMES:
            return getattr(errors, expr.attr, None)
        cls = getattr(errors, imported.get(owner, owner), None) if owner in imported or owner in dir(errors) else None
        if inspect.isclass(cls) and expr.attr == "code":
            return cls.code
    if isinstance(expr, ast.Name) and expr.id in imported:
        return getattr(errors, imported[expr.id], None)
    return None


def test_every_code_the_engine_uses_is_defined_in_the_errors_module():
    """Literal codes anywhere a code is passed, sent or stored fail (``bad_base64`` in the legacy
    endpoint did), and so does a name of engine.errors that is not one of ``CODES``."""
    slots = _code_slots()
    assert {"WebError", "error_json", "error_frames", "Verdict", "finish_error", "reply_error"} <= set(slots)
    spelled, unknown, checked = [], [], 0
    for path, tree in _sources():
        imported = {a.asname or a.name: a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and (n.module or "").endswith("errors") for a in n.names}
        for expr in _code_values(tree, slots):
            where = f"{path.relative_to(ENGINE)}:{expr.lineno}"
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                spelled.append(f"{where} {expr.value!r}")
                continue
            value = _resolve(expr, imported)
            if value is not None or (isinstance(expr, ast.Attribute) and getattr(expr.value, "id", "") in
                                     ERRORS_MODULE_NAMES):
                checked += 1
                if value not in CODES:
                    unknown.append(f"{where} {ast.unparse(expr)}")
        for node in ast.walk(tree):  # errors.X, E.X: the name exists
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in ERRORS_MODULE_NAMES and not hasattr(errors, node.attr)):
                unknown.append(f"{path.relative_to(ENGINE)}:{node.lineno} {ast.unparse(node)}")
    assert not spelled, "define the code in engine/errors.py and use its name: " + ", ".join(spelled)
    assert not unknown, "not a code of engine/errors.py: " + ", ".join(unknown)
    assert checked > 50  # the scan sees the engine's codes (WebError's, Verdict's, error_json's ...)


def test_the_codes_are_the_documented_ones():
    protocol_md = (ENGINE.parent / "docs" / "protocol.md").read_text()
    assert all(f"`{code}`" in protocol_md for code in {*ERRORS_BY_CODE, ProtocolError.code,
                                                      VersionError.code} - {TaskError.code})
    web_md = (ENGINE.parent / "docs" / "web.md").read_text()
    assert all(f"`{code}`" in web_md for code in {*errors.OTHER_CODES} - {errors.READ_FAILED, errors.WRITE_FAILED})
    assert len(CODES) == len(CLASSES_BY_CODE) + len(errors.OTHER_CODES)  # no code has two meanings


def _engine_modules():
    for info in pkgutil.walk_packages(engine.__path__, "engine."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            yield importlib.import_module(info.name)


def test_every_exception_class_of_the_engine_is_under_the_root():
    classes = [obj for mod in _engine_modules() for obj in vars(mod).values()
               if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__]
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, EngineError)]
    assert not outside, "derive from engine.errors.EngineError (or a family under it): " + ", ".join(outside)
    names = {c.__qualname__ for c in classes}
    assert {"CompatError", "BadJSON", "RequestError", "PlanError", "ShmError", "WebError", "LoginLimited",
            "AccountError", "NameTaken"} <= names  # the scan reaches every module
    # ... and the Python families callers catch them by still hold
    from engine.broker.compat import CompatError
    from engine.shm import ShmError
    from engine.strictjson import BadJSON
    assert issubclass(CompatError, ValueError) and issubclass(BadJSON, ValueError) and issubclass(ShmError, OSError)
    assert issubclass(errors.TaskTimeout, TimeoutError)


def test_the_retry_rule_is_the_transient_family():
    assert {c for c in CODES if is_retryable(c)} == {"busy", "worker_crashed", "timeout", "broker_unavailable"}
    for code, cls in CLASSES_BY_CODE.items():
        assert is_retryable(code) == issubclass(cls, TransientError), code
    assert not is_retryable(errors.QuotaError.code)  # the web's storage quota never clears by itself
    assert not is_retryable(errors.TaskFailed.code)  # what the broker answers once retries are spent
    assert not is_retryable("from_the_future")
    assert isinstance(errors.BrokerUnavailable("x"), TransientError)
    assert isinstance(error_from_code("busy", "full"), TransientError)


def test_a_wire_errors_meta_reaches_the_callers_exception():
    err = error_from_code(ResultTooLarge.code, "too big", task_id="t", meta={"max_message_bytes": 5})
    assert isinstance(err, ResultTooLarge) and err.meta == {"max_message_bytes": 5} and err.task_id == "t"
    unknown = error_from_code("from_the_future", "?", meta=None)
    assert type(unknown) is TaskError and unknown.code == "from_the_future" and unknown.meta == {}
