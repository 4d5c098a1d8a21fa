#!/usr/bin/env bash
# Side-by-side proxy benchmark: VeloFlux, nginx and HAProxy in front of the
# same two loopback backends (an nginx serving a ~100 B and a 16 KiB body).
# Each proxy runs one worker pinned to core 0; wrk and the backends share
# core 1. wrk: 64 connections, 1 thread, warm-up then a measured window,
# rounds interleaved. Reports requests/s, p50/p99 and proxy CPU time per
# request (from /proc/PID/stat over the measured window), with ratios of the
# medians and the median of the ratios taken within each round.
#
# Usage: bash bench/proxy-compare.sh [ROUNDS] [SECONDS]   (defaults 3 and 10)
#        PROXIES="veloflux" SIZES="small" bash bench/proxy-compare.sh 2 8   (a subset, raw lines only)
# Needs: nginx, haproxy, wrk (Debian packages), taskset, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
WARM=3
CONNS=64
PROXY_CPU=0
LOAD_CPU=1

for tool in nginx haproxy wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx haproxy wrk util-linux)"; exit 1; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -q --release -p veloflux-proxy
VF="$CARGO_TARGET_DIR/release/veloflux-proxy"

W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$W" 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/www" "$W/manifests"
chmod 755 "$W" "$W/www"   # nginx workers run as www-data
head -c 16384 /dev/urandom | base64 -w0 | head -c 16384 > "$W/www/large"
printf '%s' "$(head -c 100 /dev/zero | tr '\0' 'x')" > "$W/www/small"

cat > "$W/backends.conf" <<CONF
worker_processes 1;
pid $W/backends.pid;
error_log $W/backends.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19201; root $W/www; location / { try_files \$uri =404; } }
  server { listen 127.0.0.1:19202; root $W/www; location / { try_files \$uri =404; } }
}
CONF

