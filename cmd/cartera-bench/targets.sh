#!/usr/bin/env bash
# targets.sh runs issue 14's load targets over HTTP against a fresh gateway
# each (docs/benchmarks.md, round 10, has the figures and what bounds them):
#
#   burst        /v1/batch, 16 clients x 100 events, as fast as acknowledged,
#                BURST (100s: ~10 M events at ~100 k/s), lag bounds lifted
#   track        single /v1/track, 64 clients, as fast as acknowledged, 30 s
#   batch-half   /v1/batch offered at 30,000/s (half the batch target), 30 s
#   track-half   /v1/track offered at 7,500/s (half the track target), 30 s
#   action       /v1/track offered at 3,000/s: event -> first action, 30 s
#   sustained    /v1/batch offered at SUSTAINED_RATE for SUSTAINED (off
#                unless SUSTAINED is set, e.g. SUSTAINED=600s)
#   flood        issue 18's test (flood.yaml): another key's trickle of
#                single tracks (200/s, 4 clients) alone, then during one
#                key's flood of batches (16 clients x 100, unpaced), then
#                beside the same key paced at what the flood got accepted
#
# `make bench` runs it after the Go benchmarks; `TARGETS="burst track"`
# picks some. Each prints the load generator's summary. The machine's load
# changes every figure: run old and new binaries alternately
# (CARTERA=path/to/cartera) to compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
GO="${GO:-go}"
BURST="${BURST:-100s}"
SUSTAINED="${SUSTAINED:-}"
SUSTAINED_RATE="${SUSTAINED_RATE:-6000}"
TARGETS="${TARGETS:-burst track batch-half track-half action flood${SUSTAINED:+ sustained}}"
for t in $TARGETS; do
  case $t in
  burst|track|batch-half|track-half|action|flood) ;;
  sustained) [ -n "$SUSTAINED" ] || { echo "targets.sh: sustained needs SUSTAINED, such as SUSTAINED=600s" >&2; exit 2; } ;;
  *) echo "targets.sh: unknown target $t (burst, track, batch-half, track-half, action, flood, sustained)" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/cartera-targets.XXXXXX)
trap 'kill ${pid:-} ${fpid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -z "${CARTERA:-}" ]; then
  "$GO" build -o "$work/cartera" ./cmd/cartera
  CARTERA="$work/cartera"
fi
"$GO" build -o "$work/cartera-bench" ./cmd/cartera-bench
port=$(( 20000 + RANDOM % 20000 ))
token=bench-admin-token-0123456789

# start CONFIG: the gateway on a fresh store, once it answers.
start() {
  rm -rf "$work/data"
  "$CARTERA" serve --config "$1" --data "$work/data/bench.db" --addr "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "targets.sh: the gateway on :$port did not answer within 30 s" >&2; cat "$work/serve.log"; exit 1; }
}

# run NAME CONFIG LOAD-FLAGS...: a fresh store, the gateway, the load.
run() {
  local name=$1 config=$2; shift 2
  start "$config"
  echo "== $name ($(uptime | sed 's/.*load average/load average/'))"
  "$work/cartera-bench" load --url "http://127.0.0.1:$port" --admin-token "$token" --people 100000 --warmup 2s "$@" \
    | grep -E 'accepted:|ack latency|first journey action|journey exit|event log|errors'
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
}

# flood: one gateway on flood.yaml; the trickle alone, then the same
# trickle during the flood.
flood() {
  start $cfg/flood.yaml
  local load=("$work/cartera-bench" load --url "http://127.0.0.1:$port" --admin-token "$token" --people 100000)
  local trickle=(--mode track --clients 4 --rate 200 --duration 20s --web-key app_bench_key --pos-key pos_trickle_key)
  echo "== one key flooding, another's trickle ($(uptime | sed 's/.*load average/load average/'))"
  echo "trickle alone:         $("${load[@]}" "${trickle[@]}" --warmup 2s | grep 'ack latency')"
  "${load[@]}" --mode batch --clients 16 --batch 100 --duration 30s --warmup 1s --web-key web_bench_key --pos-key web_bench_key >"$work/flood.txt" 2>&1 &
  fpid=$!
  sleep 4
  echo "trickle during flood:  $("${load[@]}" "${trickle[@]}" --warmup 1s | grep 'ack latency')"
  wait "$fpid"
  fpid=
  echo "the flood:             $(grep -E 'accepted:' "$work/flood.txt")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  # The baseline the flood is judged against: the same key sending, paced,
  # what the flood got accepted. What the trickle loses beside it is the
  # cost of the key's allowance on this machine; what it loses beyond it
  # during the flood is the cost of the flooding itself.
  local rate
  rate=$(sed -n 's/^accepted: \([0-9]*\) events.*/\1/p' "$work/flood.txt")
  start $cfg/flood.yaml
  "${load[@]}" --mode batch --clients 16 --batch 100 --rate "${rate:-3000}" --duration 30s --warmup 1s --web-key web_bench_key --pos-key web_bench_key >"$work/paced.txt" 2>&1 &
  fpid=$!
  sleep 4
  echo "trickle beside the key paced at ${rate:-3000}/s: $("${load[@]}" "${trickle[@]}" --warmup 1s | grep 'ack latency')"
  wait "$fpid"
  fpid=
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
}

cfg=cmd/cartera-bench/testdata
for t in $TARGETS; do
  case $t in
  burst)      run "burst of $BURST" $cfg/burst.yaml --clients 16 --duration "$BURST" ;;
  track)      run "single track, 64 clients" $cfg/cartera.yaml --mode track --clients 64 --duration 30s ;;
  batch-half) run "batch at 30,000/s" $cfg/burst.yaml --clients 16 --rate 30000 --duration 30s ;;
  track-half) run "track at 7,500/s" $cfg/burst.yaml --mode track --clients 64 --rate 7500 --duration 30s ;;
  action)     run "track at 3,000/s" $cfg/cartera.yaml --mode track --clients 64 --rate 3000 --duration 30s ;;
  flood)      flood ;;
  sustained)  run "batch at $SUSTAINED_RATE/s for $SUSTAINED" $cfg/cartera.yaml --clients 16 --rate "$SUSTAINED_RATE" --duration "$SUSTAINED" ;;
  esac
done
