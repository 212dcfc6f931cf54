"""The Helm chart: lint, schema, Kubernetes OpenAPI validation, and assertions on the rendered objects."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from imagebind_vectorizer.settings import SERVER_GRPC_PORT, SERVER_HTTP_PORT
from imagebind_vectorizer.version import __version__
from tests.deploy.helpers import (
    CHART,
    CHART_MANAGED_ENV,
    EXAMPLES,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    REPO,
    container,
    find,
    helm,
    load_yaml,
    render,
    render_notes,
    render_text,
    run,
    settings_env_names,
    tool,
    values_schema,
)

pytestmark = pytest.mark.deploy

#: Every optional object switched on at once, for schema validation of all templates.
EVERYTHING = (
    "service.headless.enabled=true", "metrics.serviceMonitor.enabled=true", "autoscaling.enabled=true",
    "autoscaling.queueDepth.enabled=true", "autoscaling.queueDepth.selector.matchLabels.kind=image",
    "modelCache.type=pvc", "probes.type=grpc", "gpu.enabled=true", "gpu.runtimeClassName=nvidia",
    "image.digest=sha256:" + "a" * 64, "podDisruptionBudget.maxUnavailable=null",
    "podDisruptionBudget.minAvailable=1", "terminationGracePeriodSeconds=90", "priorityClassName=high",
)
#: With values-secured.yaml: every security object and mount switched on at once (TLS rules out gRPC probes).
SECURED_EVERYTHING = (
    "tls.enabled=true", "tls.secretName=vectorizer-tls", "tls.clientCA.secretName=clients-ca",
    "config.IMAGEBIND_TLS_CLIENT_AUTH=grpc", "auth.metrics.existingSecret=scrape-key",
    "metrics.serviceMonitor.enabled=true", "service.headless.enabled=true",
)
#: Kinds whose schema is not part of Kubernetes' OpenAPI document.
CRD_KINDS = {"ServiceMonitor"}


def _configmap_env(docs: list[dict]) -> dict[str, str]:
    deployment = find(docs, "Deployment")
    main = container(deployment)
    env: dict[str, str] = {}
    for source in main.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(find(docs, "ConfigMap", ref)["data"])
    for item in main.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


# Lint and schema -------------------------------------------------------------------------------------------
def test_helm_lint(values_case):
    _name, files = values_case
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for file in files:
        args += ["--values", str(file)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(("sets", "complaint"), [
    (["config.IMAGEBIND_MAX_BATCH_SIZE=lots"], "/config/IMAGEBIND_MAX_BATCH_SIZE"),
    (["replicaCount=two"], "/replicaCount"),
    (["config.IMAGEBIND_DTYPE=float64"], "/config/IMAGEBIND_DTYPE"),
    (["config.IMAGEBIND_MAX_WAIT_MS=soon"], "/config/IMAGEBIND_MAX_WAIT_MS"),
    (["config.IMAGEBIND_RANDOM_WEIGHTS=maybe"], "/config/IMAGEBIND_RANDOM_WEIGHTS"),
    (["config.IMAGEBIND_NOT_A_SETTING=1"], "IMAGEBIND_NOT_A_SETTING"),
    (["config.IMAGEBIND_DEVICE=tpu"], "/config/IMAGEBIND_DEVICE"),
    (["gpu.enabled=yes-please"], "/gpu/enabled"),
    (["probes.type=exec"], "/probes/type"),
    (["modelCache.type=hostPath"], "/modelCache/type"),
    (["containerPorts.http=70000"], "/containerPorts/http"),
    (["podDisruptionBudget.minAvailable=1"], "/podDisruptionBudget"),  # both min and max
    (["image.digest=latest"], "/image/digest"),
    (["unknownTopLevel=1"], "unknownTopLevel"),
])
def test_schema_rejects_bad_values(sets, complaint):
    args = ["template", RELEASE, str(CHART)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode != 0, f"--set {sets} was accepted"
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


@pytest.mark.parametrize(("sets", "complaint"), [
    (["gpu.enabled=true", "config.IMAGEBIND_DEVICE=cpu"], "GPU would sit idle"),
    (["probes.type=grpc", "grpc.enabled=false"], "needs grpc.enabled"),
    (["autoscaling.enabled=true", "autoscaling.targetCPUUtilizationPercentage=null"], "needs a metric"),
    (["autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=2"], "minReplicas"),
    (["modelCache.type=existingClaim"], "modelCache.existingClaim is required"),
])
def test_templates_reject_inconsistent_values(sets, complaint):
    args = ["template", RELEASE, str(CHART)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


def test_default_values_match_the_schema():
    jsonschema.Draft7Validator.check_schema(values_schema())
    jsonschema.validate(load_yaml(CHART / "values.yaml"), values_schema())


def test_config_covers_every_server_setting_with_its_type_and_default():
    """values.yaml / values.schema.json `config` hold exactly the Settings the chart does not derive, with
    the schema type of each field and the server's own default (so the chart cannot drift from it)."""
    from imagebind_vectorizer.settings import Settings, _field_type

    schema_config = values_schema()["properties"]["config"]
    defaults = load_yaml(CHART / "values.yaml")["config"]
    expected = settings_env_names() - CHART_MANAGED_ENV
    assert set(schema_config["properties"]) == expected
    assert set(schema_config["required"]) == expected
    assert schema_config["additionalProperties"] is False
    assert set(defaults) == expected
    json_type = {bool: "boolean", int: "integer", float: "number", str: "string"}
    for f in dataclasses.fields(Settings):
        env = f.metadata["env"]
        if env in CHART_MANAGED_ENV:
            continue
        prop = schema_config["properties"][env]
        types = {prop["type"]} if "type" in prop else {alt["type"] for alt in prop["anyOf"]}
        kind = json_type[_field_type(f)]
        assert types == ({"number", "string"} if kind == "number" else {kind}), env
        if f.metadata.get("choices"):
            assert set(schema_config["properties"][env]["enum"]) == set(f.metadata["choices"]), env
        if env == "IMAGEBIND_DEVICE":
            assert defaults[env] == "", "empty means: cuda with gpu.enabled, else cpu"
            continue
        want = "" if f.default is None else f.default
        assert defaults[env] == want, f"values.yaml {env}={defaults[env]!r}, server default {want!r}"


