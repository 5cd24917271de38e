#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Load over HTTPS, with real processes: 1,000 devices, each on its own mutual-TLS keep-alive
# connection, all open at once (the server's own gauge says so), check in, download a signed
# 256 KiB image, verify size, ETag and SHA-256 against the offer, and report the update: zero
# errors, and the admin API and /metrics agree with what the devices did. Then a slow-loris
# (200 connections trickling a request head, replaced as they are closed) and a flood of
# silent, half-ClientHello and certificate-less connections run while 50 new devices do the
# same: zero errors again; the server cut every slow-loris connection at its header timeout and
# the half-open handshakes at its handshake timeout, and answered no request without a
# certificate. Bounded by counts, not by time; the timeouts are only safety nets.
set -euo pipefail
fwdepot=$(realpath -e "$1")
fleet=$(realpath -e "$2")  # tests/support/https_fleet.py
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# 1,000 connections take 1,000 descriptors in the server and as many in the fleet.
limit=$(ulimit -Hn)
if [ "$limit" = unlimited ] || [ "$limit" -gt 65536 ]; then
  limit=65536
fi
[ "$limit" -ge 4096 ] || fail "needs 4096 open files; the hard limit is $limit"
ulimit -n "$limit"

devices=1000
fresh=50
slow_connections=200
handshake_ms=3000
header_ms=5000  # not the handshake timeout: a cut at one is told apart from a cut at the other
idle_ms=120000  # above any wait at the fleet's barrier

"$fwdepot" init --data d >/dev/null 2>&1
token=$("$fwdepot" token create --data d --name load 2>/dev/null)
admin_api() {
  curl -sS --max-time 60 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" "$@"
}
json() {  # FILE_OR_- EXPRESSION: a value from a JSON document, by a Python expression on `j`
  python3 -c 'import json, sys
j = json.load(sys.stdin if sys.argv[1] == "-" else open(sys.argv[1]))
print(json.dumps(eval(sys.argv[2])))' "$@"
}
metric() {  # NAME{LABELS}: its value in $metrics, 0 when absent (label values may hold spaces)
  awk -v k="$1" '{ v = $NF; sub(/ [^ ]*$/, "") } $0 == k { r = v } END { print r == "" ? 0 : r }' \
    <<<"$metrics"
}
answered_200() {  # ROUTE: device requests on it answered 200, from $metrics
  metric "fwdepot_http_requests_total{listener=\"device\",route=\"$1\",status=\"200\"}"
}
refused() {  # REASON: device handshakes that failed for it, from $metrics
  metric "fwdepot_tls_handshake_failures_total{listener=\"device\",reason=\"$1\"}"
}
expect() {  # WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] || fail "$1: $2, expected $3"
}
at_least() {  # WHAT ACTUAL MINIMUM
  [ "$2" -ge "$3" ] || fail "$1: $2, expected at least $3"
}

# The certificates: one process per device, two at a time.
mkdir fleet-a fleet-b slow
started=$(date +%s%N)
issue() {  # DIR PREFIX COUNT
  (cd "$1" && seq -f "$2%04g" 0 $(($3 - 1)) |
    xargs -P2 -I{} "$fwdepot" certs issue-device --data ../d --id {} --model m1 --out {} >/dev/null)
}
issue fleet-a dev- "$devices"
issue fleet-b new- "$fresh"
issue slow slow- 1
issue_ms=$((($(date +%s%N) - started) / 1000000))
echo "issued $((devices + fresh + 1)) device certificates in ${issue_ms} ms" \
  "($((issue_ms / (devices + fresh + 1))) ms each, 2 at a time)"

head -c $((256 * 1024 + 13)) /dev/urandom >fw.bin
size=$(stat -c %s fw.bin)
"$fwdepot" sign --key d/keys/signing.key --name fw --version 1.1.0 --model m1 --out fw.dsse \
  fw.bin >/dev/null

start_server d server.log --handshake-timeout-ms "$handshake_ms" --header-timeout-ms "$header_ms" \
  --idle-timeout-ms "$idle_ms"
admin_api -F manifest=@fw.dsse -F image=@fw.bin "https://$admin/api/v1/images" |
  grep -q '"id":1,' || fail "upload of fw.bin"
admin_api -d '{"image_id":1,"models":["m1"]}' "https://$admin/api/v1/deployments" |
  grep -q '"active":true' || fail "deployment of fw.bin"

