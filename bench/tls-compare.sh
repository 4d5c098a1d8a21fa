#!/usr/bin/env bash
# Side-by-side TLS and HTTP/2 benchmark: VeloFlux, nginx and HAProxy
# terminating TLS with the same certificate (ECDSA P-256, made by openssl for
# this run) in front of the same two loopback backends (an nginx serving a
# ~100 B and a 16 KiB body over plain HTTP/1.1). Each proxy runs one worker
# pinned to core 0; the load tool and the backends share core 1. The cases:
#
#   https-small, https-large  keep-alive HTTPS HTTP/1.1: wrk -t1 -c64 (wrk
#                             offers no ALPN, so every proxy speaks HTTP/1.1)
#   h2-small, h2-large        HTTP/2 over TLS (ALPN h2): h2load, 16
#                             connections x 10 concurrent streams
#   full                      new connections with a full handshake: h2load
#                             --h1 opens RATE connections a second, each a
#                             fresh TLS session with one request (h2load
#                             gives every connection a new client, which
#                             offers no session to resume)
#   resumed                   new connections that resume: wrk -t1 -c64 with
#                             `Connection: close`; wrk keeps each
#                             connection's TLS session across reconnects, so
#                             every handshake after the first is a TLS 1.3
#                             PSK resumption (with a fresh X25519 exchange)
#   h2c-small                 HTTP/2 without TLS (prior knowledge), the same
#                             h2load load; not run unless named in CASES
#
# Per case and round the proxies run back to back, in an order that rotates
# by round; each window follows a warm-up. Reports requests (or connections)
# per second, p50/p99 and the proxy's CPU time per request or connection
# (user + system from /proc/PID/stat over the window: it does not depend on
# which side is the bottleneck), with ratios of the medians and the median
# of the ratios taken within each round.
#
# Usage: bash bench/tls-compare.sh [ROUNDS] [SECONDS]   (defaults 3 and 10)
#        CASES="h2-small" PROXIES="veloflux haproxy" bash bench/tls-compare.sh 3 8   (a subset)
#        RATE=1000: new connections per second in the `full` case
#        VELOFLUX_BIN=path: measure this binary instead of building one
# Needs: nginx, haproxy, wrk, h2load (Debian nghttp2-client), openssl,
# taskset, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
WARM=3
CONNS=64
H2_CONNS=16
H2_STREAMS=10
RATE=${RATE:-1000}
PROXY_CPU=0
LOAD_CPU=1
ALL_CASES="https-small https-large h2-small h2-large full resumed"
CASES=${CASES:-$ALL_CASES}
PROXIES=${PROXIES:-veloflux nginx haproxy}

for tool in nginx haproxy wrk h2load openssl taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx haproxy wrk nghttp2-client openssl util-linux curl)"; exit 1; }
done
# Ports of this benchmark: backends, then TLS and plain listeners per proxy.
declare -A TLS_PORT=([nginx]=18441 [haproxy]=18442 [veloflux]=18443)
declare -A H2C_PORT=([nginx]=18451 [haproxy]=18452 [veloflux]=18453)
for port in 19211 19212 18441 18442 18443 18451 18452 18453 18463; do
  if ss -Hltn "sport = :$port" | grep -q .; then echo "port $port is in use"; exit 1; fi
done

if [ -n "${VELOFLUX_BIN:-}" ]; then
  VF=$VELOFLUX_BIN
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build -q --release -p veloflux-proxy
  VF="$CARGO_TARGET_DIR/release/veloflux-proxy"
fi

