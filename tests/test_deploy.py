"""deploy/: the container recipe, compose file, Kubernetes manifests, KEDA ScaledObject,
alert rules and Grafana dashboard, checked offline (no container daemon or cluster here).

- Kubernetes objects: kubernetes-validate's bundled JSON schemas of Kubernetes 1.33, strict
  (an unknown field is an error).
- The KEDA ScaledObject (a CRD, not in those schemas): a JSON schema written here from the
  fields of KEDA's CRD (config/crd/bases/keda.sh_scaledobjects.yaml, keda.sh/v1alpha1) and
  the prometheus scaler's documented metadata keys, unknown fields refused.
- Every engine command line (compose, manifests, deploy/make-keys.sh) goes through the
  engine's own argparse parsers; every ENGINE_* variable is one a parser or module reads.
- Every PromQL expression (alerts, dashboard, KEDA query) names only metrics that
  engine.metrics exports; with promtool on PATH (Debian package "prometheus") the rule
  file, the Prometheus config and the dashboard's expressions also pass its parser.
- deploy/make-keys.sh runs, and its keys serve a real broker, worker and client.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import jsonschema
import kubernetes_validate
import numpy as np
import pytest
import yaml  # PyYAML: installed with kubernetes-validate
from cluster_helpers import DATA, Cluster

from engine.metrics import ENV_METRICS_LISTEN, BrokerMetrics, WorkerMetrics, WorkerRow
from engine.security import ENV_BROKER_KEY, ENV_CLIENT_KEY, PeerKeys

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33"
PROMTOOL = shutil.which("promtool")


def k8s_documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# ---- Kubernetes ------------------------------------------------------------------------------------
def test_kubernetes_manifests_validate_against_the_kubernetes_schemas():
    checked = []
    for name, doc in k8s_documents():
        if doc["kind"] in ("ScaledObject", "Kustomization"):
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked.append((name, doc["kind"], doc["metadata"]["name"]))
    kinds = {(kind, obj) for _, kind, obj in checked}
    assert {("Deployment", "engine-broker"), ("Service", "engine-broker"), ("Deployment", "engine-worker"),
            ("Deployment", "engine-web"), ("Service", "engine-web")} <= kinds


def test_the_validator_does_reject_a_mistake():
    deployment = k8s_kind("Deployment")[0]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["comand"] = ["python"]  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}


def test_pods_run_as_non_root_and_keys_come_from_secrets():
    secrets = set()
    for deployment in k8s_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for volume in pod["volumes"]:
            if "secret" in volume:
                secrets.add(volume["secret"]["secretName"])
                assert volume["secret"]["defaultMode"] & 0o002 == 0  # never world-writable
    assert {"engine-broker-key", "engine-worker-key", "engine-web-key", "engine-allowed-clients",
            "engine-allowed-workers"} <= secrets


# ---- KEDA ----------------------------------------------------------------------------------------
INT32 = {"type": "integer", "minimum": -2**31, "maximum": 2**31 - 1}
KEDA_SCALEDOBJECT_SCHEMA = {  # from keda.sh_scaledobjects.yaml (v1alpha1), the fields we may use
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                   "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                                  "apiVersion": {"type": "string"},
                                                  "envSourceContainerName": {"type": "string"}}},
                "pollingInterval": INT32, "cooldownPeriod": INT32, "initialCooldownPeriod": INT32,
                "idleReplicaCount": INT32, "minReplicaCount": INT32, "maxReplicaCount": INT32,
                "fallback": {"type": "object", "required": ["failureThreshold", "replicas"],
                             "properties": {"failureThreshold": INT32, "replicas": INT32,
                                            "behavior": {"type": "string"}}},
                "advanced": {"type": "object", "additionalProperties": False, "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "scalingModifiers": {"type": "object"},
                    "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False, "properties": {
                        "name": {"type": "string"},
                        "behavior": {"type": "object", "additionalProperties": False, "properties": {
                            d: {"type": "object", "additionalProperties": False, "properties": {
                                "stabilizationWindowSeconds": INT32, "selectPolicy": {"type": "string"},
                                "policies": {"type": "array", "items": {
                                    "type": "object", "required": ["periodSeconds", "type", "value"],
                                    "additionalProperties": False,
                                    "properties": {"periodSeconds": INT32, "type": {"enum": ["Pods", "Percent"]},
                                                   "value": INT32}}}}}
                            for d in ("scaleUp", "scaleDown")}}}}}},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["metadata", "type"], "additionalProperties": False,
                    "properties": {"type": {"type": "string"}, "name": {"type": "string"},
                                   "metricType": {"enum": ["Value", "AverageValue", "Utilization"]},
                                   "useCachedMetrics": {"type": "boolean"},
                                   "authenticationRef": {"type": "object", "required": ["name"]},
                                   "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}}},
            },
        },
    },
}
PROMETHEUS_SCALER_KEYS = {"serverAddress", "query", "threshold", "activationThreshold", "namespace", "customHeaders",
                          "ignoreNullValues", "unsafeSsl", "queryParameters", "timeout"}


def test_keda_scaledobject_has_only_fields_of_kedas_crd_and_scales_the_worker_deployment():
    [scaled] = k8s_kind("ScaledObject")
    jsonschema.validate(scaled, KEDA_SCALEDOBJECT_SCHEMA)
    spec = scaled["spec"]
    [worker] = [d for d in k8s_kind("Deployment") if d["metadata"]["name"] == spec["scaleTargetRef"]["name"]]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert {"serverAddress", "query", "threshold"} <= set(meta) <= PROMETHEUS_SCALER_KEYS
    assert "engine_broker_queue_depth" in metric_names(meta["query"])
    assert metric_names(meta["query"]) <= exported_metrics()
    # the threshold is one worker pod's task slots, as its own command line makes them
    from engine.worker.__main__ import parse_args
    from engine.worker.config import WorkerConfig

    args = parse_args(engine_args(worker["spec"]["template"]["spec"]["containers"][0]["command"])[1])
    assert float(meta["threshold"]) == WorkerConfig(processes=args.processes, prefetch=args.prefetch).slots
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


def test_the_keda_schema_rejects_a_misspelt_field():
    [scaled] = k8s_kind("ScaledObject")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, KEDA_SCALEDOBJECT_SCHEMA)


# ---- command lines ------------------------------------------------------------------------------------
def engine_args(command: list[str]) -> tuple[str, list[str]]:
    """("engine.broker", [flags...]) from ["python", "-m", "engine.broker", ...]."""
    assert command[:2] == ["python", "-m"] and command[2].startswith("engine."), command
    return command[2], command[3:]




def parse_with(module: str, args: list[str], env: dict[str, str], monkeypatch) -> tuple[object, set[str]]:
    """Parse ``args`` with the module's own parser under ``env``; also return the ENGINE_*
    variables that parser reads (named in its --help)."""
    import contextlib
    import importlib
    import io

    for name in [n for n in os.environ if n.startswith("ENGINE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    main = importlib.import_module(f"{module}.__main__")
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        main.parse_args(["--help"])
    reads = set(re.findall(r"\benv (ENGINE_[A-Z0-9_]+)", help_text.getvalue()))
    try:
        parsed = main.parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"python -m {module} {shlex.join(args)}: the engine refuses it (exit {exc.code})")
    return parsed, reads


# Variables a role reads outside its flags: the client keys (engine.security.client_keys,
# used by the web gateway) and the metrics endpoint (engine.metrics.add_flag, which the
# broker and worker command lines add when metrics are wired).
EXTRA_ENVS = {"engine.web": {ENV_CLIENT_KEY, ENV_BROKER_KEY}, "engine.broker": {ENV_METRICS_LISTEN},
              "engine.worker": {ENV_METRICS_LISTEN}}


def all_commands() -> list[tuple[str, list[str], dict[str, str]]]:
    """(where, command, environment) of every engine process in compose and the manifests."""
    found = []
    for name, service in compose()["services"].items():
        command = service.get("command")
        if command and command[:2] == ["python", "-m"]:
            found.append((f"compose:{name}", command, {k: str(v) for k,
                                                       v in (service.get("environment") or {}).items()}))
    for deployment in k8s_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            found.append((f"k8s:{deployment['metadata']['name']}", container["command"],
                          {e["name"]: e["value"] for e in container.get("env", [])}))
    return found


def test_every_command_line_is_a_real_engine_command_with_real_flags(monkeypatch):
    commands = all_commands()
    assert {m for _, c, _ in commands for m in [engine_args(c)[0]]} == {"engine.broker", "engine.worker", "engine.web"}
    parsed = {}
    for where, command, env in commands:
        module, args = engine_args(command)
        result, reads = parse_with(module, args, env, monkeypatch)
        unknown = {n for n in env if n.startswith("ENGINE_")} - reads - EXTRA_ENVS.get(module, set())
        assert not unknown, f"{where}: {sorted(unknown)} is read by nothing in {module}"
        parsed[where] = result
    for prefix, broker_host in (("compose", "broker"), ("k8s", "engine-broker")):
        broker = parsed[f"{prefix}:{broker_host}"]
        assert broker.secure and broker.keys_dir and broker.public  # CURVE, and reachable from other pods
        worker = parsed[f"{prefix}:{'worker' if prefix == 'compose' else 'engine-worker'}"]
        web = parsed[f"{prefix}:{'web' if prefix == 'compose' else 'engine-web'}"]
        assert worker.connect == f"tcp://{broker_host}:5556" and web.broker == f"tcp://{broker_host}:5555"
        assert worker.key and worker.broker_key


def test_make_keys_script_lines_are_real_key_commands():
    from engine.keys import parse_args

    lines = [line.strip() for line in (DEPLOY / "make-keys.sh").read_text().splitlines()
             if line.strip().startswith("python -m engine.keys")]
    assert len(lines) >= 5
    for line in lines:
        words = shlex.split(line.replace('"$OUT', '"/tmp/out'))
        parse_args(words[3:])  # exits with a message on an unknown command or flag


# ---- compose ---------------------------------------------------------------------------------------------
def test_compose_starts_a_broker_two_workers_and_the_web_each_with_only_its_own_keys(tmp_path):
    services = compose()["services"]
    assert services["worker"]["deploy"]["replicas"] == 2
    layout = make_keys(tmp_path)
    role_files = {role: {p.name for p in (layout / role).iterdir() if p.is_file()} for role in ("broker", "worker",
                                                                                                "web")}
    for name, role in (("broker", "broker"), ("worker", "worker"), ("web", "web")):
        service = services[name]
        [keys] = [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == "/keys"]
        assert keys["source"] == "keys" and keys["read_only"] is True and keys["volume"]["subpath"] == role
        assert "profiles" not in service  # started by a plain "up"
        referenced = {Path(w).name for w in [*service["command"], *map(str,
                                                                       (service.get("environment") or {}).values())]
                      if w.startswith("/keys/")}
        assert referenced <= role_files[role], f"{name} names {referenced - role_files[role]}, not made for it"
        secrets = {f for f in role_files[role] if f.endswith(".key_secret")}
        assert len(secrets) == 1 and (role == "broker" or secrets <= referenced)
    assert services["keys"]["command"][:2] == ["sh", "/opt/engine/make-keys.sh"]


def test_dockerfile_installs_everything_at_build_time_and_runs_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith(("#", " "))]
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    for op, arg in instructions:
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert op != "ADD", "ADD may fetch URLs; use COPY"
    assert not re.search(r"\b(curl|wget)\b", text)
    assert re.search(r"^CMD \[", text, re.M)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "*" in ignore and "!engine/" in ignore and "!deploy/make-keys.sh" in ignore


def make_keys(out: Path) -> Path:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", str(DEPLOY / "make-keys.sh"), str(out)], env=env, check=True, timeout=60,
                   capture_output=True)
    return out


class CurveCluster(Cluster):
    """The compose topology as local processes on loopback: keys from deploy/make-keys.sh."""

    def __init__(self, keys: Path) -> None:
        super().__init__(local_workers=0, extra=["--secure", "--keys-dir", str(keys / "broker")])
        self.keys = keys
        self.client_options = {"keys": PeerKeys.load(keys / "web" / "web.key_secret", keys / "web" / "broker.key")}

    def info(self, timeout_s: float = 5.0) -> dict:
        with self.client(timeout_s=timeout_s) as client:
            return client.info(timeout_s)


def test_the_keys_deploy_make_keys_makes_serve_a_real_broker_worker_and_client(tmp_path):
    keys = make_keys(tmp_path / "keys")
    for secret in keys.glob("*/*.key_secret"):
        assert secret.stat().st_mode & 0o077 == 0
    cluster = CurveCluster(keys)
    try:
        cluster.start_broker(wait_slots=0)
        cluster.add_worker(1, "--key", str(keys / "worker" / "worker.key_secret"),
                           "--broker-key", str(keys / "worker" / "broker.key"))
        cluster.wait_ready(1)
        photo = (DATA / "astronaut.jpg").read_bytes()
        with cluster.client() as client:
            result = client.process(photo, "grayscale|png", timeout_s=60)
        got = cv2.imdecode(np.frombuffer(result.data, np.uint8), cv2.IMREAD_UNCHANGED)
        expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        assert got.shape == expected.shape
        assert cv2.PSNR(got, expected) > 40
    finally:
        cluster.stop()


# ---- metrics in alerts, dashboard and KEDA ------------------------------------------------------------------
def exported_metrics() -> set[str]:
    """Every sample name the broker's and a worker's /metrics can show."""
    broker, worker = BrokerMetrics(), WorkerMetrics()
    broker.publish_state(1, 1, [WorkerRow("h", 1, 1, 0.0)], cache_bytes=1, cache_entries=1)
    names = set()
    for registry in (broker.registry, worker.registry):
        for fam in registry.collect():
            names.update(s.name for s in fam.samples)
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or values, durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, including [$__rate_interval]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        if match.group(2) is None and match.group(1).lower() not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


def test_metric_name_extraction_finds_names_and_only_names():
    assert metric_names('sum by (code) (rate(engine_broker_tasks_failed_total{code!~"a|b"}[$__rate_interval])) > 0') \
        == {"engine_broker_tasks_failed_total"}
    assert metric_names("rate(a_total[5m]) * on (instance) group_left (role) b_info / clamp_min(c, 1e-9)") \
        == {"a_total", "b_info", "c"}


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_cover_queue_flapping_and_errors_with_metrics_the_engine_exports():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert {"EngineQueueGrowing", "EngineWorkersFlapping", "EngineHighErrorRate", "EngineNoWorkers"} <= set(names)
    exported = exported_metrics()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used = metric_names(rule["expr"])
        assert used and used <= exported, f"{rule['alert']}: {used - exported} is not exported"


def dashboard_targets() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "engine.json").read_text())
    return [(panel["title"], t["expr"]) for panel in dash["panels"] for t in panel.get("targets", [])]


def test_grafana_dashboard_uses_only_metrics_the_engine_exports():
    dash = json.loads((DEPLOY / "grafana" / "engine.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in dash["panels"])
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    exported = exported_metrics()
    targets = dashboard_targets()
    assert len(targets) >= 20
    for title, expr in targets:
        used = metric_names(expr)
        assert used and used <= exported, f"panel {title!r}: {used - exported} is not exported"
    used_anywhere = set().union(*(metric_names(e) for _, e in targets))
    for wanted in ("engine_broker_queue_depth", "engine_broker_task_duration_seconds_bucket",
                   "engine_broker_worker_utilisation_ratio", "engine_broker_tasks_failed_total"):
        assert wanted in used_anywhere


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")
def test_promtool_accepts_the_rules_the_config_and_every_dashboard_expression(tmp_path):
    subprocess.run([PROMTOOL, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")], check=True,
                   timeout=60, capture_output=True)
    [scaled] = k8s_kind("ScaledObject")
    exprs = [e for _, e in dashboard_targets()] + [scaled["spec"]["triggers"][0]["metadata"]["query"]]
    rules = {"groups": [{"name": "expressions", "rules": [
        {"record": f"check:expr_{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "expressions.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