# Kubernetes schema validation ------------------------------------------------------------------------------
def _validate(text: str, kube_version: str, tmp_path: Path) -> tuple[list[dict], str]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    builtin = [d for d in docs if d["kind"] not in CRD_KINDS]
    manifest = tmp_path / f"manifest-{kube_version}.yaml"
    manifest.write_text(yaml.safe_dump_all(builtin))
    result = run([tool("kubernetes-validate"), "--strict", "--kubernetes-version", kube_version, str(manifest)])
    return builtin, result.stdout + result.stderr if result.returncode == 0 else "FAILED\n" + result.stdout + \
        result.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", ["default", "gpu", "cpu-autoscale", "everything", "secured"])
def test_manifests_validate_against_kubernetes_schemas(case, kube_version, tmp_path):
    """Strict validation (unknown fields rejected) against the Kubernetes OpenAPI schemas of the oldest and
    newest supported versions. ServiceMonitor is a CRD, not in those schemas: it is left out here and
    checked field by field in test_service_monitor."""
    files = {"default": (), "gpu": (EXAMPLES / "values-gpu.yaml",),
             "cpu-autoscale": (EXAMPLES / "values-cpu-autoscale.yaml",), "everything": (),
             "secured": (EXAMPLES / "values-secured.yaml",)}[case]
    sets = {"everything": EVERYTHING, "secured": SECURED_EVERYTHING}.get(case, ())
    text = render_text(files, sets, kube_version=kube_version)
    builtin, output = _validate(text, kube_version, tmp_path)
    assert not output.startswith("FAILED"), output
    for doc in builtin:
        assert re.search(rf"passed for resource {doc['kind'].lower()}/{re.escape(doc['metadata']['name'])} ",
                         output), f"{doc['kind']} {doc['metadata']['name']} not validated:\n{output}"


