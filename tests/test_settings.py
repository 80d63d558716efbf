"""engine/settings.py and the command lines built on it: every field of the broker's, the
worker's and the web gateway's settings dataclass is set by a flag (and its environment
variable), or says why none sets it, so a new field cannot silently lack a flag."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.broker.config import BrokerConfig
from engine.settings import Flag, NoFlag, field_flags
from engine.web.settings import WebSettings
from engine.worker.config import WorkerConfig

# module -> (its settings dataclass, the name of the function that builds it from parsed flags)
ROLES = {"engine.broker": (BrokerConfig, "broker_config"), "engine.worker": (WorkerConfig, "worker_config"),
         "engine.web": (WebSettings, "web_settings")}


@pytest.fixture(autouse=True)
def no_engine_env(monkeypatch):
    """Flags take their defaults from ENGINE_* variables: none may leak in from outside."""
    for name in [n for n in os.environ if n.startswith("ENGINE_")]:
        monkeypatch.delenv(name)


def settings_from(module: str, argv: list[str]):
    _cls, build = ROLES[module]
    main = importlib.import_module(f"{module}.__main__")
    return getattr(main, build)(main.parse_args(argv))


def other_value(spec: Flag) -> tuple[list[str], str, object]:
    """Flags giving ``spec`` a value other than its default; the same as an environment value;
    and the value the field should then hold."""
    if isinstance(spec.default, bool):
        return ([f"--no-{spec.name[2:]}"] if spec.default else [spec.name]), str(int(not spec.default)), \
            not spec.default
    if spec.choices:
        text = next(c for c in spec.choices if c != spec.default)
        return [spec.name, text], text, text
    if isinstance(spec.default, Path):
        return [spec.name, "/tmp/elsewhere"], "/tmp/elsewhere", Path("/tmp/elsewhere")
    if isinstance(spec.default, int):
        value = spec.default + 3
        return [spec.name, str(value)], str(value), value * spec.scale
    if isinstance(spec.default, float):
        value = spec.default + 1.5
        return [spec.name, str(value)], str(value), value
    assert isinstance(spec.default, str), spec
    return [spec.name, "tcp://127.0.0.1:7"], "tcp://127.0.0.1:7", "tcp://127.0.0.1:7"


@pytest.mark.parametrize("module", ROLES)
def test_every_settings_field_has_a_flag_or_says_why_not(module):
    cls, _ = ROLES[module]
    specs = field_flags(cls)
    undeclared = sorted(name for name, spec in specs.items() if spec is None)
    assert not undeclared, f"{cls.__name__}: declare a flag (setting) or why none (fixed) for {undeclared}"
    assert all(spec.why for spec in specs.values() if isinstance(spec, NoFlag))
    assert all(spec.help and spec.env.startswith("ENGINE_") for spec in specs.values() if isinstance(spec, Flag))
    flags = [spec.name for spec in specs.values() if isinstance(spec, Flag)]
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize("module", ROLES)
def test_without_flags_the_command_line_builds_the_dataclass_defaults(module):
    cls, _ = ROLES[module]
    assert settings_from(module, []) == cls()


@pytest.mark.parametrize("module", ROLES)
def test_each_flag_and_its_variable_land_in_their_field(module, monkeypatch):
    cls, _ = ROLES[module]
    defaults = cls()
    for name, spec in field_flags(cls).items():
        if not isinstance(spec, Flag):
            continue
        argv, env_value, want = other_value(spec)
        assert want != getattr(defaults, name), name
        assert getattr(settings_from(module, argv), name) == want, f"{module} {' '.join(argv)}"
        monkeypatch.setenv(spec.env, env_value)
        assert getattr(settings_from(module, []), name) == want, f"{spec.env}={env_value}"
        monkeypatch.delenv(spec.env)


def test_the_broker_derives_its_endpoints_and_the_unread_drop_limit():
    public = settings_from("engine.broker", ["--public"])
    assert (public.front, public.back) == ("tcp://*:5555", "tcp://*:5556")
    unread = settings_from("engine.broker", ["--client-unread-mb", "5", "--io-threads", "-2"])
    assert (unread.unread_refuse_bytes, unread.unread_drop_bytes, unread.io_threads) == (5 * 2**20, 20 * 2**20, 0)


def test_importing_the_operations_registers_no_test_operation_whatever_the_environment():
    """Only a worker run with --test-ops offers sleep, crash and hang (engine/ops/testing.py)."""
    code = ("import engine.ops as ops; before = {'sleep', 'crash', 'hang'} & set(ops.REGISTRY); "
            "from engine.ops import testing; testing.register(); testing.register(); "
            "print(sorted(before), sorted({'sleep', 'crash', 'hang'} & set(ops.REGISTRY)))")
    env = {**os.environ, "ENGINE_TEST_OPS": "1", "ENGINE_WORKER_TEST_OPS": "1",
           "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "['crash',", "'hang',", "'sleep']"]
    assert settings_from("engine.worker", ["--test-ops"]).test_ops and not WorkerConfig().test_ops