W=$(mktemp -d)
PIDS=()
cleanup() {
  for f in "$W"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null
  sleep 0.2
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/www" "$W/manifests"
chmod 755 "$W" "$W/www"   # nginx workers run as www-data
head -c 16384 /dev/urandom | base64 -w0 | head -c 16384 > "$W/www/large"
printf '%s' "$(head -c 100 /dev/zero | tr '\0' 'x')" > "$W/www/small"

# One certificate for all three, made now: no private key is kept anywhere.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" > "$W/haproxy.pem"
chmod 644 "$W/key.pem" "$W/haproxy.pem"

cat > "$W/backends.conf" <<CONF
worker_processes 1;
pid $W/backends.pid;
error_log $W/backends.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19211; root $W/www; location / { try_files \$uri =404; } }
  server { listen 127.0.0.1:19212; root $W/www; location / { try_files \$uri =404; } }
}
CONF

# nginx 1.22 enables only TLS 1.2 by default: both versions are named, as
# the other two offer them. Session tickets are on by default (resumption).
cat > "$W/nginx-proxy.conf" <<CONF
worker_processes 1;
pid $W/nginx-proxy.pid;
error_log $W/nginx-proxy.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backends { server 127.0.0.1:19211; server 127.0.0.1:19212; keepalive 128; }
  server {
    listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2;
    listen 127.0.0.1:${H2C_PORT[nginx]} http2;
    ssl_certificate $W/cert.pem;
    ssl_certificate_key $W/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
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
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $W/haproxy.pem alpn h2,http/1.1
  bind 127.0.0.1:${H2C_PORT[haproxy]} proto h2
  default_backend be
backend be
  balance roundrobin
  server s1 127.0.0.1:19211
  server s2 127.0.0.1:19212
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
    - {name: a, address: "127.0.0.1:19211"}
    - {name: b, address: "127.0.0.1:19212"}
CONF

taskset -c $LOAD_CPU nginx -c "$W/backends.conf"
taskset -c $PROXY_CPU nginx -c "$W/nginx-proxy.conf"
taskset -c $PROXY_CPU haproxy -D -p "$W/haproxy.pid" -f "$W/haproxy.cfg"
taskset -c $PROXY_CPU "$VF" --manifests "$W/manifests" --listen "127.0.0.1:${H2C_PORT[veloflux]}" \
  --tls-listen "127.0.0.1:${TLS_PORT[veloflux]}" --tls-cert "$W/cert.pem" --tls-key "$W/key.pem" \
  --admin-listen 127.0.0.1:18463 --worker-threads 1 --access-log false --log warn > "$W/veloflux.log" 2>&1 &
VF_PID=$!
PIDS+=("$VF_PID")
for _ in $(seq 1 100); do
  curl -sf -o /dev/null http://127.0.0.1:18463/readyz && break
  sleep 0.1
done

# Every proxy answers 200 over HTTPS HTTP/1.1, h2 over TLS and h2c; and the
# handshake each one chooses (protocol, cipher, group) is printed, with
# whether a second connection resumed the first one's session.
for proxy in $PROXIES; do
  for mode in --http1.1 --http2; do
    code=$(curl -sk $mode -o /dev/null -w '%{http_code} %{http_version}' --resolve "bench.local:${TLS_PORT[$proxy]}:127.0.0.1" "https://bench.local:${TLS_PORT[$proxy]}/small")
    case "$mode $code" in "--http1.1 200 1.1" | "--http2 200 2") ;; *) echo "$proxy: https $mode answers $code"; exit 1 ;; esac
  done
  code=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code} %{http_version}' -H 'Host: bench.local' "http://127.0.0.1:${H2C_PORT[$proxy]}/small")
  [ "$code" = "200 2" ] || { echo "$proxy: h2c answers $code"; exit 1; }
  hello=$(openssl s_client -connect "127.0.0.1:${TLS_PORT[$proxy]}" -servername bench.local -alpn h2,http/1.1 </dev/null 2>/dev/null)
  reused=$( (sleep 1; echo) | openssl s_client -connect "127.0.0.1:${TLS_PORT[$proxy]}" -servername bench.local -reconnect 2>/dev/null | grep -c '^Reused' || true)
  echo "$proxy: $(echo "$hello" | grep -m1 -oE 'TLSv1\.[23]'), $(echo "$hello" | grep -m1 -oE 'Cipher is \S+' | cut -d' ' -f3), $(echo "$hello" | grep -m1 -E 'Server Temp Key' | cut -d: -f2 | xargs), ALPN $(echo "$hello" | grep -m1 -oE 'ALPN protocol: \S+' | cut -d' ' -f3), $reused of 5 reconnects resumed"
