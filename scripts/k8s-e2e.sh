#!/usr/bin/env bash
# End-to-end check of Tandem on a real Kubernetes cluster (not part of pytest).
#
#   KUBECONFIG=~/.kube/config TANDEM_IMAGE=registry.example/tandem:dev scripts/k8s-e2e.sh
#
# Installs the chart (two control-plane replicas), deploys two annotated apps and a state
# store, then checks: service invocation between them, state, a pod's Configuration
# (dapr.io/config) applied to its runtime and Envoy, a missing one named in the runtime's log,
# the mTLS identities the control plane issued, and that the mesh keeps working after the
# leading control-plane replica is killed (a new leader takes the Lease; sidecars reconnect
# to the other one).
#
# TANDEM_IMAGE: an image built from this repository's Dockerfile that the cluster can pull
# (for kind: `docker build -t tandem:e2e . && kind load docker-image tandem:e2e`).
# KEEP=1 leaves everything installed for inspection. Exits non-zero on the first failure;
# a missing KUBECONFIG, cluster, kubectl, helm or image is a failure, never a skip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CP_NS="${CP_NS:-tandem-system}"
APP_NS="${APP_NS:-tandem-e2e}"
RELEASE="${RELEASE:-tandem}"
TIMEOUT="${TIMEOUT:-180s}"

fail() {
  echo "k8s-e2e: FAIL: $*" >&2
  exit 1
}
step() { echo "k8s-e2e: $*"; }

[[ -n "${KUBECONFIG:-}" ]] || fail "KUBECONFIG is not set (point it at the cluster to test)"
for path in ${KUBECONFIG//:/ }; do
  [[ -r "$path" ]] || fail "KUBECONFIG names $path, which cannot be read"
done
[[ -n "${TANDEM_IMAGE:-}" ]] || fail "TANDEM_IMAGE is not set (repository:tag the cluster can pull)"
command -v kubectl >/dev/null || fail "kubectl is not installed"
command -v helm >/dev/null || fail "helm is not installed"
command -v python3 >/dev/null || fail "python3 is not installed (it quotes the test app's source)"
kubectl version >/dev/null 2>&1 || fail "no cluster answers at $(kubectl config current-context 2>/dev/null || echo '?')"

cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    echo "--- control plane logs" >&2
    kubectl logs -n "$CP_NS" -l app.kubernetes.io/component=controlplane -c controlplane \
      --tail=60 --prefix >&2 || true
    kubectl get pods -A -l dapr.io/sidecar-injected=true -o wide >&2 || true
  fi
  if [[ "${KEEP:-0}" != 1 ]]; then
    kubectl delete namespace "$APP_NS" --ignore-not-found --wait=false >/dev/null || true
    helm uninstall "$RELEASE" -n "$CP_NS" >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap cleanup EXIT

step "installing the chart ($TANDEM_IMAGE) into $CP_NS"
repository="${TANDEM_IMAGE%:*}"
tag="${TANDEM_IMAGE##*:}"
[[ "$repository" != "$TANDEM_IMAGE" ]] || fail "TANDEM_IMAGE must be repository:tag"
helm upgrade --install "$RELEASE" "$ROOT/charts/tandem" -n "$CP_NS" --create-namespace \
  --set image.repository="$repository" --set image.tag="$tag" \
  --set replicas=2 --wait --timeout "$TIMEOUT"
kubectl rollout status -n "$CP_NS" "deployment/$RELEASE-controlplane" --timeout "$TIMEOUT"

step "deploying three annotated apps, a Configuration and a state store into $APP_NS"
kubectl create namespace "$APP_NS" --dry-run=client -o yaml | kubectl apply -f -
# A tiny HTTP app in the Tandem image (it has Python): answers /hello with its app id.
APP_SOURCE='
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + os.environ["APP_ID"]).encode()
        self.send_response(200); self.send_header("content-length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 8080), H).serve_forever()
'
# checkout runs with this Configuration (dapr.io/config): features for its runtime, an API
# allow list for its Envoy. lost names one that does not exist: its sidecar must not start.
kubectl apply -n "$APP_NS" -f - <<EOF
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: checkout-config
spec:
  features:
    - {name: ActorStateTTL, enabled: true}
  api:
    allowed:
      - {name: invoke, version: v1.0, protocol: http}
      - {name: state, version: v1.0, protocol: http}
      - {name: metadata, version: v1.0, protocol: http}
EOF
for app in orders checkout lost; do
  case "$app" in
    checkout) config='dapr.io/config: checkout-config' ;;
    lost) config='dapr.io/config: no-such-config' ;;
    *) config='dapr.io/log-level: info' ;;
  esac
  kubectl apply -n "$APP_NS" -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $app
spec:
  replicas: 1
  selector:
    matchLabels: {app: $app}
  template:
    metadata:
      labels: {app: $app}
      annotations:
        dapr.io/enabled: "true"
        dapr.io/app-id: $app
        dapr.io/app-port: "8080"
        $config
    spec:
      containers:
        - name: app
          image: $TANDEM_IMAGE
          command: [python, -c, $(printf '%s' "$APP_SOURCE" | python3 -c 'import json,sys;print(json.dumps(sys.stdin.read()))')]
