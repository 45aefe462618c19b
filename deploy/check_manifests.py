#!/usr/bin/env python3
"""Cross-reference checks on rendered manifests that JSON schemas cannot see.

    check_manifests.py TARGET=RENDER.yaml ...

Run by deploy/validate.sh with SERVICE_BIN_DIR naming the directory of the built
dispute-core and document-store binaries. Exits 1 and prints FAIL lines on a problem.
"""
import ipaddress
import os
import re
import subprocess
import sys
import yaml

# The Secret the base references but never defines: the minio-test overlay generates it,
# a production install brings it from its secret manager.
EXTERNAL_SECRET = "dispute-platform-secrets"
EXTERNAL_KEYS = {"auth-jwt-secret", "dispute-core-background-token", "dispute-core-database-url",
                 "dispute-core-webhook-secret-keys",
                 "document-store-database-url", "s3-access-key-id",
                 "s3-secret-access-key", "dispute-core-migration-database-url",
                 "document-store-migration-database-url"}
SERVICES = {"dispute-core": 50051, "document-store": 50052}
HEALTH_SERVICES = {"dispute-core": "disputes.v1.DisputeService",
                   "document-store": "documents.v1.DocumentService"}
# What a pod may need after SIGTERM, besides the preStop pause and the drain: the
# budget after the drain (settings whose defaults are the binaries' defaults), and a
# margin to close pools and flush telemetry. preStop + drain + these + margin must fit
# in terminationGracePeriodSeconds.
AFTER_DRAIN = {"dispute-core": {"DISPUTE_CORE_WORKER_STOP_TIMEOUT_SECS": 5},
               "document-store": {"DOCUMENT_STORE_UPLOAD_CLEANUP_TIMEOUT_SECS": 5}}
# The special-purpose ranges webhook deliveries refuse, read from the Rust table so the
# egress policy cannot drift from it: every egress ipBlock of dispute-core that allows
# HTTPS must except each of them that it overlaps.
URLS_RS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "crates/dispute-core/src/domain/webhooks/urls.rs")


def special_ranges():
    text = open(URLS_RS).read()
    nets = []
    for m in re.finditer(r"Ipv4Addr::new\(([\d, ]+)\), (\d+), \"", text):
        octets = ".".join(x.strip() for x in m.group(1).split(","))
        nets.append(ipaddress.ip_network(f"{octets}/{m.group(2)}"))
    for m in re.finditer(r"Ipv6Addr::new\(([0-9a-fx, ]+)\), (\d+), \"", text):
        groups = [int(x.strip(), 0) for x in m.group(1).split(",")]
        addr = ipaddress.IPv6Address(sum(g << (16 * (7 - i)) for i, g in enumerate(groups)))
        nets.append(ipaddress.ip_network(f"{addr}/{m.group(2)}"))
    return nets


DEFAULT_DRAIN_SECONDS = 20
EXIT_MARGIN_SECONDS = 5

def prestop_seconds(container):
    """The preStop pause: `sleep N` (exec) or a sleep action; 0 without a preStop."""
    pre = container.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    cmd = pre.get("exec", {}).get("command", [])
    if len(cmd) == 2 and cmd[0] in ("sleep", "/bin/sleep"):
        return int(float(cmd[1]))
    return None

failed = False