done

nginx_worker=$(pgrep -P "$(cat "$W/nginx-proxy.pid")" | head -1)
declare -A PID=([veloflux]=$VF_PID [nginx]=$nginx_worker [haproxy]=$(cat "$W/haproxy.pid"))

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
RESULTS="$W/results.tsv"
: > "$RESULTS"

# Runs case $3's load for $1 seconds against $2; prints the tool's output.
# h2load writes each request's latency to $W/latency (for p50/p99); in the
# `full` case the latency columns are its connect time's mean and maximum.
load() {
  local secs=$1 proxy=$2 kase=$3 size=small
  case "$kase" in *-large) size=large ;; esac
  local url="https://127.0.0.1:${TLS_PORT[$proxy]}/$size"
  case "$kase" in
    https-*) taskset -c $LOAD_CPU wrk -t1 -c$CONNS -d"${secs}s" --latency -H 'Host: bench.local' "$url" ;;
    resumed) taskset -c $LOAD_CPU wrk -t1 -c$CONNS -d"${secs}s" --latency -H 'Host: bench.local' -H 'Connection: close' "$url" ;;
    h2-*) taskset -c $LOAD_CPU h2load -c$H2_CONNS -m$H2_STREAMS -D "$secs" --log-file "$W/latency" \
            -H ':authority: bench.local' "$url" ;;
    h2c-*) taskset -c $LOAD_CPU h2load -c$H2_CONNS -m$H2_STREAMS -D "$secs" --log-file "$W/latency" \
            -H ':authority: bench.local' "http://127.0.0.1:${H2C_PORT[$proxy]}/$size" ;;
    full) local per=$(( RATE / 100 )) total=$(( RATE * secs ))
          taskset -c $LOAD_CPU h2load --h1 -r "$per" --rate-period 10ms -c "$total" -n "$total" \
            -H ':authority: bench.local' "$url" ;;
    *) echo "unknown case $kase" >&2; exit 1 ;;
  esac
}