cat > "$W/nginx-proxy.conf" <<CONF
worker_processes 1;
pid $W/nginx-proxy.pid;
error_log $W/nginx-proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backends { server 127.0.0.1:19201; server 127.0.0.1:19202; keepalive 128; }
  server {
    listen 127.0.0.1:18081;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF

cat > "$W/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:18082
  default_backend be
backend be
  balance roundrobin
  server s1 127.0.0.1:19201
  server s2 127.0.0.1:19202
CONF

cat > "$W/manifests/bench.yaml" <<CONF
apiVersion: veloflux.io/v1alpha1
kind: Plan
metadata: {name: bench}
spec:
  limits: {requestsPerMinute: 100000000, burst: 1000000, maxRoutes: 10, maxBackendsPerRoute: 4, maxDomains: 4}
  features: {staticBackends: true}
---
apiVersion: veloflux.io/v1alpha1
kind: Tenant
metadata: {name: bench}
spec: {planRef: bench, domains: [bench.local], namespaces: [bench]}
---
apiVersion: veloflux.io/v1alpha1
kind: Route
metadata: {name: web, namespace: bench}
spec:
  tenantRef: bench
  hosts: [bench.local]
  backends:
    - {name: a, address: "127.0.0.1:19201"}
    - {name: b, address: "127.0.0.1:19202"}
CONF

taskset -c $LOAD_CPU nginx -c "$W/backends.conf"
taskset -c $PROXY_CPU nginx -c "$W/nginx-proxy.conf"
taskset -c $PROXY_CPU haproxy -D -p "$W/haproxy.pid" -f "$W/haproxy.cfg"
taskset -c $PROXY_CPU "$VF" --manifests "$W/manifests" --listen 127.0.0.1:18083 --admin-listen 127.0.0.1:18093 \
  --worker-threads 1 --access-log false --log warn > "$W/veloflux.log" 2>&1 &
VF_PID=$!
sleep 1

for port in 19201 18081 18082 18083; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.local' "http://127.0.0.1:$port/small")
  [ "$code" = 200 ] || { echo "port $port answers $code, not 200"; exit 1; }
done

nginx_worker=$(pgrep -P "$(cat "$W/nginx-proxy.pid")" | head -1)
haproxy_pid=$(cat "$W/haproxy.pid")
declare -A PORT=([veloflux]=18083 [nginx]=18081 [haproxy]=18082)
declare -A PID=([veloflux]=$VF_PID [nginx]=$nginx_worker [haproxy]=$haproxy_pid)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
RESULTS="$W/results.tsv"
: > "$RESULTS"
PROXIES=${PROXIES:-veloflux nginx haproxy}
SIZES=${SIZES:-small large}
read -r -a PROXY_LIST <<< "$PROXIES"
# Per round and body size the proxies run back to back, starting with a
# different one each round, so a slow spell of the machine lands on all of
# them and on no one position.
for round in $(seq 1 "$ROUNDS"); do
  for size in $SIZES; do
    for k in "${!PROXY_LIST[@]}"; do
      proxy=${PROXY_LIST[$(( (k + round) % ${#PROXY_LIST[@]} ))]}
      url="http://127.0.0.1:${PORT[$proxy]}/$size"
      taskset -c $LOAD_CPU wrk -t1 -c$CONNS -d${WARM}s -H 'Host: bench.local' "$url" > /dev/null
      before=$(cpu_ticks "${PID[$proxy]}")
      out=$(taskset -c $LOAD_CPU wrk -t1 -c$CONNS -d${SECS}s --latency -H 'Host: bench.local' "$url")
      after=$(cpu_ticks "${PID[$proxy]}")
      echo "$out" | python3 -c '
import re, sys
proxy, size, rnd, ticks, tck = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
text = sys.stdin.read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)\b", v)
    if not m:
        sys.exit(f"cannot read latency {v!r} from wrk output:\n{text}")
    n, u = m.groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
cpu_us = ticks / tck * 1e6 / total
print(f"{proxy}\t{size}\t{rnd}\t{rps:.0f}\t{p50:.3f}\t{p99:.3f}\t{cpu_us:.2f}\t{errors + non2xx}")
' "$proxy" "$size" "$round" "$((after - before))" "$TCK" >> "$RESULTS"
      tail -1 "$RESULTS"
    done
  done
done

[ "$PROXIES" = "veloflux nginx haproxy" ] && [ "$SIZES" = "small large" ] || exit 0
python3 - "$RESULTS" "$ROUNDS" "$SECS" <<'PY'
import sys, statistics as st
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
for proxy in ("veloflux", "nginx", "haproxy"):
    for size in ("small", "large"):
        r = [x for x in rows if x[0] == proxy and x[1] == size]
        med[proxy, size] = {k: st.median(float(x[i]) for x in r) for k, i in (("rps", 3), ("p50", 4), ("p99", 5), ("cpu", 6))}
        med[proxy, size]["errors"] = sum(int(x[7]) for x in r)
print(f"\nMedians of {sys.argv[2]} interleaved rounds, {sys.argv[3]} s each, 64 connections; proxy on core 0, wrk + backends on core 1.\n")
print("| body | proxy | req/s | p50 ms | p99 ms | CPU µs/req | errors | req/s ÷ nginx | p99 ÷ nginx | CPU ÷ nginx | CPU ÷ HAProxy |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for size, label in (("small", "~100 B"), ("large", "16 KiB")):
    n, h = med["nginx", size], med["haproxy", size]
    for proxy in ("veloflux", "nginx", "haproxy"):
        m = med[proxy, size]
        print(f"| {label} | {proxy} | {m['rps']:.0f} | {m['p50']:.3f} | {m['p99']:.3f} | {m['cpu']:.2f} | {m['errors']} | "
              f"{m['rps']/n['rps']:.2f} | {m['p99']/n['p99']:.2f} | {m['cpu']/n['cpu']:.2f} | {m['cpu']/h['cpu']:.2f} |")
# The same ratios taken within each round (the three proxies ran back to
# back), then the median over rounds: the machine's drift between rounds
# cancels out.
print("\nVeloFlux ÷ peer within each round, median over rounds (and range):\n")
print("| body | req/s ÷ nginx | p99 ÷ nginx | CPU ÷ nginx | req/s ÷ HAProxy | p99 ÷ HAProxy | CPU ÷ HAProxy |")
print("|---|---:|---:|---:|---:|---:|---:|")
by = {(x[0], x[1], x[2]): x for x in rows}
for size, label in (("small", "~100 B"), ("large", "16 KiB")):
    cells = []
    for peer in ("nginx", "haproxy"):
        for i in (3, 5, 6):
            ratios = sorted(float(by["veloflux", size, r][i]) / float(by[peer, size, r][i])
                            for (p, s, r) in by if p == "veloflux" and s == size and (peer, size, r) in by)
            cells.append(f"{st.median(ratios):.2f} ({ratios[0]:.2f}–{ratios[-1]:.2f})")
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
