#!/usr/bin/env bash
# `make dev`: the whole platform on one machine, without Kubernetes.
#   redis-server (Debian's) on 127.0.0.1:6390, empty, no persistence;
#   the standalone proxy on a manifest folder (.dev/manifests, seeded with
#     the quickstart's plans) on 127.0.0.1:8080, admin :9901;
#   the API on 127.0.0.1:8090 (admin :9903) writing Tenants and Routes into
#     that same folder, messages to .dev/outbox;
#   a demo backend on 127.0.0.1:9180.
# Then it prints a curl sequence: sign up, confirm the email, create a
# route, and the proxy serves the new host within a second. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in redis-server python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server python3 curl)"; exit 1; }
done
CARGO=${CARGO:-cargo}
$CARGO build -q -p veloflux-proxy -p veloflux-api
BIN="${CARGO_TARGET_DIR:-target}/debug"

DEV=.dev
rm -rf "$DEV/manifests" "$DEV/outbox"
mkdir -p "$DEV/manifests" "$DEV/outbox" "$DEV/keys" "$DEV/www"
cp examples/quickstart/plans.yaml "$DEV/manifests/plans.yaml"
echo '{"hello": "from the demo backend"}' > "$DEV/www/index.html"
ls "$DEV"/keys/*.pem >/dev/null 2>&1 || "$BIN/veloflux-api" generate-key --signing-keys "$DEV/keys" >/dev/null

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no --dir "$DEV" >"$DEV/redis.log" 2>&1 &
pids+=($!)
python3 -m http.server 9180 --bind 127.0.0.1 -d "$DEV/www" >"$DEV/backend.log" 2>&1 &
pids+=($!)
"$BIN/veloflux-proxy" --manifests "$DEV/manifests" --poll-interval 200ms >"$DEV/proxy.log" 2>&1 &
pids+=($!)
"$BIN/veloflux-api" --redis redis://127.0.0.1:6390 --manifests "$DEV/manifests" \
  --signing-keys "$DEV/keys" --outbox "$DEV/outbox" --allowed-parent-domain localhost \
  --public-url http://127.0.0.1:8090 >"$DEV/api.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9903/readyz >/dev/null && curl -sf http://127.0.0.1:9901/healthz >/dev/null && break
  sleep 0.1
done
curl -sf http://127.0.0.1:9903/readyz >/dev/null || { echo "the API did not become ready; see $DEV/api.log"; exit 1; }

cat <<'TRY'
VeloFlux platform running: API http://127.0.0.1:8090, proxy http://127.0.0.1:8080
(logs in .dev/*.log, messages to people in .dev/outbox/). Try:

# 1. Sign up: a person and their tenant (plan free), tokens back
TOKEN=$(curl -s http://127.0.0.1:8090/api/signup -H 'content-type: application/json' \
  -d '{"email":"me@acme.example","password":"correct horse battery staple","name":"Me","tenant":{"id":"acme","domains":["acme.localhost","*.acme.localhost"]}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# 2. Confirm the email address (the message is in .dev/outbox)
curl -s http://127.0.0.1:8090/api/verify-email -H 'content-type: application/json' \
  -d "{\"token\":\"$(python3 -c 'import json,glob; print(json.load(open(sorted(glob.glob(".dev/outbox/*verify-email*"))[-1]))["token"])')\"}"

# 3. Create a route to the demo backend
curl -s http://127.0.0.1:8090/api/tenants/acme/routes -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"shop","spec":{"hosts":["shop.acme.localhost"],"backends":[{"name":"demo","address":"127.0.0.1:9180"}]}}'

# 4. The proxy serves it within a second
curl -s -H 'Host: shop.acme.localhost' http://127.0.0.1:8080/

# More: curl -s http://127.0.0.1:8090/api/me -H "authorization: Bearer $TOKEN"
#       curl -s http://127.0.0.1:8090/api/openapi.json | head
TRY
wait -n "${pids[@]}"
echo "a component stopped; see .dev/*.log"