# run_fleet NAME CERTS COUNT: the fleet's summary goes to NAME.json; fails on any error.
run_fleet() {
  local name=$1 certs=$2 count=$3 pid began=$SECONDS
  python3 "$fleet" fleet --target "$device" --admin "$admin" --cacert d/pki/ca.pem \
    --certs "$certs" --devices "$count" --model m1 --from-version 1.0.0 --expect-version 1.1.0 \
    --rounds 3 --timeout 400 >"$name.json" 2>"$name.err" &
  pid=$!
  pids+=("$pid")
  wait "$pid" || fail "$name: $(cat "$name.json" "$name.err")"
  echo "$name ($((SECONDS - began)) s): $(cat "$name.json")"
  expect "$name errors" "$(json "$name.json" 'j["errors"]')" 0
  expect "$name devices" "$(json "$name.json" 'j["devices"]')" "$count"
  at_least "$name connections open at once" "$(json "$name.json" 'j["connections_peak"]')" "$count"
  at_least "$name connections open at the barrier" "$(json "$name.json" 'j["open_at_barrier"]')" \
    "$count"
  expect "$name downloads" "$(json "$name.json" 'j["downloads"]')" "$count"
  expect "$name bytes verified" "$(json "$name.json" 'j["bytes_verified"]')" $((count * size))
  # Per device: idle (the offer), downloading, downloaded, updating, then 2 idle at 1.1.0.
  expect "$name check-ins" "$(json "$name.json" 'j["checkins"]')" $((count * 6))
  expect "$name versions" "$(json "$name.json" 'j["versions"]')" "{\"1.1.0\": $count}"
}

# a) 1,000 devices at once.
run_fleet fleet-a fleet-a "$devices"
# The server's own gauge, read while every device waited at the barrier: it held them all.
at_least "server's open connections at the barrier" \
  "$(json fleet-a.json 'j["server_open_connections_at_barrier"]')" "$devices"

total() {  # QUERY: the number of devices the admin API lists for it
  admin_api "https://$admin/api/v1/devices?$1&limit=1" | json - 'j["total"]'
}
expect "devices of model m1" "$(total model=m1)" "$devices"
expect "devices at 1.1.0" "$(total 'model=m1&version=1.1.0')" "$devices"
expect "devices idle" "$(total 'model=m1&state=idle')" "$devices"
admin_api "https://$admin/api/v1/devices/dev-0999" |
  grep -q '"version":"1.1.0","state":"idle","last_result":"success"' ||
  fail "dev-0999 is not shown at 1.1.0 after a success"
expect "deployment progress" \
  "$(admin_api "https://$admin/api/v1/deployments/1" | json - 'j["progress"]')" \
  "{\"targeted\": $devices, \"at_version\": $devices, \"in_progress\": 0, \"failed\": 0}"

# /metrics counts exactly what the devices did: nothing lost, nothing counted twice.
check_metrics() {  # DEVICES CHECKINS
  metrics=$(curl -sS --max-time 60 --cacert d/pki/ca.pem "https://$admin/metrics")
  expect "fwdepot_checkins_total" "$(metric fwdepot_checkins_total)" "$2"
  expect "check-ins answered 200" "$(answered_200 /api/v1/device/checkin)" "$2"
  expect "downloads answered 200" "$(answered_200 '/api/v1/device/images/{id}')" "$1"
  expect "whole downloads" "$(metric 'fwdepot_downloads_total{range="false"}')" "$1"
  expect "ranged downloads" "$(metric 'fwdepot_downloads_total{range="true"}')" 0
  expect "fwdepot_bytes_served_total" "$(metric fwdepot_bytes_served_total)" $(($1 * size))
  expect "successes reported" "$(metric 'fwdepot_update_outcomes_total{result="success"}')" "$1"
  local other
  other=$(grep '^fwdepot_http_requests_total{listener="device"' <<<"$metrics" |
    grep -v 'status="200"}' || true)
  [ -z "$other" ] || fail "device requests not answered 200: $other"
}
check_metrics "$devices" $((devices * 6))
metrics_a=$metrics
grep -q '^fwdepot_tls_handshake_failures_total{listener="device"' <<<"$metrics_a" &&
  fail "handshakes failed with no attacker around: $(grep handshake_failures <<<"$metrics_a")"

# b) A slow-loris and a flood, demonstrably in effect, then 50 new devices.
: >slowloris.log
python3 "$fleet" slowloris --target "$device" --cacert d/pki/ca.pem --cert slow/slow-0000.pem \
  --key slow/slow-0000.key --connections "$slow_connections" --reopen --max-opens 20000 \
  --lifetime 400 >slowloris.log 2>&1 &
slow_pid=$!
pids+=("$slow_pid")
seen=$(timeout 120 tail -n +1 -f --pid="$slow_pid" slowloris.log | grep -m1 '^open ' || true)
[ -n "$seen" ] || fail "the slow-loris never had $slow_connections connections open"
: >flood.log
python3 "$fleet" flood --target "$device" --cacert d/pki/ca.pem --rate 150 --max-held 300 \
  --ready-held 150 --lifetime 400 >flood.log 2>&1 &
flood_pid=$!
pids+=("$flood_pid")
seen=$(timeout 120 tail -n +1 -f --pid="$flood_pid" flood.log | grep -m1 '^holding ' || true)
[ -n "$seen" ] || fail "the flood never held its connections"
metrics=$(curl -sS --max-time 60 --cacert d/pki/ca.pem "https://$admin/metrics")
held=$(metric fwdepot_open_connections)
at_least "connections the server holds for the attackers" "$held" "$slow_connections"
echo "under attack: the server holds $held connections"

