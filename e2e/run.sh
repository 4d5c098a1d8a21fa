#!/usr/bin/env bash
# End-to-end suite: the operator and a proxy run as local processes against
# the real Kubernetes API named by KUBECONFIG, beside a local redis-server,
# with a loopback HTTP backend. It needs nothing from the cluster but its API
# (and the right to install CRDs). Without a reachable cluster it says why
# and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "e2e: skipped: $*"; exit 0; }
fail() { echo "e2e: FAILED: $*" >&2; exit 1; }
command -v kubectl >/dev/null || skip "kubectl is not installed"
if [ -z "${KUBECONFIG:-}" ] && [ ! -f "$HOME/.kube/config" ]; then
  skip "no cluster configured: set KUBECONFIG (e2e/README.md shows kind and k3d)"
fi
kubectl version --request-timeout=5s >/dev/null 2>&1 || skip "the cluster in KUBECONFIG does not answer"
command -v redis-server >/dev/null || fail "redis-server is not installed"
command -v python3 >/dev/null || fail "python3 is needed for the loopback backend"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() {
  # Delete while the operator still runs, so the Tenant's finalizer is released.
  kubectl delete --ignore-not-found --timeout=30s -f e2e/over-quota.yaml >/dev/null 2>&1 || true
  kubectl delete --ignore-not-found --timeout=30s -f e2e/manifests.yaml >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  kubectl delete --ignore-not-found --wait=false namespace veloflux-e2e >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Wait until a command succeeds (up to $1 seconds).
wait_for() {
  local seconds=$1; shift
  for _ in $(seq $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}
condition() { # kind ns name type -> "status reason"
  kubectl get "$1" ${2:+-n "$2"} "$3" \
    -o jsonpath="{.status.conditions[?(@.type==\"$4\")].status} {.status.conditions[?(@.type==\"$4\")].reason}"
}
expect_condition() { # kind ns name type want
  local got
  for _ in $(seq 150); do
    got=$(condition "$1" "$2" "$3" "$4" 2>/dev/null || true)
    [ "$got" = "$5" ] && { echo "ok: $1 $3 $4 = $5"; return 0; }
    sleep 0.2
  done
  fail "$1 $3: $4 is '$got', want '$5'"
}
status_of() { curl -s -o /dev/null -w '%{http_code}' -H "Host: $1" "http://127.0.0.1:$proxy_port/"; }

echo "==> building"
cargo build -q -p veloflux-operator -p veloflux-proxy
target=${CARGO_TARGET_DIR:-target}/debug

redis_port=$(free_port); backend_port=$(free_port); proxy_port=$(free_port)
proxy_admin=$(free_port); operator_admin=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
mkdir -p "$work/www" && echo ok >"$work/www/index.html"
python3 -m http.server "$backend_port" --bind 127.0.0.1 --directory "$work/www" >"$work/backend.log" 2>&1 &
pids+=($!)

echo "==> CRDs"
kubectl apply --server-side -f manifests/crds/ >/dev/null
for crd in plans tenants routes dedicatedinstances; do
  kubectl wait --for condition=established --timeout=60s "crd/$crd.veloflux.io" >/dev/null
done
kubectl create namespace veloflux-e2e --dry-run=client -o yaml | kubectl apply -f - >/dev/null

echo "==> operator and proxy (local processes)"
"$target/veloflux-operator" --redis "redis://127.0.0.1:$redis_port" \
  --admin-listen "127.0.0.1:$operator_admin" --lease-namespace veloflux-e2e \
  --identity e2e >"$work/operator.log" 2>&1 &
pids+=($!)
"$target/veloflux-proxy" --redis "redis://127.0.0.1:$redis_port" --proxy-id e2e-proxy \
  --listen "127.0.0.1:$proxy_port" --admin-listen "127.0.0.1:$proxy_admin" \
  --heartbeat-interval 500ms --access-log false >"$work/proxy.log" 2>&1 &
pids+=($!)
wait_for 60 curl -sf "http://127.0.0.1:$operator_admin/readyz" || { cat "$work/operator.log"; fail "operator not ready"; }

echo "==> tenant, plan, route"
sed "s/BACKEND/127.0.0.1:$backend_port/" e2e/manifests.yaml | kubectl apply -f - >/dev/null
expect_condition plan "" e2e-free Ready "True Ready"
expect_condition tenant "" e2e-acme Ready "True Ready"
expect_condition route e2e-acme web Accepted "True Accepted"
expect_condition route e2e-acme web Programmed "True Programmed"
wait_for 30 test "$(status_of e2e-acme.test)" = 200 || fail "e2e-acme.test is not served"
echo "ok: e2e-acme.test served through the proxy"

echo "==> quota, then a plan upgrade"
sed "s/BACKEND/127.0.0.1:$backend_port/" e2e/over-quota.yaml | kubectl apply -f - >/dev/null
expect_condition route e2e-acme extra Accepted "False QuotaExceeded"
test "$(status_of api.e2e-acme.test)" = 404 || fail "an over-quota route is served"
kubectl patch plan e2e-free --type merge -p '{"spec":{"limits":{"maxRoutes":2}}}' >/dev/null
expect_condition route e2e-acme extra Accepted "True Accepted"
wait_for 30 test "$(status_of api.e2e-acme.test)" = 200 || fail "the re-admitted route is not served"
echo "ok: re-admitted after the upgrade"

echo "==> deleting the tenant removes its routing"
kubectl delete tenant e2e-acme --wait=true --timeout=60s >/dev/null
wait_for 30 test "$(status_of e2e-acme.test)" = 404 || fail "a deleted tenant is still served"
echo "ok: e2e-acme.test gone"
echo "e2e: passed"