# Environment variables the binaries read besides their flags' env fallbacks: the
# OpenTelemetry SDK's standard variables, the log filter, the allocators (glibc, mimalloc), and the AWS
# SDK's credential chain. Values used only for $(NAME) expansion are allowed separately.
PROCESS_ENV = {"RUST_LOG", "MALLOC_ARENA_MAX", "MIMALLOC_PURGE_DELAY",
               "MIMALLOC_ARENA_EAGER_COMMIT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
               "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
               "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
               "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT",
               "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_TRACES_SAMPLER",
               "OTEL_TRACES_SAMPLER_ARG", "AWS_REGION", "AWS_PROFILE",
               "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}
_accepted = {}

def accepted(binary, sub):
    """(flags, env names) that `binary [sub] --help` documents."""
    key = (binary, sub)
    if key not in _accepted:
        path = os.path.join(os.environ["SERVICE_BIN_DIR"], binary)
        out = subprocess.run([path] + ([sub] if sub else []) + ["--help"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            _accepted[key] = None
        else:
            flags = set(re.findall(r"(?m)^\s+(?:-\w, )?--([a-z0-9-]+)", out.stdout))
            envs = set(re.findall(r"\[env: ([A-Z0-9_]+)", out.stdout))
            _accepted[key] = (flags | {"help", "version"}, envs)
            # A subcommand also takes the top-level flags and their env fallbacks.
            top = accepted(binary, None) if sub else None
            if top is not None:
                _accepted[key] = (_accepted[key][0] | top[0], _accepted[key][1] | top[1])
    return _accepted[key]

def check(target, cond, msg):
    global failed
    if not cond:
        failed = True
        print(f"FAIL {target}: {msg}", file=sys.stderr)

for arg in sys.argv[1:]:
    target, path = arg.split("=", 1)
    is_base = target.endswith("/base")
    with open(path) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    secrets = {n: set(o.get("data", {})) | set(o.get("stringData", {}))
               for (k, n), o in objs.items() if k == "Secret"}
    configmaps = {n: o.get("data", {}) for (k, n), o in objs.items() if k == "ConfigMap"}

    if is_base:
        check(target, not secrets, "the base must not define Secrets")

    def secret_ref(where, name, key=None):
        if name in secrets:
            check(target, key is None or key in secrets[name],
                  f"{where}: Secret {name} has no key {key!r}")
        elif name == EXTERNAL_SECRET:
            check(target, key is None or key in EXTERNAL_KEYS,
                  f"{where}: {key!r} is not a documented key of {EXTERNAL_SECRET}")
        else:
            check(target, False, f"{where}: Secret {name} is not in the render")

    def configmap_ref(where, name, key=None):
        check(target, name in configmaps, f"{where}: ConfigMap {name} is not in the render")
        if name in configmaps and key is not None:
            check(target, key in configmaps[name], f"{where}: ConfigMap {name} has no key {key!r}")

    pods = []  # (workload, pod template)
    for (kind, name), o in objs.items():
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            pods.append((f"{kind}/{name}", o["spec"]["template"]))

    for where, tpl in pods:
        spec = tpl["spec"]
        psc = spec.get("securityContext", {})
        containers = spec.get("initContainers", []) + spec["containers"]
        for c in containers:
            cw = f"{where} container {c['name']}"
            csc = c.get("securityContext", {})
            # Pod Security Standard "restricted" essentials.
            check(target, csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
                  f"{cw}: runAsNonRoot is not true")
            check(target, (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
                  in ("RuntimeDefault", "Localhost"), f"{cw}: no RuntimeDefault seccompProfile")
            check(target, csc.get("allowPrivilegeEscalation") is False,
                  f"{cw}: allowPrivilegeEscalation is not false")
            check(target, "ALL" in csc.get("capabilities", {}).get("drop", []),
                  f"{cw}: capabilities do not drop ALL")
            res = c.get("resources", {})
            check(target, res.get("requests") and res.get("limits"),
                  f"{cw}: resource requests and limits must both be set")
            cmd = c.get("command") or []
            binary = cmd[0].rsplit("/", 1)[-1] if cmd else ""
            if cmd and cmd[0] == f"/usr/local/bin/{binary}" and binary in SERVICES:
                args = cmd[1:] + c.get("args", [])
                sub = args[0] if args and not args[0].startswith("-") else None
                known = accepted(binary, sub)
                check(target, known is not None,
                      f"{cw}: `{binary} {sub or ''} --help` failed: no such subcommand?")
                if known is not None:
                    flags, envs = known
                    for a in args[1 if sub else 0:]:
                        if a.startswith("--"):
                            flag = a[2:].split("=", 1)[0]
                            check(target, flag in flags, f"{cw}: {binary} does not accept --{flag}")
                    names = {e["name"] for e in c.get("env", [])}
                    for ef in c.get("envFrom", []):
                        names |= set(configmaps.get(ef.get("configMapRef", {}).get("name"), {}))
                    expanded = {m for e in c.get("env", [])
                                for m in re.findall(r"\$\(([A-Z0-9_]+)\)", e.get("value", ""))}
                    for name in sorted(names):
                        check(target, name in envs or name in PROCESS_ENV or name in expanded,
                              f"{cw}: {binary} reads no environment variable {name}")
            for e in c.get("env", []):
                vf = e.get("valueFrom", {})
                if "secretKeyRef" in vf:
                    secret_ref(f"{cw} env {e['name']}", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"])
                if "configMapKeyRef" in vf:
                    configmap_ref(f"{cw} env {e['name']}", vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"])
            for ef in c.get("envFrom", []):
                if "secretRef" in ef:
                    secret_ref(f"{cw} envFrom", ef["secretRef"]["name"])
                if "configMapRef" in ef:
                    configmap_ref(f"{cw} envFrom", ef["configMapRef"]["name"])
        for v in spec.get("volumes", []):
            if "configMap" in v:
                configmap_ref(f"{where} volume {v['name']}", v["configMap"]["name"])
            if "secret" in v:
                secret_ref(f"{where} volume {v['name']}", v["secret"]["secretName"])

    # The two services: replicas, hardening, gRPC probes, drain budget, PDB.
    for svc, port in SERVICES.items():
        dep = objs.get(("Deployment", svc))
        check(target, dep is not None, f"Deployment/{svc} missing")
        if dep is None:
            continue
        spec = dep["spec"]["template"]["spec"]
        c = next((c for c in spec["containers"] if c["name"] == svc), None)
        check(target, c is not None, f"Deployment/{svc}: no container named {svc}")
        if c is None:
            continue
        check(target, dep["spec"].get("replicas") == 2, f"Deployment/{svc}: replicas != 2")
        check(target, c.get("command") == [f"/usr/local/bin/{svc}"],
              f"Deployment/{svc}: command must select the {svc} binary")
        check(target, c.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
              f"Deployment/{svc}: readOnlyRootFilesystem is not true")
        ports = {p["containerPort"] for p in c.get("ports", [])}
        check(target, port in ports, f"Deployment/{svc}: containerPort {port} missing")
        for probe in ("readinessProbe", "livenessProbe"):
            check(target, c.get(probe, {}).get("grpc", {}).get("port") == port,
                  f"Deployment/{svc}: {probe} is not a gRPC probe on {port}")
        # Readiness asks for the service name (follows the database/S3); liveness and
        # startup must not, or a dependency outage would restart every pod.
        check(target, c.get("readinessProbe", {}).get("grpc", {}).get("service")
              == HEALTH_SERVICES[svc],
              f"Deployment/{svc}: readinessProbe must check service {HEALTH_SERVICES[svc]}")
        for probe in ("livenessProbe", "startupProbe"):
            check(target, c.get(probe, {}).get("grpc", {}).get("service", "") == "",
                  f"Deployment/{svc}: {probe} must check service \"\" (not tied to dependencies)")
        env = {}
        for ef in c.get("envFrom", []):
            env.update(configmaps.get(ef.get("configMapRef", {}).get("name"), {}))
        env.update({e["name"]: e.get("value") for e in c.get("env", []) if "value" in e})
        prefix = svc.upper().replace("-", "_")
        check(target, env.get(f"{prefix}_LISTEN_ADDR") == f"0.0.0.0:{port}",
              f"Deployment/{svc}: {prefix}_LISTEN_ADDR must be 0.0.0.0:{port}")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        prestop = prestop_seconds(c)
        check(target, prestop is not None,
              f"Deployment/{svc}: preStop must be a plain sleep so its length is known")
        drain = int(env.get(f"{prefix}_DRAIN_TIMEOUT_SECS") or DEFAULT_DRAIN_SECONDS)
        check(target, drain > 0, f"Deployment/{svc}: {prefix}_DRAIN_TIMEOUT_SECS must be > 0")
        after = {k: int(env.get(k) or default) for k, default in AFTER_DRAIN[svc].items()}
        needed = (prestop or 0) + drain + sum(after.values()) + EXIT_MARGIN_SECONDS
        parts = " + ".join([f"preStop {prestop}s", f"drain {drain}s"]
                           + [f"{k} {v}s" for k, v in after.items()]
                           + [f"margin {EXIT_MARGIN_SECONDS}s"])
        check(target, needed <= grace,
              f"Deployment/{svc}: {parts} = {needed}s exceeds terminationGracePeriodSeconds {grace}s")
        if needed <= grace:
            print(f"ok   {target}: Deployment/{svc} shutdown {parts} = {needed}s <= grace {grace}s")
        pdbs = [o for (k, _), o in objs.items() if k == "PodDisruptionBudget"
                and o["spec"]["selector"].get("matchLabels", {}).items()
                <= dep["spec"]["template"]["metadata"]["labels"].items()]
        check(target, len(pdbs) == 1, f"Deployment/{svc}: expected exactly one PodDisruptionBudget")
        s = objs.get(("Service", svc))
        check(target, s is not None and any(p.get("name") == "grpc" and p.get("appProtocol") == "grpc"
              and p.get("port") == port for p in s["spec"]["ports"]),
              f"Service/{svc}: needs port {port} named grpc with appProtocol grpc")

    # Every Service selects some pod template and its named target ports exist.
    for (kind, name), o in objs.items():
        if kind != "Service" or not o["spec"].get("selector"):
            continue
        sel = o["spec"]["selector"].items()
        matches = [tpl for _, tpl in pods if sel <= tpl["metadata"].get("labels", {}).items()]
        check(target, matches, f"Service/{name}: selector matches no pod template")
        named = {p["name"] for tpl in matches for c in tpl["spec"]["containers"]
                 for p in c.get("ports", []) if "name" in p}
        for p in o["spec"]["ports"]:
            tp = p.get("targetPort")
            if isinstance(tp, str):
                check(target, tp in named, f"Service/{name}: targetPort {tp!r} is not a container port name")

    # dispute-core's egress (it runs the webhook worker): some policy limits it, and no
    # rule that allows HTTPS reaches a special-purpose range.
    core_labels = {"app.kubernetes.io/name": "dispute-core"}
    egress = [o for (k, _), o in objs.items() if k == "NetworkPolicy"
              and "Egress" in o["spec"].get("policyTypes", [])
              and o["spec"]["podSelector"].get("matchLabels", {}).items() <= core_labels.items()]
    if ("Deployment", "dispute-core") in objs:
        check(target, egress, "no egress NetworkPolicy selects dispute-core")
    special = special_ranges()
    check(target, len(special) > 30, f"read only {len(special)} special ranges from {URLS_RS}")
    for pol in egress:
        where = f"NetworkPolicy/{pol['metadata']['name']}"
        for rule in pol["spec"].get("egress", []):
            ports = rule.get("ports")
            https = not ports or any(p.get("port") in (443, None) for p in ports)
            if not https:
                continue
            check(target, rule.get("to"), f"{where}: a rule allowing HTTPS to every destination")
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if not block:
                    continue
                cidr = ipaddress.ip_network(block["cidr"])
                excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                for net in special:
                    if net.version != cidr.version or not net.overlaps(cidr):
                        continue
                    covered = any(net.version == e.version and net.subnet_of(e) for e in excepted)
                    check(target, covered,
                          f"{where}: ipBlock {cidr} allows HTTPS to special-purpose range {net}")

    if not failed:
        print(f"ok   {target}: references, ports, probes, pod security and egress ({len(docs)} objects)")

sys.exit(1 if failed else 0)
