#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CoAPS listener with libcoap's own coap-client-openssl, a client no one here wrote: a device
# certificate checks in (the JSON offer comes back block-wise) and downloads the image with
# Block2 at 1024 and at 64 bytes, identical to the upload; the HTTPS offer names the CoAPS URL.
# PSK mode: a key provisioned with PUT /api/v1/devices/{id}/psk checks in and downloads; a wrong
# key, an unknown identity or a deleted PSK fails the handshake, and no key reaches the log.
# No certificate, a foreign one or a revoked one: the handshake fails and nothing is served;
# an image not offered, or an unknown path, is refused. With one session allowed per address,
# a second device from the same address is refused while the first (held mid-download with
# SIGSTOP) keeps its session and then finishes.
# coap-client-openssl exits 0 on most failures, so outcomes are read from its output and the
# server's log, never from its exit code.
set -euo pipefail
fwdepot=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

"$fwdepot" init --data d >/dev/null 2>&1
"$fwdepot" certs issue-device --data d --id dev-c --model m1 --out dev >/dev/null
"$fwdepot" certs issue-device --data d --id dev-r --model m1 --out revoked >/dev/null
"$fwdepot" init --data other >/dev/null 2>&1
"$fwdepot" certs issue-device --data other --id dev-c --model m1 --out foreign >/dev/null
token=$("$fwdepot" token create --data d --name coaps 2>/dev/null)
head -c $((300 * 1024 + 17)) /dev/urandom >fw.bin
"$fwdepot" sign --key d/keys/signing.key --name fw --version 1.1.0 --model m1 --out fw.dsse \
  fw.bin >/dev/null

start_server d server.log --coaps-max-sessions-per-address 1
[[ $coaps == 127.0.0.1:* ]] || fail "no CoAPS address: $coaps"
curl -sS --max-time 30 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" \
  -F manifest=@fw.dsse -F image=@fw.bin "https://$admin/api/v1/images" | grep -q '"id":1,' ||
  fail "upload"
curl -sS --max-time 30 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" \
  -d '{"image_id":1,"models":["m1"]}' "https://$admin/api/v1/deployments" >/dev/null

# coap CERT KEY OUT ARGS...: one bounded coap-client-openssl run as a device.
coap() {
  local cert=$1 key=$2 out=$3
  shift 3
  local auth=()
  [ -n "$cert" ] && auth=(-c "$cert" -j "$key")
  rm -f "$out"
  timeout 60 coap-client-openssl -B 30 -v 3 "${auth[@]}" -C d/pki/ca.pem -o "$out" "$@" \
    >>coap.err 2>&1 || true
}
# coap_psk IDENTITY KEY OUT ARGS...: the same, with a pre-shared key. A wrong key gets no
# answer at all (DTLS drops the bad Finished), so those runs wait only $give_up seconds.
give_up=30
coap_psk() {
  local identity=$1 key=$2 out=$3
  shift 3
  rm -f "$out"
  timeout 60 coap-client-openssl -B "$give_up" -v 3 -u "$identity" -k "$key" -o "$out" "$@" \
    >>coap.err 2>&1 || true
}
admin_api() {
  curl -sS --max-time 30 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" "$@"
}

checkin='{"model":"m1","version":"1.0.0","state":"idle"}'
coap dev.pem dev.key offer.json -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
python3 - offer.json "$coaps" "$device" <<'PY' || fail "check-in over CoAPS: $(cat offer.json coap.err)"
import json, sys
offer = json.load(open(sys.argv[1]))["update"]
assert offer["image_id"] == 1 and offer["size"] == 300 * 1024 + 17, offer
assert offer["urls"]["coaps"] == f"coaps://{sys.argv[2]}/fw/1", offer["urls"]
assert offer["urls"]["https"] == f"https://{sys.argv[3]}/api/v1/device/images/1", offer["urls"]
PY
# The HTTPS check-in names the CoAPS URL too.
curl -sS --max-time 30 --cacert d/pki/ca.pem --cert dev.pem --key dev.key \
  -H 'Content-Type: application/json' -d "$checkin" "https://$device/api/v1/device/checkin" |
  grep -q "\"coaps\":\"coaps://127.0.0.1:${coaps##*:}/fw/1\"" || fail "no CoAPS URL over HTTPS"

for size in 1024 64; do
  coap dev.pem dev.key "got-$size.bin" -b "$size" "coaps://$coaps/fw/1"
  cmp -s "got-$size.bin" fw.bin || fail "Block2 at $size bytes: other bytes ($(cat coap.err))"
done
grep -q 'listener=coaps .* who=dev-c method=GET route=/fw/{id} status=205 block=0' server.log ||
  fail "the download is not in the log"

# PSK mode. coap-client-openssl takes the key as text, so the key is printable here.
psk="psk-of-dev-p-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
psk_hex=$(printf %s "$psk" | od -An -tx1 | tr -d ' \n')
admin_api -X PUT -d "{\"key\":\"$psk_hex\"}" "https://$admin/api/v1/devices/dev-p/psk" \
  >put.json
grep -q '"identity":"dev-p"' put.json || fail "PUT psk: $(cat put.json)"
grep -q "$psk_hex" put.json && fail "the PUT answer echoes the key"
for bad in '{"key":"00"}' '{"key":"zz"}' '{"identity":"a b","key":"'"$psk_hex"'"}' '{"k":1}' '['; do
  code=$(admin_api -o /dev/null -w '%{http_code}' -X PUT -d "$bad" \
    "https://$admin/api/v1/devices/dev-p/psk")
  [ "$code" = 400 ] || fail "PUT psk $bad gave $code"
