#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests under deploy/.
#
#   bash deploy/validate.sh        (from the repository root; CI runs it so)
#
# 1. renders deploy/base and every deploy/overlays/*/ with `kubectl kustomize` (the pinned
#    kubectl that scripts/lib.sh installs into .local/tools);
# 2. validates each render with `kubernetes-validate --strict` (bundled JSON
#    schemas, no network) against the oldest and newest Kubernetes we target;
# 3. cross-checks what schemas cannot see: Secret/ConfigMap references and
#    keys, Service selectors and named ports, probe ports, the restricted Pod
#    Security settings, and that the whole shutdown (preStop pause + drain + the
#    budget after the drain + an exit margin) fits in the termination grace period, and
#    that dispute-core's egress allows HTTPS to no special-purpose address range.
# Exits non-zero if anything fails.
set -euo pipefail

# Oldest and newest Kubernetes minor versions the manifests must be valid for
# (native gRPC probes are GA since 1.27). Override: KUBE_VERSIONS="1.30 1.33".
KUBE_VERSIONS="${KUBE_VERSIONS:-1.28 1.37}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned kubectl and kubernetes-validate, installed into .local/tools on first use
# (scripts/lib.sh); no system kubectl or system pip needed.
source scripts/lib.sh
ensure_kube_tools

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

targets=(deploy/base)
for d in deploy/overlays/*/; do
  [ -f "${d}kustomization.yaml" ] && targets+=("${d%/}")
done

status=0
renders=()
for t in "${targets[@]}"; do
  f="$out/$(echo "$t" | tr / _).yaml"
  if ! "$KUBECTL" kustomize "$t" >"$f"; then
    echo "FAIL $t: kubectl kustomize could not render it" >&2
    status=1
    continue
  fi
  renders+=("$t=$f")
  for v in $KUBE_VERSIONS; do
    if "$KUBE_PYTHON" -m kubernetes_validate --strict --quiet -k "$v" "$f"; then
      echo "ok   $t: schema-valid (strict) against Kubernetes $v"
    else
      echo "FAIL $t: schema validation against Kubernetes $v" >&2
      status=1
    fi
  done
done

# The binaries the manifests run: every env variable and flag a manifest gives them must be
# one they accept (`--help` lists each flag with its env fallback).
cargo build --quiet --locked -p dispute-core -p document-store --bins
export SERVICE_BIN_DIR="${CARGO_TARGET_DIR:-target}/debug"

# Cross-reference checks on each render (PyYAML comes with kubernetes-validate).
if [ "${#renders[@]}" -gt 0 ]; then
  "$KUBE_PYTHON" deploy/check_manifests.py "${renders[@]}" || status=1

  # The checks must catch what they claim to: a render with a variable the binary does not
  # read and a grace period too short for the shutdown has to fail them.
  bad="$out/negative.yaml"
  "$KUBE_PYTHON" - "${renders[0]#*=}" "$bad" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "Deployment" and d["metadata"]["name"] == "dispute-core":
        d["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
            {"name": "DISPUTE_CORE_NO_SUCH_SETTING", "value": "1"})
        d["spec"]["template"]["spec"]["containers"][0]["args"] = ["--no-such-flag=1"]
    if d["kind"] == "Deployment" and d["metadata"]["name"] == "document-store":
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 10
    if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "dispute-core-egress":
        for rule in d["spec"]["egress"]:
            for peer in rule.get("to", []):
                if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0":
                    peer["ipBlock"]["except"].remove("169.254.0.0/16")
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
  if negative=$("$KUBE_PYTHON" deploy/check_manifests.py "negative/base=$bad" 2>&1); then
    echo "FAIL the manifest checks accepted a broken render" >&2
    status=1
  else
    for expected in "reads no environment variable DISPUTE_CORE_NO_SUCH_SETTING" \
        "does not accept --no-such-flag" "exceeds terminationGracePeriodSeconds 10s" \
        "allows HTTPS to special-purpose range 169.254.0.0/16"; do
      if grep -q "$expected" <<<"$negative"; then
        echo "ok   negative check: a broken render fails with '$expected'"
      else
        echo "FAIL negative check: no '$expected' in: $negative" >&2
        status=1
      fi
    done
  fi
fi

if [ "$status" -ne 0 ]; then
  echo "validate.sh: FAILED" >&2
  exit 1
fi
echo "validate.sh: all manifests valid"
