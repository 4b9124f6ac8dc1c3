"""What the schemas cannot see in deploy/: the files agreeing with each other.

Run by deploy/validate.sh with the Python of its venv (PyYAML):

    check_deploy.py k8s DIR             cross-references of the Kubernetes files
    check_deploy.py compose FILE        the Compose file against its neighbours
    check_deploy.py config-k8s DIR DOCKERFILE SYNOD
    check_deploy.py config-compose FILE DOCKERFILE SYNOD
                                        `SYNOD config check` on the config a
                                        pod or a Compose node starts with:
                                        the image's ENV, the manifest's env,
                                        the config file (a real process)

Each prints what is wrong, one line per problem, and exits 1 if anything is.
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

# What deploy/docker/entrypoint.sh reads and unsets before synod starts.
ENTRYPOINT_VARS = {"SYNOD_BIN", "SYNOD_NODE_ID_FROM_ORDINAL", "SYNOD_POD_NAME"}
# Stand-ins for the secrets, which are never in the repository.
DUMMY_SECRETS = {
    "SYNOD_SECURITY_JWT_SECRET": "0123456789abcdef0123456789abcdef",
    "SYNOD_ADMIN_PASSWORD": "not-a-real-password",
    "GRAFANA_ADMIN_PASSWORD": "not-a-real-password",
}
DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")

problems = []


def problem(message):
    problems.append(message)
    print(message)


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def seconds(text):
    """'10s' -> 10.0; the Compose and Synod durations used here."""
    m = DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"not a duration this check reads: {text!r}")
    value, unit = int(m.group(1)), m.group(2)
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def subset(labels, of):
    return all(of.get(k) == v for k, v in (labels or {}).items())


def image_env(dockerfile):
    """KEY=VALUE pairs of the runtime stage's ENV instructions."""
    with open(dockerfile) as f:
        text = f.read().replace("\\\n", " ")
    stages = re.split(r"(?im)^FROM\s", text)
    env = {}
    for line in stages[-1].splitlines():
        words = line.split()
        if words and words[0].upper() == "ENV":
            for word in words[1:]:
                key, _, value = word.partition("=")
                env[key] = value
    return env


def shutdown_grace(config_path):
    with open(config_path) as f:
        cfg = yaml.safe_load(f) or {}
    return seconds((cfg.get("node") or {}).get("shutdown_grace", "10s"))


# --- Kubernetes ---------------------------------------------------------


def k8s_objects(directory):
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    objects = []
    for resource in kustomization.get("resources", []):
        path = os.path.join(directory, resource)
        if not os.path.isfile(path):
            problem(f"kustomization.yaml: resource {resource} does not exist")
            continue
        objects.extend(load_all(path))
    return kustomization, objects


def statefulset_of(objects):
    sets = [o for o in objects if o.get("kind") == "StatefulSet"]
    if len(sets) != 1:
        problem(f"kustomization.yaml: expected one StatefulSet, found {len(sets)}")
        return None
    return sets[0]


