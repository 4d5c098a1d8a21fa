#!/usr/bin/env bash
# The control plane API under load: GET /api/tenants/{t}/routes with a valid
# access token (token verify + role check + handler: the tenant's record in
# Redis, its routes from the manifest folder) at 200 concurrent connections,
# the API on one core (one worker thread, pinned to core 0), wrk and Redis on
# core 1. Beside it in the same run, nginx (one worker, core 0) serving the
# same JSON body as a static file: the cost of plain HTTP on this machine,
# so the ratio says what authentication and the handler add.
# Reports requests/s, p50/p99 and CPU µs per request (from /proc/PID/stat
# over the measured window), per round and as medians.
#
# Usage: bash bench/api-compare.sh [ROUNDS] [SECONDS]   (defaults 3 and 10)
# Needs: redis-server, nginx, wrk (Debian packages), taskset, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
WARM=3
CONNS=200
API_CPU=0
LOAD_CPU=1

for tool in redis-server nginx wrk taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server nginx wrk curl util-linux)"; exit 1; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -q --release -p veloflux-api
API="$CARGO_TARGET_DIR/release/veloflux-api"

W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$W" 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/manifests" "$W/keys" "$W/outbox" "$W/www/api/tenants/acme"
chmod -R 755 "$W"
cat > "$W/manifests/plans.yaml" <<YAML
apiVersion: veloflux.io/v1alpha1
kind: Plan
metadata:
  name: free
spec:
  limits: {requestsPerMinute: 6000, burst: 1000, maxRoutes: 20, maxBackendsPerRoute: 4, maxDomains: 3}
  features: {staticBackends: true}
YAML

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port); API_PORT=$(free_port); ADMIN_PORT=$(free_port); NGINX_PORT=$(free_port)
taskset -c $LOAD_CPU redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" >/dev/null &
"$API" generate-key --signing-keys "$W/keys" >/dev/null
taskset -c $API_CPU "$API" --redis "redis://127.0.0.1:$REDIS_PORT" --manifests "$W/manifests" \
  --signing-keys "$W/keys" --outbox "$W/outbox" --listen "127.0.0.1:$API_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
  --allowed-parent-domain customers.example --worker-threads 1 --log warn &
API_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && break; sleep 0.1; done

BASE="http://127.0.0.1:$API_PORT"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
TOKEN=$(curl -sf "$BASE/api/signup" -H 'content-type: application/json' -d '{"email":"owner@acme.example","password":"correct horse battery staple","name":"Owner","tenant":{"id":"acme","domains":["acme.customers.example","*.acme.customers.example"]}}' | json "['access_token']")
VERIFY=$(python3 -c "import json,glob; print([json.load(open(f)) for f in sorted(glob.glob('$W/outbox/*.json'))][-1]['token'])")
curl -sf "$BASE/api/verify-email" -H 'content-type: application/json' -d "{\"token\":\"$VERIFY\"}"
for i in 1 2 3 4 5; do
  curl -sf "$BASE/api/tenants/acme/routes" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"web$i\",\"spec\":{\"hosts\":[\"web$i.acme.customers.example\"],\"backends\":[{\"name\":\"a\",\"address\":\"127.0.0.1:9$i\"}]}}" >/dev/null
done
URL="$BASE/api/tenants/acme/routes"
curl -sf "$URL" -H "authorization: Bearer $TOKEN" > "$W/www/api/tenants/acme/routes"
BODY_BYTES=$(wc -c < "$W/www/api/tenants/acme/routes")

cat > "$W/nginx.conf" <<CONF
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  default_type application/json;
  server { listen 127.0.0.1:$NGINX_PORT; root $W/www; location / { try_files \$uri =404; } }
}
CONF
taskset -c $API_CPU nginx -c "$W/nginx.conf" -e "$W/nginx.err" 2>/dev/null
sleep 0.3
NGINX_PID=$(pgrep -P "$(cat "$W/nginx.pid")" | head -1)

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
run() { # name pid url
  taskset -c $LOAD_CPU wrk -t2 -c$CONNS -d${WARM}s -H "authorization: Bearer $TOKEN" "$3" >/dev/null
  local before after out
  before=$(cpu_ticks "$2")
  out=$(taskset -c $LOAD_CPU wrk -t2 -c$CONNS -d${SECS}s --latency -H "authorization: Bearer $TOKEN" "$3")
  after=$(cpu_ticks "$2")
  python3 - "$1" "$before" "$after" "$TICK" <<PY
import re, sys
name, before, after, tick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = """$out"""
def lat(label):
    m = re.search(r"\s%s\s+([\d.]+)(us|ms|s)" % label, out)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
total = int(re.search(r"(\d+) requests in", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
cpu_us = (after - before) / tick * 1e6 / max(total, 1)
print(f"{name} rps={rps:.0f} p50_ms={lat('50%'):.2f} p99_ms={lat('99%'):.2f} cpu_us_per_req={cpu_us:.1f} non2xx={errors.group(1) if errors else 0}")
PY
}

echo "# body ${BODY_BYTES} B, ${CONNS} connections, ${SECS}s windows, API and nginx on core $API_CPU, wrk and Redis on core $LOAD_CPU"
for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  run veloflux-api "$API_PID" "$URL" | tee -a "$W/results"
  run nginx-static "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/api/tenants/acme/routes" | tee -a "$W/results"
done
python3 - "$W/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, *fields = line.split()
    rows.setdefault(name, []).append({k: float(v) for k, v in (f.split("=") for f in fields)})
med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items()}
a, n = med["veloflux-api"], med["nginx-static"]
print("## medians")
for name, m in med.items():
    print(f"{name}: rps={m['rps']:.0f} p50={m['p50_ms']:.2f} ms p99={m['p99_ms']:.2f} ms cpu={m['cpu_us_per_req']:.1f} us/req")
print(f"ratio api/nginx: cpu={a['cpu_us_per_req']/n['cpu_us_per_req']:.2f} rps={a['rps']/n['rps']:.2f} p99={a['p99_ms']/n['p99_ms']:.2f}")
PY