run_fleet fleet-b fleet-b "$fresh"
kill -0 "$slow_pid" 2>/dev/null || fail "the slow-loris ended early: $(cat slowloris.log)"
kill -0 "$flood_pid" 2>/dev/null || fail "the flood ended early: $(cat flood.log)"
at_least "server's open connections at the fleet's barrier, attackers included" \
  "$(json fleet-b.json 'j["server_open_connections_at_barrier"]')" $((fresh + slow_connections))

# Every one of the first 200 slow-loris connections was cut by the server (read from the
# helper's own count as it happens, not after a sleep).
seen=$(timeout 120 tail -n +1 -f --pid="$slow_pid" slowloris.log |
  grep -m1 "^closed $slow_connections " || true)
[ -n "$seen" ] || fail "the server did not close $slow_connections slow-loris connections"
kill -TERM "$slow_pid" "$flood_pid"
wait "$slow_pid" || fail "the slow-loris failed: $(tail -5 slowloris.log)"
wait "$flood_pid" || fail "the flood failed: $(tail -5 flood.log)"
slow=$(tail -1 slowloris.log)
flood=$(tail -1 flood.log)
echo "slow-loris: $slow"
echo "flood: $flood"
expect "slow-loris heads answered" "$(json - 'j["answered"]' <<<"$slow")" 0
at_least "slow-loris connections closed by the server" \
  "$(json - 'j["closed_by_server"]' <<<"$slow")" "$slow_connections"
# Lived is measured from before the TCP connect: never shorter than what the server allowed.
# None was cut before the header timeout (nor at the shorter handshake timeout), none was
# left to the idle timeout.
python3 - "$slow" "$header_ms" "$idle_ms" <<'PY' || fail "slow-loris lifetimes: $slow"
import json, sys
s, header, idle = json.loads(sys.argv[1]), int(sys.argv[2]) / 1000, int(sys.argv[3]) / 1000
assert s["min_lived_s"] >= header, f"cut after {s['min_lived_s']} s, before the header timeout"
assert s["max_lived_s"] < idle, f"held {s['max_lived_s']} s, to the idle timeout"
PY
expect "requests answered without a client certificate" \
  "$(json - 'j["nocert_served"]' <<<"$flood")" 0
expect "certificate-less connections left hanging" "$(json - 'j["nocert_hung"]' <<<"$flood")" 0
for kind in silent half_hello nocert closed_by_server; do
  at_least "flood: $kind" "$(json - "j[\"$kind\"]" <<<"$flood")" 1
done

# c) A slow-loris that first sends one complete request, so that its trickled head is the
# connection's second (anonymously, on the admin listener): the header timeout bounds that head
# too, not the much longer keep-alive idle timeout.
: >slowloris-ka.log
python3 "$fleet" slowloris --target "$admin" --cacert d/pki/ca.pem --connections 20 \
  --path /healthz --keepalive-first /healthz --lifetime 400 >slowloris-ka.log 2>&1 &
slow_pid=$!
pids+=("$slow_pid")
seen=$(timeout 120 tail -n +1 -f --pid="$slow_pid" slowloris-ka.log | grep -m1 '^closed 20 ' || true)
[ -n "$seen" ] || fail "the server did not cut 20 trickled keep-alive heads: $(tail -3 slowloris-ka.log)"
kill -TERM "$slow_pid"
wait "$slow_pid" || fail "the keep-alive slow-loris failed: $(tail -5 slowloris-ka.log)"
slow=$(tail -1 slowloris-ka.log)
echo "keep-alive slow-loris: $slow"
expect "keep-alive slow-loris heads answered" "$(json - 'j["answered"]' <<<"$slow")" 0
python3 - "$slow" "$header_ms" "$idle_ms" <<'PY' || fail "keep-alive slow-loris lifetimes: $slow"
import json, sys
s, header, idle = json.loads(sys.argv[1]), int(sys.argv[2]) / 1000, int(sys.argv[3]) / 1000
assert s["min_lived_s"] >= header, f"cut after {s['min_lived_s']} s, before the header timeout"
assert s["max_lived_s"] < idle, f"held {s['max_lived_s']} s, to the idle timeout"
PY
grep -q ' header_timeout listener=admin ' server.log || fail "no header_timeout in the log"

# The server's side: half-open handshakes were cut at the handshake timeout, certificate-less
# ones refused, and every count of what devices did still adds up, attackers and all.
check_metrics $((devices + fresh)) $(((devices + fresh) * 6))
at_least "handshakes cut at the timeout" "$(refused timeout)" 1
at_least "handshakes without a client certificate" \
  "$(refused 'peer did not return a certificate')" 1
expect "devices at 1.1.0" "$(total 'model=m1&version=1.1.0')" $((devices + fresh))
kill -0 "$server_pid" 2>/dev/null || fail "the server died"
admin_api "https://$admin/healthz" | grep -q '"status":"ok"' || fail "healthz after the load"
! grep -E '^[^ ]+ (error|critical) ' server.log || fail "the server logged errors"
echo "load: ok"