def test_validator_is_strict(tmp_path):
    """Control: the same pipeline rejects a Deployment with an unknown field and one with a wrong type."""
    docs = [d for d in yaml.safe_load_all(render_text()) if d]
    deployment = find(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1
    _, output = _validate(yaml.safe_dump(deployment), KUBE_VERSIONS[-1], tmp_path)
    assert output.startswith("FAILED") and "bogusField" in output
    deployment["spec"]["template"]["spec"]["containers"][0].pop("bogusField")
    deployment["spec"]["replicas"] = "one"
    _, output = _validate(yaml.safe_dump(deployment), KUBE_VERSIONS[-1], tmp_path)
    assert output.startswith("FAILED") and "replicas" in output


# Rendered objects ------------------------------------------------------------------------------------------
def test_default_objects():
    docs = render()
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "Pod", "PodDisruptionBudget",
                                               "Service", "ServiceAccount"]
    deployment = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    main = container(deployment)
    assert main["image"] == f"imagebind-vectorizer:{__version__}-cpu"
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": SERVER_HTTP_PORT, "grpc": SERVER_GRPC_PORT}
    assert "nvidia.com/gpu" not in main["resources"].get("limits", {})
    assert pod["spec"].get("tolerations") is None and pod["spec"].get("nodeSelector") is None
    # 5 s preStop + 30 s IMAGEBIND_SHUTDOWN_GRACE_S + 10 s margin
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45
    assert main["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]


def test_http_probes():
    main = container(find(render(), "Deployment"))
    for probe, path in (("startupProbe", "/.well-known/ready"), ("readinessProbe", "/.well-known/ready"),
                        ("livenessProbe", "/.well-known/live")):
        assert main[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert main["startupProbe"]["periodSeconds"] * main["startupProbe"]["failureThreshold"] >= 120


def test_grpc_probes():
    main = container(find(render(sets=("probes.type=grpc",)), "Deployment"))
    assert main["readinessProbe"]["grpc"] == {"port": SERVER_GRPC_PORT, "service": "imagebind.vectorizer.v1.Vectorizer"}
    assert main["startupProbe"]["grpc"] == main["readinessProbe"]["grpc"]
    assert main["livenessProbe"]["grpc"] == {"port": SERVER_GRPC_PORT, "service": ""}
    assert "httpGet" not in main["livenessProbe"]


def test_services_reach_the_pods():
    docs = render(sets=("service.headless.enabled=true",))
    pod = find(docs, "Deployment")["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in container(find(docs, "Deployment"))["ports"]}
    service = find(docs, "Service", RELEASE)
    assert service["spec"]["type"] == "ClusterIP"
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http", SERVER_HTTP_PORT, "http"), ("grpc", SERVER_GRPC_PORT, "grpc")}
    headless = find(docs, "Service", f"{RELEASE}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["port"]) for p in headless["spec"]["ports"]] == [("grpc", ports["grpc"])]
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports
    # The `helm test` pod must not become an endpoint of these Services.
    test_pod = find(docs, "Pod")
    assert not svc["spec"]["selector"].items() <= test_pod["metadata"]["labels"].items()
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["spec"]["containers"][0]["command"][-1] == \
        f"http://{RELEASE}:{SERVER_HTTP_PORT}/.well-known/ready"


def test_no_grpc():
    docs = render(sets=("grpc.enabled=false", "service.headless.enabled=true"))
    assert [p["name"] for p in find(docs, "Service")["spec"]["ports"]] == ["http"]
    assert _configmap_env(docs)["IMAGEBIND_GRPC_PORT"] == "0"


def _quantity_bytes(quantity: str | int) -> int:
    text = str(quantity)
    for suffix, factor in (("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)):
        if text.endswith(suffix):
            return int(text[:-len(suffix)]) * factor
    return int(text)


@pytest.mark.parametrize(("sets", "streams", "size"), [
    ((), 2, 4 << 30),
    (("config.IMAGEBIND_MAX_SEGMENT_STREAMS=3", "config.IMAGEBIND_MAX_SEGMENT_SOURCE_BYTES=1073741824"), 3, 1 << 30),
])
def test_the_segment_spool_holds_the_largest_upload_of_every_stream(sets, streams, size):
    """VectorizeSegments spools each upload (up to IMAGEBIND_MAX_SEGMENT_SOURCE_BYTES) while it is
    segmented. It went to /tmp, whose 4Gi could not hold the default 2 x 4 GiB (the pod would be
    evicted); the spool now has an emptyDir of its own with room for every stream, and the server
    writes there."""
    from imagebind_vectorizer.settings import Settings

    docs = render(sets=sets)
    settings = Settings.load(env=_configmap_env(docs))
    assert (settings.max_segment_streams, settings.max_segment_source_bytes) == (streams, size)
    deployment = find(docs, "Deployment")
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    spool = volumes[mounts[settings.segment_spool_dir]]
    assert _quantity_bytes(spool["emptyDir"]["sizeLimit"]) >= streams * size
    assert spool["name"] != "tmp"


def test_without_grpc_there_is_no_segment_spool():
    docs = render(sets=("grpc.enabled=false",))
    from imagebind_vectorizer.settings import Settings

    assert Settings.load(env=_configmap_env(docs)).segment_spool_dir is None
    deployment = find(docs, "Deployment")
    assert "segment-spool" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_security_context(values_case):
    _name, files = values_case
    pod = find(render(files), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod.get("initContainers", []):
        ctx = c["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["readOnlyRootFilesystem"] is True, c["name"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], c["name"]
        assert ctx.get("privileged") is not True
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts["/tmp"] == "tmp", "a read-only root needs a writable /tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_every_setting_reaches_the_server(values_case):
    """Each Settings field's environment variable is set on the server container, and the server's own
    Settings.load accepts the rendered values."""
    from imagebind_vectorizer.settings import Settings

    name, files = values_case
    docs = render(files)
    env = _configmap_env(docs)
    assert settings_env_names() <= env.keys()
    unknown = {k for k in env if k.startswith("IMAGEBIND_")} - settings_env_names()
    assert not unknown, f"not server settings: {unknown}"
    settings = Settings.load(env=env)
    assert settings.host == "0.0.0.0" and settings.port == SERVER_HTTP_PORT and settings.grpc_port == SERVER_GRPC_PORT
    assert settings.cache_dir == "/models"
    if name == "gpu":
        assert settings.device == "cuda" and settings.dtype == "bfloat16"
    else:
        assert settings.device == "cpu"
    if name == "cpu-autoscale":
        assert settings.torch_threads == 4 and settings.modalities == "text,vision"
    assert env["IMAGEBIND_MAX_REQUEST_BYTES"] == "268435456"  # not 2.68435456e+08


def test_container_args_are_a_valid_command_line(values_case):
    from imagebind_vectorizer.cli import build_parser

    _name, files = values_case
    main = container(find(render(files), "Deployment"))
    assert "command" not in main, "the image's ENTRYPOINT (imagebind-vectorizer) runs"
    parsed = build_parser().parse_args(main["args"])
    assert parsed.command == "serve"


def test_init_container_downloads_the_checkpoint(values_case):
    from imagebind_vectorizer.cli import build_parser

    _name, files = values_case
    deployment = find(render(files), "Deployment")
    init = container(deployment, "fetch-checkpoint", init=True)
    main = container(deployment)
    assert init["image"] == main["image"]
    assert "command" not in init, "the image's ENTRYPOINT (imagebind-vectorizer) runs"
    assert build_parser().parse_args(init["args"]).command == "download"
    assert init["envFrom"] == main["envFrom"], "the init container must see the same settings"
    cache = {m["mountPath"]: m for m in init["volumeMounts"]}["/models"]
    assert not cache.get("readOnly")
    served = {m["mountPath"]: m for m in main["volumeMounts"]}["/models"]
    assert served["readOnly"] is True and served["name"] == cache["name"]


def test_without_init_container_the_server_may_write_the_cache():
    deployment = find(render(sets=("modelCache.download.enabled=false",)), "Deployment")
    assert "initContainers" not in deployment["spec"]["template"]["spec"]
    mount = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}["/models"]
    assert mount["readOnly"] is False


def test_config_change_rolls_the_pods():
    def checksum(*sets):
        return find(render(sets=sets), "Deployment")["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]

    assert checksum() != checksum("config.IMAGEBIND_MAX_BATCH_SIZE=8")


def test_gpu_example():
    docs = render((EXAMPLES / "values-gpu.yaml",))
    deployment = find(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert main["image"].endswith(f":{__version__}-cuda")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert main["resources"]["limits"]["memory"] and main["resources"]["requests"]["cpu"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert find(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {v["name"]: v for v in pod["volumes"]}["model-cache"]["persistentVolumeClaim"]["claimName"] == \
        find(docs, "PersistentVolumeClaim")["metadata"]["name"]
    assert "grpc" in main["readinessProbe"]
    find(docs, "Service", f"{RELEASE}-headless")


def test_cpu_autoscale_example():
    docs = render((EXAMPLES / "values-cpu-autoscale.yaml",))
    deployment = find(docs, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"] == {"name": "cpu",
                                               "target": {"type": "Utilization", "averageUtilization": 70}}
    assert metrics["Pods"]["pods"] == {"metric": {"name": "imagebind_queue_depth"},
                                       "target": {"type": "AverageValue", "averageValue": "16"}}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert find(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    main = container(deployment)
    # The CPU target is relative to the request, so there must be one.
    assert main["resources"]["requests"]["cpu"] == "4"


def test_queue_depth_selector():
    hpa = find(render(sets=("autoscaling.enabled=true", "autoscaling.queueDepth.enabled=true",
                            "autoscaling.queueDepth.selector.matchLabels.kind=video")), "HorizontalPodAutoscaler")
    pods = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")["pods"]
    assert pods["metric"]["selector"] == {"matchLabels": {"kind": "video"}}


def test_pdb_min_available():
    pdb = find(render(sets=("podDisruptionBudget.minAvailable=50%", "podDisruptionBudget.maxUnavailable=null")),
               "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": "50%", "selector": pdb["spec"]["selector"]}


def test_service_monitor():
    """ServiceMonitor (monitoring.coreos.com/v1) is a CRD: Kubernetes' own schemas do not know it, and no
    offline copy of its CRD schema is installed, so its fields are checked here instead."""
    docs = render((EXAMPLES / "values-cpu-autoscale.yaml",))
    monitor = find(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = find(docs, "Service", RELEASE)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings",
                             "metricRelabelings"}


def test_image_digest_and_tag():
    main = container(find(render(sets=("image.repository=registry.example/ibv", "image.tag=1.2.3",
                                       "image.digest=sha256:" + "b" * 64)), "Deployment"))
    assert main["image"] == "registry.example/ibv:1.2.3@sha256:" + "b" * 64


def test_termination_grace_follows_the_shutdown_grace():
    pod = find(render(sets=("config.IMAGEBIND_SHUTDOWN_GRACE_S=60.5", "preStopSleepSeconds=3")),
               "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == math.ceil(60.5) + 3 + 10


# Weaviate's chart and the NOTES ----------------------------------------------------------------------------
def _weaviate_version() -> str:
    match = re.search(r"^WEAVIATE_VERSION \?= v(\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match
    return match.group(1)


def test_weaviate_chart_values_point_at_this_service():
    """Weaviate's chart puts `envSecrets` at the top of the container's env list and BIND_INFERENCE_API
    (from inferenceUrl) after it (weaviate-helm 4213da52, templates/weaviateStatefulset.yaml), so
    Kubernetes expands $(IMAGEBIND_API_KEY) in the URL from the Secret."""
    values = load_yaml(EXAMPLES / "weaviate-values.yaml")
    module = values["modules"]["multi2vec-bind"]
    assert module["enabled"] is False, "true would deploy Weaviate's own ImageBind container"
    service = find(render(), "Service", RELEASE)
    http = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    assert set(values["envSecrets"]) == {"IMAGEBIND_API_KEY"}
    url = module["inferenceUrl"]
    assert url == (f"http://weaviate:$(IMAGEBIND_API_KEY)@{service['metadata']['name']}.{NAMESPACE}"
                   f".svc.cluster.local:{http}")
    key = "k3y_-.~0123456789abcdefXYZ"  # every character a key may hold survives unescaped
    parts = urlsplit(url.replace("$(IMAGEBIND_API_KEY)", key))
    assert (parts.username, parts.password, parts.port, parts.path) == ("weaviate", key, http, "")
    assert values["modules"]["default_vectorizer_module"] == "none"
    timeout = values["env"]["MODULES_CLIENT_TIMEOUT"]
    assert re.fullmatch(r"\d+s", timeout) and int(timeout[:-1]) > 50
    assert values["image"]["tag"] == _weaviate_version(), "the Weaviate version the project tests against"


def test_notes(tmp_path):
    """NOTES.txt, rendered with the chart's values."""

    def rendered(*sets):
        return render_notes(tmp_path, *[arg for item in sets for arg in ("--set", item)])

    text = rendered()
    assert f"BIND_INFERENCE_API=http://{RELEASE}.{NAMESPACE}.svc.cluster.local:{SERVER_HTTP_PORT}\n" in text
    assert "ONE pod" in text and "service.headless.enabled=true" in text
    assert "CC-BY-NC" in text
    headless = rendered("service.headless.enabled=true")
    assert f"dns:///{RELEASE}-headless.{NAMESPACE}.svc.cluster.local:{SERVER_GRPC_PORT}" in headless
    assert "round_robin" in headless
