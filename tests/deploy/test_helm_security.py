"""The chart's security wiring, from `helm template`: API keys from an existing or a created Secret,
mounted as whole volumes (so the server sees rotations) and named in the ConfigMap as files; TLS and
client-CA Secrets; probes and ServiceMonitor following TLS and auth; the NetworkPolicy; and the
combinations the chart refuses."""

from __future__ import annotations

import base64

import pytest

from imagebind_vectorizer.settings import Settings
from tests.deploy.helpers import EXAMPLES, NAMESPACE, RELEASE, container, find, helm, render, render_notes
from tests.deploy.test_helm import _configmap_env

pytestmark = pytest.mark.deploy

SECURED = (EXAMPLES / "values-secured.yaml",)
SECRETS_DIR = "/etc/imagebind-vectorizer"


def _volumes(docs: list[dict]) -> dict[str, dict]:
    return {v["name"]: v for v in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def _mounts(docs: list[dict]) -> dict[str, dict]:
    return {m["name"]: m for m in container(find(docs, "Deployment"))["volumeMounts"]}


def test_by_default_nothing_is_protected_and_no_secret_is_mounted():
    docs = render()
    env = _configmap_env(docs)
    settings = Settings.load(env=env)
    assert settings.api_keys is None and settings.api_key_file is None and settings.tls_cert_file is None
    assert not {"api-keys", "tls", "client-ca", "metrics-keys"} & _volumes(docs).keys()
    assert not [d for d in docs if d["kind"] in ("Secret", "NetworkPolicy")]


def test_keys_from_an_existing_secret_are_a_file_the_server_rereads():
    docs = render(SECURED)
    assert not [d for d in docs if d["kind"] == "Secret"], "an existing Secret is used, not created"
    volume = _volumes(docs)["api-keys"]["secret"]
    assert volume["secretName"] == "imagebind-api-keys"
    assert volume["items"] == [{"key": "api-keys", "path": "api-keys"}]
    assert volume["defaultMode"] == 0o440
    mount = _mounts(docs)["api-keys"]
    # A subPath mount would never see the Secret change: the whole volume is mounted.
    assert mount == {"name": "api-keys", "mountPath": f"{SECRETS_DIR}/api-keys", "readOnly": True}
    env = _configmap_env(docs)
    assert env["IMAGEBIND_API_KEY_FILE"] == f"{SECRETS_DIR}/api-keys/api-keys"
    assert env["IMAGEBIND_API_KEYS"] == "", "keys never sit in the ConfigMap"
    settings = Settings.load(env=env)
    assert settings.api_key_file == f"{SECRETS_DIR}/api-keys/api-keys" and settings.api_keys is None
    init = container(find(docs, "Deployment"), "fetch-checkpoint", init=True)
    assert "api-keys" not in {m["name"] for m in init["volumeMounts"]}, "the download needs no key"


def test_a_created_secret_holds_the_given_keys_or_a_generated_one():
    key_a, key_b = "a" * 20, "B-_.~" * 4
    docs = render(sets=("auth.enabled=true", f"auth.keys={{{key_a},{key_b}}}"))
    secret = find(docs, "Secret", f"{RELEASE}-api-keys")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert base64.b64decode(secret["data"]["api-keys"]).decode().splitlines() == [key_a, key_b]
    assert _volumes(docs)["api-keys"]["secret"]["secretName"] == f"{RELEASE}-api-keys"

    generated = find(render(sets=("auth.enabled=true",)), "Secret", f"{RELEASE}-api-keys")
    key = base64.b64decode(generated["data"]["api-keys"]).decode()
    assert len(key) == 43 and key.isalnum()
    from imagebind_vectorizer.server.auth import KeyRing

    assert KeyRing([key]).matches(key), "the server accepts what the chart generates"


@pytest.mark.parametrize("bad", ["short", "has space in the key!", "colon:in-the-key-123456"])
def test_the_schema_refuses_keys_the_server_would_refuse(bad):
    result = helm("template", RELEASE, str(EXAMPLES.parent), "--set", "auth.enabled=true",
                  "--set-json", f'auth.keys=["{bad}"]')
    assert result.returncode != 0 and "/auth/keys/0" in result.stderr, result.stderr


def test_tls_and_client_ca_secrets_reach_the_server_and_the_probes_use_https():
    docs = render(SECURED, ("tls.enabled=true", "tls.secretName=vectorizer-tls", "tls.clientCA.secretName=clients",
                            "tls.clientCA.key=bundle.pem", "config.IMAGEBIND_TLS_CLIENT_AUTH=grpc"))
    volumes = _volumes(docs)
    assert volumes["tls"]["secret"]["secretName"] == "vectorizer-tls"
    assert volumes["tls"]["secret"]["items"] == [{"key": "tls.crt", "path": "tls.crt"},
                                                 {"key": "tls.key", "path": "tls.key"}]
    assert volumes["client-ca"]["secret"] == {"secretName": "clients", "defaultMode": 0o440,
                                              "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    mounts = _mounts(docs)
    assert mounts["tls"]["mountPath"] == f"{SECRETS_DIR}/tls" and mounts["tls"]["readOnly"] is True
    assert "subPath" not in mounts["tls"] and "subPath" not in mounts["client-ca"]
    settings = Settings.load(env=_configmap_env(docs))
    assert settings.tls_cert_file == f"{SECRETS_DIR}/tls/tls.crt"
    assert settings.tls_key_file == f"{SECRETS_DIR}/tls/tls.key"
    assert settings.tls_client_ca_file == f"{SECRETS_DIR}/client-ca/ca.crt"
    assert settings.tls_client_auth == "grpc"
    main = container(find(docs, "Deployment"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["scheme"] == "HTTPS", probe
    test_pod = find(docs, "Pod")
    assert test_pod["spec"]["containers"][0]["command"][-1] == f"https://{RELEASE}:8011/.well-known/ready"


def test_service_monitor_sends_a_key_and_verifies_tls():
    docs = render(SECURED, ("metrics.serviceMonitor.enabled=true", "tls.enabled=true", "tls.secretName=vectorizer-tls"))
    (endpoint,) = find(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": "vectorizer-tls", "key": "ca.crt"}},
                                     "serverName": f"{RELEASE}.{NAMESPACE}.svc"}
    assert endpoint["authorization"] == {"type": "Bearer",
                                         "credentials": {"name": "imagebind-api-keys", "key": "api-keys"}}

    docs = render(SECURED, ("metrics.serviceMonitor.enabled=true", "auth.metrics.existingSecret=scrape",
                            "auth.metrics.existingSecretKey=token"))
    (endpoint,) = find(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint
    assert endpoint["authorization"]["credentials"] == {"name": "scrape", "key": "token"}
    assert _volumes(docs)["metrics-keys"]["secret"]["items"] == [{"key": "token", "path": "metrics-keys"}]
    assert Settings.load(env=_configmap_env(docs)).metrics_api_key_file == f"{SECRETS_DIR}/metrics-keys/metrics-keys"

    docs = render(SECURED, ("metrics.serviceMonitor.enabled=true", "config.IMAGEBIND_METRICS_OPEN=true"))
    (endpoint,) = find(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert "authorization" not in endpoint


def test_network_policy_admits_weaviate_scrapers_and_the_test_pod_only():
    docs = render(SECURED)
    policy = find(docs, "NetworkPolicy")
    deployment = find(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress stays open: the init container downloads"
    weaviate, scrapers, helm_test = policy["spec"]["ingress"]
    assert weaviate["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "weaviate"}},
                                 "podSelector": {"matchLabels": {"app": "weaviate"}}}]
    container_ports = {p["name"] for p in container(deployment)["ports"]}
    assert {p["port"] for p in weaviate["ports"]} == container_ports == {"http", "grpc"}
    assert scrapers["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert [p["port"] for p in scrapers["ports"]] == ["http"]
    test_pod = find(docs, "Pod")
    assert helm_test["from"][0]["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()
    assert not policy["spec"]["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()

    no_grpc = find(render(SECURED, ("grpc.enabled=false",)), "NetworkPolicy")
    assert [p["port"] for p in no_grpc["spec"]["ingress"][0]["ports"]] == ["http"]


def test_notes_name_the_credentials_for_weaviate(tmp_path):
    text = render_notes(tmp_path, "-f", str(SECURED[0]), "--set", "tls.enabled=true", "--set", "tls.secretName=t")
    assert (f"BIND_INFERENCE_API=https://weaviate:$(IMAGEBIND_API_KEY)@{RELEASE}.{NAMESPACE}.svc.cluster.local:8011\n"
            in text)
    assert "envSecrets" in text and "SSL_CERT_FILE" in text
    assert "and reflection" not in text and "authorization: Bearer" in text


@pytest.mark.parametrize(("sets", "complaint"), [
    (("config.IMAGEBIND_AUTH_PROBES=true",), "kubelet's probes cannot send a key"),
    (("tls.enabled=true",), "needs tls.secretName"),
    (("tls.enabled=true", "tls.secretName=t", "probes.type=grpc"), "do not speak TLS"),
    (("tls.clientCA.secretName=ca",), "needs tls.enabled=true"),
    (("tls.enabled=true", "tls.secretName=t", "tls.clientCA.secretName=ca"), "present no client certificate"),
    (("networkPolicy.enabled=true", "networkPolicy.allowedClients=[]"), "would admit everyone"),
])
def test_combinations_that_cannot_work_are_refused(sets, complaint):
    args = ["template", RELEASE, str(EXAMPLES.parent)]
    for item in sets:
        args += ["--set-json" if item.endswith("]") else "--set", item]  # --set cannot give an empty list
    result = helm(*args)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr
