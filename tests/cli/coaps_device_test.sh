#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fwdepot-device over CoAPS against a real server: full update cycles with a certificate and with
# a pre-shared key; through a lossy UDP relay (drops, delays, reordering) with the exact bytes;
# a download cut off mid-way (the relay stalls, the agent is killed) resumes from its last
# durable block; a payload tampered with on the server's disk is refused; and 50 devices update
# over CoAPS at once while an HTTPS download is running, all with the right bytes. Garbage
# datagrams and a flood of half-open handshakes stall neither a device in mid-download nor a
# new one.
set -euo pipefail
fwdepot=$1
agent=$2
relay=$3
flood=$4
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

"$fwdepot" init --data d >/dev/null 2>&1
issue() { "$fwdepot" certs issue-device --data d --id "$1" --model "$2" --out "$1" >/dev/null; }
for id in dev-c dev-r; do issue "$id" m1; done
issue dev-t m2
issue dev-l m3
issue dev-h big
token=$("$fwdepot" token create --data d --name coaps 2>/dev/null)
admin_api() {
  curl -sS --max-time 60 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" "$@"
}
publish() {  # FILE NAME VERSION MODEL
  "$fwdepot" sign --key d/keys/signing.key --name "$2" --version "$3" --model "$4" \
    --out "$1.dsse" "$1" >/dev/null
  admin_api -F manifest=@"$1.dsse" -F image=@"$1" "https://$admin/api/v1/images" |
    sed -n 's/^{"id":\([0-9]*\),.*/\1/p'
}

start_server d server.log

head -c $((300 * 1024 + 17)) /dev/urandom >fw.bin
id=$(publish fw.bin fw 1.1.0 m1)
[ "$id" = 1 ] || fail "upload of fw.bin"
admin_api -d '{"image_id":1,"models":["m1"]}' "https://$admin/api/v1/deployments" >/dev/null

# run_agent STATE_DIR ARGS...: one bounded update cycle; its output goes to STATE_DIR.out.
run_agent() {
  local dir=$1
  shift
  timeout 120 "$agent" --trusted-key d/keys/signing.pub --initial-version 1.0.0 --once \
    --state-dir "$dir" "$@" >"$dir.out" 2>&1
}
with_cert() { echo --cert "$1.pem" --key "$1.key" --cacert d/pki/ca.pem --model "$2"; }
updated() {  # STATE_DIR: updated to 1.1.0 with fw.bin's bytes
  grep -q '^updated to 1.1.0$' "$1.out" && cmp -s "$1/firmware.bin" fw.bin
}

# A certificate.
# shellcheck disable=SC2046
run_agent s-c --server "coaps://$coaps" $(with_cert dev-c m1) || true
updated s-c || fail "PKI cycle over CoAPS: $(cat s-c.out)"
admin_api "https://$admin/api/v1/devices/dev-c" | grep -q '"version":"1.1.0","state":"idle","last_result":"success"' ||
  fail "the server does not show dev-c at 1.1.0"
grep -q 'listener=coaps .* who=dev-c method=GET route=/fw/{id} status=205 block=0' server.log ||
  fail "dev-c did not download over CoAPS"
grep -q 'listener=device .* who=dev-c ' server.log && fail "dev-c used HTTPS"

# A pre-shared key, from a file.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >psk.hex
admin_api -X PUT -d "{\"key\":\"$(cat psk.hex)\"}" "https://$admin/api/v1/devices/dev-p/psk" |
  grep -q '"identity":"dev-p"' || fail "PUT psk"
run_agent s-p --server "coaps://$coaps" --psk-identity dev-p --psk-key-file psk.hex \
  --model m1 || true
updated s-p || fail "PSK cycle over CoAPS: $(cat s-p.out)"
admin_api "https://$admin/api/v1/devices/dev-p" | grep -q '"version":"1.1.0"' ||
  fail "the server does not show dev-p at 1.1.0"
! grep -qF "$(cat psk.hex)" server.log s-p.out || fail "the PSK is in a log"

# start_relay NAME ARGS...: a UDP relay towards the CoAPS port; sets relay_port.
start_relay() {
  local name=$1
  shift
  : >"$name.log"  # exists before tail looks at it
  python3 "$relay" --target "${coaps##*:}" --lifetime 240 "$@" >"$name.log" 2>&1 &
  pids+=("$!")
  eval "${name}_pid=$!"
  local first
  first=$(timeout 10 tail -n +1 -f --pid="$!" "$name.log" | grep -m1 '^listening ' || true)
  [ -n "$first" ] || fail "the relay did not start"
  relay_port=${first#listening }
}

# Through a lossy link: 5% of datagrams lost and 10% held back up to 150 ms, either way. Each
# loss costs a retransmission timeout (1 s at least in libcoap 4.3.1), so this image is small.
head -c $((96 * 1024 + 5)) /dev/urandom >m3.bin
id_m3=$(publish m3.bin fw-m3 1.1.0 m3)
admin_api -d "{\"image_id\":$id_m3,\"models\":[\"m3\"]}" "https://$admin/api/v1/deployments" >/dev/null
start_relay lossy --drop 0.05 --delay 0.1 --delay-ms 150 --seed 7
# shellcheck disable=SC2046
run_agent s-l --server "coaps://127.0.0.1:$relay_port" $(with_cert dev-l m3) \
  --coap-ack-timeout-ms 1000 || true
kill -TERM "$lossy_pid"
wait "$lossy_pid" || true
grep -q '^updated to 1.1.0$' s-l.out && cmp -s s-l/firmware.bin m3.bin ||
  fail "over the lossy relay: $(cat s-l.out)"
grep -q "listener=coaps peer=127.0.0.1:[0-9]* who=dev-l method=GET route=/fw/{id}" server.log ||
  fail "dev-l did not download over CoAPS"
stats=$(grep '^stats ' lossy.log)
dropped=$(sed -n 's/.* dropped=\([0-9]*\).*/\1/p' <<<"$stats")
delayed=$(sed -n 's/.* delayed=\([0-9]*\).*/\1/p' <<<"$stats")
[ "$dropped" -gt 0 ] && [ "$delayed" -gt 0 ] || fail "the relay lost nothing: $stats"
echo "lossy relay: $stats"

# Cut off: the relay stops forwarding after 120 datagrams from the device; the agent, stuck in
# retransmissions, is killed; run again directly, it resumes where its durable bytes end.
start_relay stall --stall-after 120
# No `timeout` wrapper: the kill below must reach the agent itself. The stall bounds it.
# shellcheck disable=SC2046
"$agent" --trusted-key d/keys/signing.pub --initial-version 1.0.0 --once \
  --state-dir s-r --server "coaps://127.0.0.1:$relay_port" $(with_cert dev-r m1) \
  >s-r.cut.out 2>&1 &
cut_pid=$!
pids+=("$cut_pid")
stalled=$(timeout 60 tail -n +1 -f --pid="$stall_pid" stall.log | grep -m1 '^stalled' || true)
[ -n "$stalled" ] || fail "the relay never stalled: $(cat s-r.cut.out)"
kill -KILL "$cut_pid"
wait "$cut_pid" 2>/dev/null || true
[ -s s-r/firmware.partial ] || fail "nothing was stored before the cut"
# shellcheck disable=SC2046
run_agent s-r --server "coaps://$coaps" $(with_cert dev-r m1) || true
updated s-r || fail "resumed download: $(cat s-r.out)"
resumed=$(sed -n 's/^resumed at byte \([0-9]*\)$/\1/p' s-r.out)
[ -n "$resumed" ] && [ "$resumed" -gt 0 ] || fail "the download started over: $(cat s-r.out)"
grep -q 'fwdepot_downloads_total{range="true"} [1-9]' <<<"$(admin_api "https://$admin/metrics")" ||
  fail "the server saw no resumed download"
echo "resumed at byte $resumed"

# A payload tampered with on the server's disk: the device refuses it.
head -c $((100 * 1024)) /dev/urandom >m2.bin
id2=$(publish m2.bin fw-m2 1.1.0 m2)
[ -n "$id2" ] || fail "upload of m2.bin"
admin_api -d "{\"image_id\":$id2,\"models\":[\"m2\"]}" "https://$admin/api/v1/deployments" >/dev/null
blob=$(find d/blobs/sha256 -type f -name "$(sha256sum m2.bin | cut -c1-64)")
[ -f "$blob" ] || fail "no blob for m2.bin"
chmod u+w "$blob"
printf '\x5a' | dd of="$blob" bs=1 seek=5000 conv=notrunc status=none
# shellcheck disable=SC2046
if run_agent s-t --server "coaps://$coaps" $(with_cert dev-t m2); then
  fail "a tampered payload was accepted: $(cat s-t.out)"
fi
grep -q 'update failed (integrity_failure)' s-t.out || fail "tampered payload: $(cat s-t.out)"
[ ! -e s-t/firmware.bin ] || fail "a tampered payload was installed"
admin_api "https://$admin/api/v1/devices/dev-t" | grep -q '"last_result":"integrity_failure"' ||
  fail "the server was not told of the integrity failure"

# A flood of garbage and half-open DTLS handshakes from 200 ports, 4,000 datagrams a second,
# starts while dev-f is mid-download (1 MiB in 32-byte blocks: 32,768 exchanges, seconds of
# work); dev-f finishes, and dev-g handshakes and updates during the flood. The flood runs until
# it is stopped (at most 300 s), so that it covers both devices even under ThreadSanitizer.
head -c $((1024 * 1024)) /dev/urandom >m4.bin
id_m4=$(publish m4.bin fw-m4 1.1.0 m4)
admin_api -d "{\"image_id\":$id_m4,\"models\":[\"m4\"]}" "https://$admin/api/v1/deployments" >/dev/null
issue dev-f m4
issue dev-g m1
: >s-f.out
# shellcheck disable=SC2046
timeout 120 "$agent" --trusted-key d/keys/signing.pub --initial-version 1.0.0 --once \
  --state-dir s-f --server "coaps://$coaps" $(with_cert dev-f m4) --block-size 32 \
  >s-f.out 2>&1 &
talking_pid=$!
pids+=("$talking_pid")
progress=$(timeout 60 tail -n +1 -f --pid="$talking_pid" s-f.out | grep -m1 '^downloaded ' || true)
[ -n "$progress" ] || fail "dev-f did not start downloading: $(cat s-f.out)"
: >flood.log
python3 "$flood" --target "${coaps##*:}" --rate 4000 --seconds 300 --max 1200000 >flood.log 2>&1 &
flood_pid=$!
pids+=("$flood_pid")
started=$(timeout 30 tail -n +1 -f --pid="$flood_pid" flood.log | grep -m1 '^started' || true)
[ -n "$started" ] || fail "the flood did not start"
kill -0 "$talking_pid" 2>/dev/null || fail "dev-f finished before the flood began; nothing was tested"
# shellcheck disable=SC2046
run_agent s-g --server "coaps://$coaps" $(with_cert dev-g m1) || true
wait "$talking_pid" || true
kill -0 "$flood_pid" 2>/dev/null || fail "the flood ended early: $(cat flood.log)"
kill -TERM "$flood_pid"
wait "$flood_pid" || true
grep -q '^updated to 1.1.0$' s-f.out && cmp -s s-f/firmware.bin m4.bin ||
  fail "dev-f during the flood: $(cat s-f.out)"
updated s-g || fail "dev-g during the flood: $(cat s-g.out)"
echo "flood: $(grep '^sent ' flood.log)"

# 50 devices over CoAPS at once, while a rate-limited HTTPS download runs. Their certificates
# are issued first: under a sanitizer that alone takes longer than the download.
for i in $(seq -w 0 49); do
  issue "fleet-$i" m1
done
head -c $((32 * 1024 * 1024)) /dev/urandom >big.bin
id3=$(publish big.bin fw-big 2.0.0 big)
admin_api -d "{\"image_id\":$id3,\"models\":[\"big\"]}" "https://$admin/api/v1/deployments" >/dev/null
curl -sS --max-time 60 --cacert d/pki/ca.pem --cert dev-h.pem --key dev-h.key \
  -H 'Content-Type: application/json' -d '{"model":"big","version":"1.0.0","state":"idle"}' \
  "https://$device/api/v1/device/checkin" | grep -q "\"image_id\":$id3" || fail "dev-h offer"
curl -sS --max-time 100 --limit-rate 2M --cacert d/pki/ca.pem --cert dev-h.pem --key dev-h.key \
  -o https.bin "https://$device/api/v1/device/images/$id3" &
https_pid=$!
pids+=("$https_pid")
fleet=()
for i in $(seq -w 0 49); do
  # shellcheck disable=SC2046
  run_agent "f-$i" --server "coaps://$coaps" $(with_cert "fleet-$i" m1) &
  fleet+=("$!")
  pids+=("$!")
done
failed=0
for pid in "${fleet[@]}"; do
  wait "$pid" || failed=$((failed + 1))
done
for i in $(seq -w 0 49); do
  updated "f-$i" || fail "fleet-$i: $(cat "f-$i.out")"
done
[ "$failed" = 0 ] || fail "$failed fleet agents failed"
wait "$https_pid" || fail "the HTTPS download failed"
cmp -s https.bin big.bin || fail "the HTTPS download has other bytes"
# They overlapped: the server's log has fleet downloads begin while dev-h's download ran (its
# line is written at the end and says how long it took).
python3 - server.log <<'PY' || fail "the HTTPS download did not overlap the CoAPS fleet"
import re, sys
from datetime import datetime, timedelta
def at(line):
    return datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
https = fleet = None
lines = open(sys.argv[1]).read().splitlines()
for line in lines:
    m = re.search(r"who=dev-h method=GET route=/api/v1/device/images/\{id\} status=200 .* ms=([0-9.]+)", line)
    if m:
        https = (at(line) - timedelta(milliseconds=float(m.group(1))), at(line))
starts = [at(l) for l in lines if re.search(r"who=fleet-\d+ method=GET route=/fw/\{id\} status=205 block=0 ", l)]
assert https and starts, "no HTTPS download or no fleet download in the log"
inside = sum(1 for t in starts if https[0] <= t <= https[1])
print(f"fleet downloads begun during the HTTPS download: {inside} of {len(starts)}")
assert inside > 0
PY
metrics=$(admin_api "https://$admin/metrics")
grep -q '^fwdepot_coaps_sessions ' <<<"$metrics" || fail "no CoAPS session gauge"
echo "coaps device: ok"