done
code=$(admin_api -o /dev/null -w '%{http_code}' -X PUT -d "{\"identity\":\"dev-p\",\"key\":\"$psk_hex\"}" \
  "https://$admin/api/v1/devices/dev-x/psk")
[ "$code" = 409 ] || fail "a second device took identity dev-p ($code)"
coap_psk dev-p "$psk" psk-offer.json -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
grep -q '"image_id":1' psk-offer.json || fail "PSK check-in: $(cat psk-offer.json coap.err)"
grep -q 'listener=coaps .* who=dev-p method=POST route=/checkin status=205' server.log ||
  fail "the PSK check-in is not dev-p's"
for size in 1024 64; do
  coap_psk dev-p "$psk" "psk-$size.bin" -b "$size" "coaps://$coaps/fw/1"
  cmp -s "psk-$size.bin" fw.bin || fail "PSK Block2 at $size bytes: other bytes"
done
before=$(grep -c 'listener=coaps' server.log)
give_up=3
coap_psk dev-p "${psk%?}X" wrong.json -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
[ ! -e wrong.json ] || fail "a wrong PSK was answered"
give_up=30
coap_psk dev-nobody "$psk" unknown.json -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
[ ! -e unknown.json ] && grep -q 'coaps_psk_refused identity=dev-nobody' server.log ||
  fail "an unknown PSK identity"
code=$(admin_api -o /dev/null -w '%{http_code}' -X DELETE "https://$admin/api/v1/devices/dev-p/psk")
[ "$code" = 204 ] || fail "DELETE psk gave $code"
coap_psk dev-p "$psk" deleted.json -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
[ ! -e deleted.json ] || fail "a deleted PSK was answered"
[ "$(grep -c 'listener=coaps' server.log)" = "$before" ] || fail "a refused PSK reached a handler"
! grep -qF -e "$psk" -e "$psk_hex" server.log || fail "the PSK is in the log"

# Refusals: nothing is served.
coap dev.pem dev.key nope.bin "coaps://$coaps/fw/2"
[ ! -e nope.bin ] && grep -q 'route=/fw/{id} status=403' server.log || fail "image 2 was served"
coap dev.pem dev.key nope.bin "coaps://$coaps/elsewhere"
[ ! -e nope.bin ] && grep -q 'route=unknown status=404' server.log || fail "unknown path"
before=$(grep -c 'listener=coaps' server.log)
coap "" "" none.bin "coaps://$coaps/fw/1"
[ ! -e none.bin ] || fail "served without a client certificate"
coap foreign.pem foreign.key foreign.bin "coaps://$coaps/fw/1"
[ ! -e foreign.bin ] || fail "served to a certificate from another CA"
coap revoked.pem revoked.key before.json -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
grep -q '"image_id":1' before.json || fail "dev-r before its revocation"
before=$(grep -c 'listener=coaps' server.log)
"$fwdepot" certs revoke --data d --id dev-r >/dev/null
coap revoked.pem revoked.key revoked.bin -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
[ ! -e revoked.bin ] || fail "served a revoked certificate"
[ "$(grep -c 'listener=coaps' server.log)" = "$before" ] || fail "a refused handshake reached a handler"
# The revocation did not disturb the good device.
coap dev.pem dev.key again.bin -b 512 "coaps://$coaps/fw/1"
cmp -s again.bin fw.bin || fail "download after a revocation"

# One session per address: dev-c is frozen mid-download, holding its session; a second device
# from 127.0.0.1 is refused; dev-c, thawed, finishes.
seen=$(wc -l <server.log)
# No `timeout` wrapper: SIGSTOP must reach coap-client itself; -B 60 bounds it.
coap-client-openssl -B 60 -c dev.pem -j dev.key -C d/pki/ca.pem -b 16 -o held.bin \
  "coaps://$coaps/fw/1" >held.err 2>&1 &
held_pid=$!
pids+=("$held_pid")
started=$(timeout 30 tail -n +$((seen + 1)) -f --pid="$server_pid" server.log |
  grep -m1 'who=dev-c method=GET route=/fw/{id} status=205 block=0 ' || true)
[ -n "$started" ] || fail "the held download did not start"
kill -STOP "$held_pid"
admin_api -X PUT -d "{\"key\":\"$psk_hex\"}" "https://$admin/api/v1/devices/dev-p/psk" >/dev/null
coap_psk dev-p "$psk" limited.json -m post -O 12,50 -e "$checkin" "coaps://$coaps/checkin"
metrics=$(admin_api "https://$admin/metrics")
kill -CONT "$held_pid"
wait "$held_pid" || true
[ ! -e limited.json ] && grep -q 'coaps_session_refused peer=127.0.0.1 limit=per_address' server.log ||
  fail "a second session from one address was let in"
grep -q '^fwdepot_coaps_sessions 1$' <<<"$metrics" || fail "sessions gauge: $(grep coaps <<<"$metrics")"
grep -q 'reason="session_limit"' <<<"$metrics" || fail "no session_limit refusal in the metrics"
cmp -s held.bin fw.bin || fail "the held download did not finish: $(cat held.err)"
echo "coaps: ok"