read -r -a PROXY_LIST <<< "$PROXIES"
for round in $(seq 1 "$ROUNDS"); do
  for kase in $CASES; do
    for k in "${!PROXY_LIST[@]}"; do
      proxy=${PROXY_LIST[$(( (k + round) % ${#PROXY_LIST[@]} ))]}
      load "$WARM" "$proxy" "$kase" > /dev/null
      before=$(cpu_ticks "${PID[$proxy]}")
      out=$(load "$SECS" "$proxy" "$kase")
      after=$(cpu_ticks "${PID[$proxy]}")
      echo "$out" | python3 -c '
import re, sys
proxy, kase, rnd, ticks, tck, latency = sys.argv[1:4] + [int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]]
text = sys.stdin.read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)\b", v)
    if not m:
        sys.exit(f"cannot read latency {v!r} from:\n{text}")
    n, u = m.groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
if "finished in" in text:
    m = re.search(r"finished in ([\d.]+)(ms|s), ", text)
    if not m:
        sys.exit(f"cannot read h2load output:\n{text}")
    secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    done, errors = int(req.group(1)), sum(int(req.group(i)) for i in (2, 3, 4))
    codes = re.search(r"status codes: (\d+) 2xx", text)
    errors += done - int(codes.group(1))
    if kase == "full":
        # The request log starts after the handshake: the connect
        # time (TCP + TLS, to the protocol chosen) is the latency here.
        c = re.search(r"time for connect:\s+(\S+)\s+(\S+)\s+(\S+)", text)
        p50, p99 = ms(c.group(3)), ms(c.group(2))
    else:
        durations = sorted(int(l.split("\t")[2]) for l in open(latency) if l.strip())
        p50 = durations[len(durations) // 2] / 1000
        p99 = durations[min(len(durations) - 1, len(durations) * 99 // 100)] / 1000
    total, rate = done, done / secs
else:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
cpu_us = ticks / tck * 1e6 / total
print(f"{proxy}\t{kase}\t{rnd}\t{rate:.0f}\t{p50:.3f}\t{p99:.3f}\t{cpu_us:.2f}\t{errors}")
' "$proxy" "$kase" "$round" "$((after - before))" "$TCK" "$W/latency" >> "$RESULTS"
      rm -f "$W/latency"
      tail -1 "$RESULTS"
    done
  done
done

[ "$PROXIES" = "veloflux nginx haproxy" ] || exit 0
python3 - "$RESULTS" "$ROUNDS" "$SECS" "$CASES" "$RATE" <<'PY'
import sys, statistics as st
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
rounds, secs, cases, rate = sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5]
label = {
    "https-small": "HTTPS keep-alive, ~100 B", "https-large": "HTTPS keep-alive, 16 KiB",
    "h2-small": "h2 (TLS), ~100 B", "h2-large": "h2 (TLS), 16 KiB", "h2c-small": "h2c, ~100 B",
    "full": f"new connection, full handshake ({rate}/s)", "resumed": "new connection, resumed",
}
proxies = ("veloflux", "nginx", "haproxy")
med = {}
for p in proxies:
    for c in cases:
        r = [x for x in rows if x[0] == p and x[1] == c]
        med[p, c] = {k: st.median(float(x[i]) for x in r) for k, i in (("rate", 3), ("p50", 4), ("p99", 5), ("cpu", 6))}
        med[p, c]["errors"] = sum(int(x[7]) for x in r)
print(f"\nMedians of {rounds} interleaved rounds, {secs} s each; proxy on core 0, load + backends on core 1.\n")
print("| case | proxy | per s | p50 ms | p99 ms | CPU µs per req/conn | errors | CPU ÷ nginx | CPU ÷ HAProxy |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for c in cases:
    n, h = med["nginx", c], med["haproxy", c]
    for p in proxies:
        m = med[p, c]
        print(f"| {label.get(c, c)} | {p} | {m['rate']:.0f} | {m['p50']:.3f} | {m['p99']:.3f} | {m['cpu']:.2f} | {m['errors']} | "
              f"{m['cpu']/n['cpu']:.2f} | {m['cpu']/h['cpu']:.2f} |")
# The same ratios taken within each round (the proxies ran back to back),
# then the median over rounds: the machine's drift between rounds cancels.
print("\nVeloFlux ÷ peer within each round, median over rounds (and range):\n")
print("| case | per s ÷ nginx | p99 ÷ nginx | CPU ÷ nginx | per s ÷ HAProxy | p99 ÷ HAProxy | CPU ÷ HAProxy |")
print("|---|---:|---:|---:|---:|---:|---:|")
by = {(x[0], x[1], x[2]): x for x in rows}
for c in cases:
    cells = []
    for peer in ("nginx", "haproxy"):
        for i in (3, 5, 6):
            ratios = sorted(float(by["veloflux", c, r][i]) / float(by[peer, c, r][i])
                            for (p, k, r) in by if p == "veloflux" and k == c and (peer, c, r) in by)
            cells.append(f"{st.median(ratios):.2f} ({ratios[0]:.2f}–{ratios[-1]:.2f})")
    print(f"| {label.get(c, c)} | " + " | ".join(cells) + " |")
print("\nRaw rounds (proxy, case, round, per s, p50 ms, p99 ms, CPU µs, errors):\n")
print("```")
print("".join("\t".join(x) for x in rows), end="")
print("```")
PY
