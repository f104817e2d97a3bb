#!/usr/bin/env bash
# Run loadtest/k6_ramp.js end to end on loopback, then check that GET /stats counts exactly
# the events that k6 saw accepted with 202.
#
#     bash loadtest/k6_ramp.sh
#
# Builds target/release/telemetron, starts it in a temporary directory on 127.0.0.1 and a
# free port, runs k6 against it (about 60 s with the defaults), and stops the server by its
# PID with SIGTERM on every exit path. The k6_ramp.js settings (PEAK_RATE, HOLD_DURATION,
# ...) pass through from the environment; TARGET is always the server started here.
# SUMMARY_JSON names the k6 summary file, relative to the repository root
# (default target/k6-summary.json).
#
# Exit status: 1 when the counts differ or a step fails, otherwise k6's own status
# (0, or 99 when a threshold was crossed).

set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

for tool in cargo k6 curl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "k6_ramp.sh: $tool not found in PATH (loadtest/README.md says how to install it)" >&2
        exit 1
    fi
done

summary_json=${SUMMARY_JSON:-target/k6-summary.json}
server_pid=
workdir=$(mktemp -d)

stop_server() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        # The drain finishes well within this on an idle server; a hung one is killed.
        for _ in $(seq 1 600); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "k6_ramp.sh: server $server_pid did not stop within 60 s of SIGTERM; sending SIGKILL" >&2
            kill -KILL "$server_pid"
        fi
        wait "$server_pid" 2>/dev/null || true
        # The shutdown line reports accepted = processed + dead_lettered.
        sed 's/\x1b\[[0-9;]*m//g' "$workdir/server.log" | grep 'shutdown complete' || true
    fi
    server_pid=
    rm -rf -- "$workdir"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Reads one value from the summary JSON: jq when it is installed, otherwise python3.
# The argument is a list of keys; a missing metric reads as 0.
summary_value() {
    if command -v jq >/dev/null; then
        jq -r 'getpath($ARGS.positional) // 0' "$summary_json" --args "$@"
    else
        python3 - "$summary_json" "$@" <<'EOF'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value.get(key) if isinstance(value, dict) else None
print(0 if value is None else value)
EOF
    fi
}

stats_events_count() {
    local body
    body=$(curl -fsS --max-time 5 "$url/stats")
    if command -v jq >/dev/null; then
        jq -r .events_count <<<"$body"
    else
        python3 -c 'import json, sys; print(json.load(sys.stdin)["events_count"])' <<<"$body"
    fi
}

echo "building target/release/telemetron"
cargo build --release --bin telemetron

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"

# Settings come from these variables alone: the temporary directory has no config.toml,
# and TELEMETRON_ variables from the caller's shell are dropped.
while IFS= read -r name; do
    unset "$name"
done < <(compgen -e | grep '^TELEMETRON_' || true)
(
    cd "$workdir"
    TELEMETRON_HTTP__HOST=127.0.0.1 \
        TELEMETRON_HTTP__PORT="$port" \
        TELEMETRON_PROCESSOR__CHANNEL_CAPACITY=100000 \
        exec "$root/target/release/telemetron"
) >"$workdir/server.log" 2>&1 &
server_pid=$!

for attempt in $(seq 1 100); do
    if curl -fsS --max-time 1 "$url/healthz" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null || [[ $attempt -eq 100 ]]; then
        echo "k6_ramp.sh: telemetron did not respond to $url/healthz within 10 s. Its log:" >&2
        cat "$workdir/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "telemetron $server_pid listening on $url"

mkdir -p -- "$(dirname -- "$summary_json")"
rm -f -- "$summary_json"
k6_status=0
k6 run -e TARGET="$url" -e SUMMARY_JSON="$summary_json" loadtest/k6_ramp.js || k6_status=$?
if [[ ! -s $summary_json ]]; then
    echo "k6_ramp.sh: k6 exited with status $k6_status and wrote no $summary_json" >&2
    exit 1
fi

accepted=$(summary_value metrics accepted_202 values count)
overloaded=$(summary_value metrics overloaded_503 values count)
p99=$(summary_value metrics 'http_req_duration{expected_response:true}' values 'p(99)')
achieved=$(summary_value metrics http_reqs values rate)
dropped=$(summary_value metrics dropped_iterations values count)

# A worker flushes a partial batch after processor.batch_timeout (100 ms by default), so
# one second is enough on an idle machine. On a loaded one the count gets four more tries.
sleep 1
events_count=$(stats_events_count)
for _ in 1 2 3 4; do
    [[ $events_count -lt $accepted ]] || break
    sleep 1
    events_count=$(stats_events_count)
done

echo
echo "k6 status:             $k6_status"
echo "202 responses:         $accepted"
echo "503 responses:         $overloaded"
printf 'p99 of 202 responses:  %.3f ms\n' "$p99"
printf 'achieved requests/s:   %.0f\n' "$achieved"
echo "dropped iterations:    $dropped"
echo "/stats events_count:   $events_count"
if [[ $events_count -ne $accepted ]]; then
    echo "MISMATCH: /stats events_count $events_count differs from the 202 count $accepted" >&2
    exit 1
fi
echo "/stats events_count equals the 202 count"
exit "$k6_status"
