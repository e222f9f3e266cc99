"""deploy/: everything that can be validated without a cluster, a Docker engine or GPUs.

promtool (Debian's `prometheus` package, installed by .ci/run) checks the Prometheus config and
rules and runs the alert unit tests; kubernetes-validate checks the manifests against the
Kubernetes 1.32 OpenAPI schemas it ships (kubectl --dry-run=client needs an API server, which
is not here); the ServiceMonitor CRD, the compose file, the dashboard and the training configs
are parsed and their cross-references checked.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from monitoring import metrics
from system_programs import require

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "balancedbio.json"
K8S_VERSION = "1.32"

# The service's HTTP contract (issue 5): probes, port and the environment it reads.
LIVENESS, READINESS, SERVICE_PORT = "/livez", "/readyz", 3000
SERVICE_ENV = {"BALANCEDBIO_API_KEYS", "BALANCEDBIO_DB_URL", "BALANCEDBIO_MODEL"}

METRIC_RE = re.compile(r"\bbalancedbio_[a-z0-9_]+\b")
RECORDED_RE = re.compile(r"\bbalancedbio:[a-z0-9_:]+\b")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(require("promtool")), *args], capture_output=True, text=True, timeout=120, cwd=PROM)


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_docs() -> dict[str, dict]:
    return {d["kind"]: d for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in load_yaml_docs(f)}


def rules() -> list[dict]:
    return [r for g in yaml.safe_load((PROM / "rules.yml").read_text())["groups"] for r in g["rules"]]


# --- Prometheus ------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("check", "config", "prometheus.yml"), ("check", "rules", "rules.yml"),
                                  ("test", "rules", "rules_test.yml")], ids=lambda a: " ".join(a[:2]))
def test_promtool_accepts(args):
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    """The check above is not vacuous: a rule with bad PromQL fails."""
    bad = {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(balancedbio_requests_total[5m])"}]}]}
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(bad))
    assert promtool("check", "rules", str(path)).returncode != 0


@pytest.mark.parametrize("alert", ["BalancedBioHighErrorRate", "BalancedBioHighLatencyP95",
                                   "BalancedBioAcceptanceRatioDrop", "BalancedBioSafetyCheckUnavailable"])
def test_required_alerts_exist_and_are_unit_tested(alert):
    assert alert in {r.get("alert") for r in rules()}
    tested = {t["alertname"] for case in yaml.safe_load((PROM / "rules_test.yml").read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alert in tested, f"rules_test.yml has no case where {alert} fires"


def test_scrape_config_targets_the_service_metrics():
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "balancedbio")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"balancedbio:{SERVICE_PORT}"]


# --- queries refer only to metrics defined in monitoring/metrics.py --------------------------

def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    return [r["expr"] for r in rules()]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_queries_use_only_defined_metrics(source):
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    assert exprs
    used = {name for e in exprs for name in METRIC_RE.findall(e)}
    unknown = used - metrics.series_names()
    assert not unknown, f"{source} queries metrics that monitoring/metrics.py does not define: {sorted(unknown)}"
    recorded = {r["record"] for r in rules() if "record" in r}
    missing = {name for e in exprs for name in RECORDED_RE.findall(e)} - recorded
    assert not missing, f"{source} uses recording rules that rules.yml does not define: {sorted(missing)}"


def test_dashboard_covers_red_and_clinical_panels():
    text = " ".join(dashboard_exprs())
    for series in ("balancedbio_requests_total", "balancedbio:request_error_ratio:rate5m",
                   "balancedbio:request_duration_seconds:p95_5m", "balancedbio:acceptance_ratio:1h",
                   "balancedbio_guardrail_findings_total", "balancedbio_eval_score", "balancedbio_model_info"):
        assert series in text, f"no dashboard panel queries {series}"
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasource["datasources"]}
    panel_uids = {p["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"] if "datasource" in p}
    assert panel_uids <= uids


# --- Kubernetes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim", "Secret"])
def test_manifest_matches_the_kubernetes_schema(kind):
    import kubernetes_validate

    docs = [d for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in load_yaml_docs(f) if d["kind"] == kind]
    assert docs, f"no {kind} in deploy/k8s"
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_broken_probe():
    import kubernetes_validate

    broken = copy.deepcopy(k8s_docs()["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"] = {"path": READINESS}  # no port
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_deployment_probes_env_and_ports_match_the_service_contract():
    docs = k8s_docs()
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS
    assert container["readinessProbe"]["httpGet"]["path"] == READINESS
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["http"] == SERVICE_PORT
    env = {e["name"]: e for e in container["env"]}
    assert SERVICE_ENV <= set(env)
    secret = docs["Secret"]
    for name in ("BALANCEDBIO_API_KEYS", "BALANCEDBIO_DB_URL"):
        ref = env[name]["valueFrom"]["secretKeyRef"]  # keys come from a Secret, never a literal
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    claims = {d["metadata"]["name"] for f in K8S.glob("*.yaml") for d in load_yaml_docs(f)
              if d["kind"] == "PersistentVolumeClaim"}
    used = {v["persistentVolumeClaim"]["claimName"] for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert used <= claims


def test_service_hpa_and_servicemonitor_point_at_the_deployment():
    docs = k8s_docs()
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    monitor = docs["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= docs["Service"]["metadata"]["labels"].items()
    service_ports = {p["name"] for p in docs["Service"]["spec"]["ports"]}
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports


def test_kustomization_lists_every_manifest_but_the_secret():
    """What `kubectl apply -k deploy/k8s` would apply, read from kustomization.yaml (kubectl is not a
    Debian package CI can rely on): every listed file exists, every manifest but the Secret's example
    is listed, and together they hold the workload, its Service, autoscaler and ServiceMonitor."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)) and all((K8S / name).is_file() for name in listed)
    manifests = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(listed) == manifests
    kinds = {d["kind"] for name in listed for d in load_yaml_docs(K8S / name)}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ServiceMonitor", "PersistentVolumeClaim"} <= kinds
    assert "Secret" not in kinds  # created by hand from secret.example.yaml, never applied with a placeholder


