#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CoAPS listener with libcoap's own coap-client-openssl, a client no one here wrote: a device
# certificate checks in (the JSON offer comes back block-wise) and downloads the image with
# Block2 at 1024 and at 64 bytes, identical to the upload; the HTTPS offer names the CoAPS URL.
# No certificate, a foreign one or a revoked one: the handshake fails and nothing is served;
# an image not offered, or an unknown path, is refused.
# coap-client-openssl exits 0 on most failures, so outcomes are read from its output and the
# server's log, never from its exit code.
set -euo pipefail
fwdepot=$1
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() {
  echo "FAIL: $*" >&2
  tail -20 server.log >&2 || true
  exit 1
}

"$fwdepot" init --data d >/dev/null 2>&1
"$fwdepot" certs issue-device --data d --id dev-c --model m1 --out dev >/dev/null
"$fwdepot" certs issue-device --data d --id dev-r --model m1 --out revoked >/dev/null
"$fwdepot" init --data other >/dev/null 2>&1
"$fwdepot" certs issue-device --data other --id dev-c --model m1 --out foreign >/dev/null
token=$("$fwdepot" token create --data d --name coaps 2>/dev/null)
head -c $((300 * 1024 + 17)) /dev/urandom >fw.bin
"$fwdepot" sign --key d/keys/signing.key --name fw --version 1.1.0 --model m1 --out fw.dsse \
  fw.bin >/dev/null

: >server.log
"$fwdepot" serve --data d --device-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --coaps-listen 127.0.0.1:0 --threads 2 >server.log 2>&1 &
server_pid=$!
line=$(timeout 30 tail -n +1 -f --pid="$server_pid" server.log | grep -m1 ' listening ' || true)
[ -n "$line" ] || fail "the server did not start"
admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' <<<"$line")
device=$(sed -n 's/.* device=\([^ ]*\) .*/\1/p' <<<"$line")
coaps=$(sed -n 's/.* coaps=\([^ ]*\) .*/\1/p' <<<"$line")
[[ $coaps == 127.0.0.1:* ]] || fail "no CoAPS address in: $line"
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
echo "coaps: ok"