def check_k8s(directory):
    kustomization, objects = k8s_objects(directory)
    listed = set(kustomization.get("resources", []))
    generated = {f for g in kustomization.get("configMapGenerator", []) for f in g.get("files", [])}
    optional = {"kustomization.yaml", "secret.example.yaml", "servicemonitor.yaml"}
    for name in sorted(os.listdir(directory)):
        if name.endswith((".yaml", ".yml")) and name not in listed | generated | optional:
            problem(f"{name}: not in kustomization.yaml's resources")
    for name in generated:
        if not os.path.isfile(os.path.join(directory, name)):
            problem(f"kustomization.yaml: configMapGenerator file {name} does not exist")

    sts = statefulset_of(objects)
    if sts is None:
        return
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    name = sts["metadata"]["name"]
    if not subset(spec["selector"]["matchLabels"], labels):
        problem("statefulset: selector does not match the pod template's labels")
    services = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Service"}
    for svc in services.values():
        if not subset(svc["spec"].get("selector"), labels):
            problem(f"service {svc['metadata']['name']}: selector does not match the pods")
    pdbs = [o for o in objects if o.get("kind") == "PodDisruptionBudget"]
    if len(pdbs) != 1:
        problem(f"kustomization.yaml: expected one PodDisruptionBudget, found {len(pdbs)}")
    for pdb in pdbs:
        if not subset(pdb["spec"]["selector"]["matchLabels"], labels):
            problem(f"pdb {pdb['metadata']['name']}: selector does not match the pods")
        if pdb["spec"].get("maxUnavailable") != 1:
            problem(f"pdb {pdb['metadata']['name']}: maxUnavailable must be 1 (three voters keep a quorum without one)")
    headless = services.get(spec["serviceName"])
    if headless is None:
        problem(f"statefulset: serviceName {spec['serviceName']} is not a Service of the kustomization")
    elif headless["spec"].get("clusterIP") != "None" or not headless["spec"].get("publishNotReadyAddresses"):
        problem(f"service {spec['serviceName']}: must be headless with publishNotReadyAddresses: true")
    if spec.get("podManagementPolicy") != "Parallel":
        problem("statefulset: podManagementPolicy must be Parallel (the nodes bootstrap together)")
    if pod.get("enableServiceLinks") is not False:
        problem("statefulset: enableServiceLinks must be false (service links add SYNOD_* variables synod refuses)")

    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for svc in services.values():
        for port in svc["spec"]["ports"]:
            if port.get("targetPort") not in ports:
                problem(f"service {svc['metadata']['name']}: targetPort {port.get('targetPort')} is no container port")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if container.get(probe, {}).get("httpGet", {}).get("port") not in ports:
            problem(f"statefulset: {probe} port is no container port")
    if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/health/ready":
        problem("statefulset: readinessProbe must ask /health/ready")
    if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
        problem("statefulset: livenessProbe must ask /health")

    if env.get("SYNOD_NODE_ID_FROM_ORDINAL") != "true":
        problem("statefulset: SYNOD_NODE_ID_FROM_ORDINAL must be \"true\" (node id from the ordinal)")
    expect = int(env.get("SYNOD_CLUSTER_BOOTSTRAP_EXPECT") or 0)
    if expect != spec["replicas"]:
        problem(f"statefulset: SYNOD_CLUSTER_BOOTSTRAP_EXPECT {expect} != replicas {spec['replicas']}")
    seeds = (env.get("SYNOD_CLUSTER_SEEDS") or "").split(",")
    want = [f"{name}-{i}.{spec['serviceName']}.$(POD_NAMESPACE).svc:{ports['http']}" for i in range(expect)]
    if seeds != want:
        problem(f"statefulset: SYNOD_CLUSTER_SEEDS {','.join(seeds)} != {','.join(want)}")
    for kind in ("http", "grpc", "raft"):
        advertised = env.get(f"SYNOD_NODE_ADVERTISE_{kind.upper()}")
        if advertised != f"$(POD_NAME).{spec['serviceName']}.$(POD_NAMESPACE).svc:{ports[kind]}":
            problem(f"statefulset: SYNOD_NODE_ADVERTISE_{kind.upper()} {advertised} is not this pod's {kind} name")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    for path, volume in mounts.items():
        if volume not in volumes and volume not in claims:
            problem(f"statefulset: mount {path} names no volume {volume}")
    if "/tmp" not in mounts or "emptyDir" not in volumes.get(mounts["/tmp"], {}):
        problem("statefulset: /tmp must be an emptyDir (the root filesystem is read-only)")
    generators = {g["name"]: g for g in kustomization.get("configMapGenerator", [])}
    for volume in volumes.values():
        if "configMap" in volume and volume["configMap"]["name"] not in generators:
            problem(f"statefulset: configMap {volume['configMap']['name']} is not generated")
    args = container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    config_file = None
    for path, volume in mounts.items():
        cm = volumes.get(volume, {}).get("configMap")
        if cm and config_path and config_path.startswith(path.rstrip("/") + "/"):
            file = config_path[len(path.rstrip("/")) + 1 :]
            if file in generators.get(cm["name"], {}).get("files", []):
                config_file = os.path.join(directory, file)
    if config_file is None:
        problem(f"statefulset: --config {config_path} is not a file of a generated ConfigMap")

    secret_names = {g["name"] for g in kustomization.get("secretGenerator", [])}
    secret_keys = set()
    for doc in load_all(os.path.join(directory, "secret.example.yaml")):
        if doc["metadata"]["name"] not in secret_names:
            problem(f"secret.example.yaml: {doc['metadata']['name']} is not the generated Secret")
        secret_keys |= set(doc.get("stringData", {}))
    for ref in container.get("envFrom", []):
        if ref.get("secretRef", {}).get("name") not in secret_names:
            problem(f"statefulset: envFrom secret {ref.get('secretRef', {}).get('name')} is not generated")
    if secret_keys != {"SYNOD_SECURITY_JWT_SECRET", "SYNOD_ADMIN_PASSWORD"}:
        problem(f"secret.example.yaml: keys {sorted(secret_keys)} are not the jwt secret and admin password")

    ctx = container.get("securityContext", {})
    if not (
        ctx.get("readOnlyRootFilesystem") is True
        and ctx.get("allowPrivilegeEscalation") is False
        and ctx.get("capabilities", {}).get("drop") == ["ALL"]
        and pod.get("securityContext", {}).get("runAsNonRoot") is True
        and pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault"
    ):
        problem("statefulset: the securityContext lost one of its restrictions")
    if "limits" not in container.get("resources", {}) or "requests" not in container.get("resources", {}):
        problem("statefulset: resources need requests and limits")

    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = float(pre_stop[-1]) if pre_stop[:1] == ["/bin/sleep"] else 0.0
    if config_file:
        needed = sleep + shutdown_grace(config_file)
        if pod.get("terminationGracePeriodSeconds", 30) <= needed:
            problem(f"statefulset: terminationGracePeriodSeconds must exceed preStop + node.shutdown_grace ({needed:g}s)")

    monitor_path = os.path.join(directory, "servicemonitor.yaml")
    for monitor in load_all(monitor_path):
        if monitor.get("apiVersion") != "monitoring.coreos.com/v1" or monitor.get("kind") != "ServiceMonitor":
            problem("servicemonitor.yaml: not a monitoring.coreos.com/v1 ServiceMonitor")
            continue
        picked = [s for s in services.values() if subset(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        if len(picked) != 1:
            problem(f"servicemonitor.yaml: selects {len(picked)} Services, not one")
            continue
        port_names = {p["name"] for p in picked[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("port") not in port_names or endpoint.get("path") != "/metrics":
                problem(f"servicemonitor.yaml: endpoint {endpoint} is not /metrics on a port of {picked[0]['metadata']['name']}")


def k8s_pod_env(directory, ordinal, namespace="default"):
    """The environment the pod `<sts>-<ordinal>` hands synod, and its --config."""
    kustomization, objects = k8s_objects(directory)
    sts = statefulset_of(objects)
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    pod_name = f"{sts['metadata']['name']}-{ordinal}"
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    env = {}
    for secret in load_all(os.path.join(directory, "secret.example.yaml")):
        for key in secret.get("stringData", {}):
            env[key] = DUMMY_SECRETS.get(key, "placeholder")
    for item in container.get("env", []):
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        else:
            value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        env[item["name"]] = value
    # What the entrypoint does with its own variables.
    if env.pop("SYNOD_NODE_ID_FROM_ORDINAL", None) == "true":
        env.setdefault("SYNOD_NODE_ID", str(ordinal + 1))
    for var in ENTRYPOINT_VARS:
        env.pop(var, None)
    args = container.get("args", [])
    config = os.path.join(directory, os.path.basename(args[args.index("--config") + 1]))
    return env, config


# --- Compose ------------------------------------------------------------


def compose_value(value):
    """${VAR:?message} and ${VAR:-default}, as Compose would with dummies."""

    def sub(m):
        var, op, rest = m.group(1), m.group(2), m.group(3)
        if var in DUMMY_SECRETS:
            return DUMMY_SECRETS[var]
        return rest if op == ":-" else os.environ.get(var, "")

    return re.sub(r"\$\{(\w+)(?:(:[?-])([^}]*))?\}", sub, str(value))


def synod_services(compose):
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("image", "").startswith("synod") or "build" in svc
    }


def check_compose(path):
    directory = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        compose = yaml.safe_load(f)
    nodes = synod_services(compose)
    ids = set()
    for name, svc in nodes.items():
        env = svc.get("environment", {})
        if not isinstance(env, dict):
            problem(f"{name}: environment must be a mapping")
            continue
        ids.add(env.get("SYNOD_NODE_ID"))
        seeds = sorted(env.get("SYNOD_CLUSTER_SEEDS", "").split(","))
        if seeds != sorted(f"{n}:7700" for n in nodes):
            problem(f"{name}: SYNOD_CLUSTER_SEEDS {env.get('SYNOD_CLUSTER_SEEDS')} != the synod services' :7700")
        if str(env.get("SYNOD_CLUSTER_BOOTSTRAP_EXPECT")) != str(len(nodes)):
            problem(f"{name}: SYNOD_CLUSTER_BOOTSTRAP_EXPECT is not {len(nodes)}")
        for kind, port in (("HTTP", 7700), ("GRPC", 7701), ("RAFT", 7702)):
            if env.get(f"SYNOD_NODE_ADVERTISE_{kind}") != f"{name}:{port}":
                problem(f"{name}: SYNOD_NODE_ADVERTISE_{kind} is not {name}:{port}")
        for var in ("SYNOD_SECURITY_JWT_SECRET", "SYNOD_ADMIN_PASSWORD"):
            if not re.fullmatch(r"\$\{" + var + r":\?[^}]+\}", str(env.get(var, ""))):
                problem(f"{name}: {var} must come from the env file as ${{{var}:?...}}")
        if seconds(svc.get("stop_grace_period", "10s")) <= shutdown_grace_default():
            problem(f"{name}: stop_grace_period must exceed node.shutdown_grace")
        if "healthcheck" not in svc:
            problem(f"{name}: no healthcheck")
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problem(f"{name}: port {port} is published beyond the host's loopback")
    if len(ids) != len(nodes) or None in ids:
        problem(f"synod services: node ids {sorted(map(str, ids))} are not distinct")

    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                if not os.path.exists(os.path.join(directory, source)):
                    problem(f"{name}: mounted {source} does not exist")
            elif source not in (compose.get("volumes") or {}):
                problem(f"{name}: volume {source} is not declared")
    build = next(iter(nodes.values())).get("build", {})
    if not os.path.isfile(os.path.join(directory, build.get("context", "."), build.get("dockerfile", "Dockerfile"))):
        problem("synod services: the build's Dockerfile does not exist")

    prometheus = compose["services"].get("prometheus")
    if prometheus:
        with open(os.path.join(directory, "prometheus.yml")) as f:
            prom = yaml.safe_load(f)
        targets = sorted(t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"])
        if targets != sorted(f"{n}:7700" for n in nodes):
            problem(f"prometheus.yml: targets {targets} are not every synod service's :7700")
    provisioning = os.path.join(directory, "grafana", "provisioning")
    with open(os.path.join(provisioning, "datasources", "prometheus.yml")) as f:
        sources = yaml.safe_load(f)["datasources"]
    if not any(s["type"] == "prometheus" and s["url"] == "http://prometheus:9090" for s in sources):
        problem("grafana: no data source for the Compose Prometheus")
    with open(os.path.join(provisioning, "dashboards", "synod.yml")) as f:
        providers = yaml.safe_load(f)["providers"]
    mounted = {str(v).split(":")[1].rsplit("/", 1)[0] for v in compose["services"]["grafana"]["volumes"] if str(v).endswith(".json:ro")}
    for provider in providers:
        if provider["options"]["path"] not in mounted:
            problem(f"grafana: provider path {provider['options']['path']} has no dashboard mounted")


def shutdown_grace_default():
    # The node's default (config.yaml); Compose sets no config file.
    return 10.0


def compose_env(path, service):
    with open(path) as f:
        compose = yaml.safe_load(f)
    env = {k: compose_value(v) for k, v in compose["services"][service]["environment"].items()}
    for var in ENTRYPOINT_VARS:
        env.pop(var, None)
    return env


# --- running synod ------------------------------------------------------


def config_check(synod, label, env, config):
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(), **env}
    result = subprocess.run([synod, "config", "check", config], env=full, capture_output=True, text=True)
    if result.returncode != 0:
        problem(f"{label}: {(result.stderr or result.stdout).strip()}")


def main(argv):
    try:
        return run(argv)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OSError, yaml.YAMLError) as e:
        # A file too broken to follow: the schema checks say where.
        problem(f"cannot follow the files: {type(e).__name__}: {e}")
        return 1


def run(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command == "k8s" and len(argv) == 3:
        check_k8s(argv[2])
    elif command == "compose" and len(argv) == 3:
        check_compose(argv[2])
    elif command == "config-k8s" and len(argv) == 5:
        directory, dockerfile, synod = argv[2:]
        replicas = statefulset_of(k8s_objects(directory)[1])["spec"]["replicas"]
        for ordinal in range(replicas):
            env, config = k8s_pod_env(directory, ordinal)
            config_check(synod, f"pod {ordinal}", {**image_env(dockerfile), **env}, config)
    elif command == "config-compose" and len(argv) == 5:
        path, dockerfile, synod = argv[2:]
        with open(path) as f:
            services = synod_services(yaml.safe_load(f))
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as empty:
            for service in services:
                env = {**image_env(dockerfile), **compose_env(path, service)}
                config_check(synod, service, env, empty.name)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