def _requirement_name(spec: str) -> str:
    return re.split(r"[\[=<>!~ ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_database_urls_name_a_driver_the_image_installs():
    """Each database URL the manifests configure loads its SQLAlchemy dialect's driver here, and the
    driver's distribution is both a dependency of the project and a package of the image (bentofile)."""
    from importlib.metadata import packages_distributions

    from sqlalchemy.engine import make_url

    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["balancedbio"]["environment"]
    compose_default = re.fullmatch(r"\$\{BALANCEDBIO_DB_URL:-(.+)\}", compose["BALANCEDBIO_DB_URL"]).group(1)
    urls = {"k8s secret": secret["stringData"]["db-url"], "compose default": compose_default}
    image = {_requirement_name(p) for p in yaml.safe_load((REPO / "bentofile.yaml").read_text())["python"]["packages"]}
    project = {_requirement_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    drivers = {}
    for where, url in urls.items():
        module = make_url(url).get_dialect().import_dbapi().__name__.split(".")[0]  # ImportError if absent
        drivers[where] = module
        if module == "sqlite3":
            continue  # the standard library's
        dists = {d.lower() for d in packages_distributions().get(module, [])}
        assert dists & image and dists & project, f"{where}: driver {module} ({dists}) not in the image and pyproject"
    assert drivers == {"k8s secret": "psycopg", "compose default": "sqlite3"}


# --- compose and training ---------------------------------------------------------------------

def test_compose_file_wires_service_prometheus_and_grafana():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"balancedbio", "prometheus", "grafana"} <= set(services)
    assert SERVICE_ENV <= set(services["balancedbio"]["environment"])
    assert f"{SERVICE_PORT}:{SERVICE_PORT}" in services["balancedbio"]["ports"]
    for name in ("prometheus", "grafana"):  # every bind-mounted file or folder exists in deploy/
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which is not in deploy/"
    declared = set(compose.get("volumes", {}))
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert named <= declared


@pytest.mark.parametrize("name, kind", [("accelerate_ddp.yaml", "MULTI_GPU"),
                                        ("accelerate_deepspeed_zero2.yaml", "DEEPSPEED")])
def test_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(DEPLOY / "training" / name))
    assert config.distributed_type.name == kind
    assert config.num_processes > 1
    if kind == "DEEPSPEED":
        ds = json.loads((REPO / config.deepspeed_config["deepspeed_config_file"]).read_text())
        assert ds["zero_optimization"]["stage"] == 2


# Imported by the served packages but not listed in the image on purpose, each with its reason.
IMAGE_TRANSITIVE = {
    "anyio": "starlette's and BentoML's", "starlette": "fastapi's", "numpy": "onnxruntime's and spaCy's",
    "psutil": "BentoML's", "tldextract": "presidio-analyzer's", "bentoml": "the image's own runtime",
    "medspacy": "deploy/medspacy-requirements.txt, installed by deploy/bento_setup.sh with --no-deps",
    "torch": "only to run a PyTorch model folder; the image serves an ONNX export",
    "peft": "only to merge a shipped LoRA adapter; the image serves an ONNX export",
}


def test_every_package_the_service_imports_is_in_the_image():
    """The image installs bentofile's packages only: a guardrail library missing there would make its
    checks fail closed in production although every test here passes."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    ours = {"serving", "clinical", "ui", "monitoring", "training"}
    modules = set()
    for package in ("serving", "clinical", "ui", "monitoring"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m not in ours}
    image = {_requirement_name(p) for p in yaml.safe_load((REPO / "bentofile.yaml").read_text())["python"]["packages"]}
    dists = packages_distributions()
    missing = {m: dists.get(m) for m in third_party - set(IMAGE_TRANSITIVE)
               if not {_requirement_name(d) for d in dists.get(m, [m])} & image}
    assert not missing, f"imported by the service but not in bentofile.yaml's packages: {missing}"