EOF
done
kubectl apply -n "$APP_NS" -f - <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
EOF
for app in orders checkout; do
  kubectl rollout status -n "$APP_NS" "deployment/$app" --timeout "$TIMEOUT" ||
    fail "$app did not become ready"
done
injected="$(kubectl get pod -n "$APP_NS" -l app=checkout -o jsonpath='{.items[0].spec.initContainers[*].name}')"
[[ "$injected" == *tandem-envoy* ]] || fail "checkout was not injected (init containers: $injected)"

# Runs a Python snippet in checkout's app container against its sidecar (127.0.0.1:3500).
in_checkout() {
  kubectl exec -n "$APP_NS" deploy/checkout -c app -- python -c "$1"
}
INVOKE='
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:3500/v1.0/invoke/orders/method/hello", timeout=10).read().decode())'
STATE='
import json, sys, urllib.request
url = "http://127.0.0.1:3500/v1.0/state/statestore"
body = json.dumps([{"key": "k", "value": sys.argv[1] if len(sys.argv) > 1 else "v1"}]).encode()
urllib.request.urlopen(urllib.request.Request(url, body, {"content-type": "application/json"}), timeout=10)
print(urllib.request.urlopen(url + "/k", timeout=10).read().decode())'

check_mesh() {
  local answer
  answer="$(in_checkout "$INVOKE")" || return 1
  [[ "$answer" == "hello from orders" ]] || { echo "invocation answered: $answer" >&2; return 1; }
  answer="$(in_checkout "$STATE")" || return 1
  [[ "$answer" == '"v1"' ]] || { echo "state answered: $answer" >&2; return 1; }
}

step "checking invocation (checkout -> orders) and state"
check_mesh || fail "invocation or state through the sidecars"

step "checking checkout's Configuration (runtime features, Envoy's API allow list)"
CONFIGURED='
import json, urllib.error, urllib.request
meta = json.load(urllib.request.urlopen("http://127.0.0.1:3500/v1.0/metadata", timeout=10))
try:
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:3500/v1.0/publish/p/t", b"{}"), timeout=10)
    refused = "not refused"
except urllib.error.HTTPError as exc:
    refused = str(exc.code) + " " + json.load(exc)["errorCode"]
print(",".join(meta.get("enabledFeatures", [])), refused)'
answer="$(in_checkout "$CONFIGURED")" || fail "checkout's sidecar did not answer"
[[ "$answer" == "ActorStateTTL 404 ERR_BAD_REQUEST" ]] ||
  fail "checkout's Configuration is not applied (features, publish: $answer)"

step "checking that a missing Configuration stops the sidecar, named in the runtime's log"
deadline=$((SECONDS + 120))
until kubectl logs -n "$APP_NS" deploy/lost -c tandem-runtime --tail=-1 2>/dev/null |
  grep -q "Configuration 'no-such-config' not found in namespace '$APP_NS'"; do
  ((SECONDS < deadline)) || fail "lost's runtime did not name its missing Configuration"
  sleep 3
done
ready="$(kubectl get pods -n "$APP_NS" -l app=lost -o jsonpath='{.items[0].status.containerStatuses[0].ready}')"
[[ "$ready" != "true" ]] || fail "lost became ready without its Configuration"

step "checking the mTLS identities the control plane issued"
logs="$(kubectl logs -n "$CP_NS" -l app.kubernetes.io/component=controlplane -c controlplane --tail=-1)"
for app in orders checkout; do
  grep -q "certificate issued.*spiffe://public/ns/$APP_NS/$app" <<<"$logs" ||
    fail "no certificate issued for spiffe://public/ns/$APP_NS/$app"
done
mtls="$(kubectl get configmap -n "$CP_NS" "$RELEASE-mesh" -o jsonpath='{.data.config\.yaml}')"
grep -q "enabled: true" <<<"$mtls" || fail "mTLS is not on in the mesh configuration"

step "killing the leading control-plane replica"
leader="$(kubectl get lease -n "$CP_NS" "$RELEASE-controlplane" -o jsonpath='{.spec.holderIdentity}')"
[[ -n "$leader" ]] || fail "no control-plane replica holds the lease"
kubectl delete pod -n "$CP_NS" "$leader" --wait=false
deadline=$((SECONDS + 120))
until new="$(kubectl get lease -n "$CP_NS" "$RELEASE-controlplane" -o jsonpath='{.spec.holderIdentity}')" &&
  [[ -n "$new" && "$new" != "$leader" ]]; do
  ((SECONDS < deadline)) || fail "no other replica took the lease from $leader"
  sleep 2
done
step "the lease moved from $leader to $new"

step "checking the mesh still works"
deadline=$((SECONDS + 120))
until check_mesh; do
  ((SECONDS < deadline)) || fail "invocation or state after the control-plane replica died"
  sleep 3
done
step "PASS"
