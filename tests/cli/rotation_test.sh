#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The server's certificate and the CRL rotated while devices are connected, with real processes:
# `fwdepot certs renew-server` and `fwdepot certs revoke`, then SIGHUP. A device's keep-alive
# connection opened before the rotation goes on being served; every new handshake, on the device
# and admin listeners and over CoAPS, gets the new certificate; the revoked device's new
# handshakes are refused over HTTPS and CoAPS, while the others' succeed. A certificate that does
# not parse, and a key that does not match it, are each refused on SIGHUP with an error in the
# log, and the last good certificate stays in force; a revocation in the same change applies.
set -euo pipefail
fwdepot=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

"$fwdepot" init --data d >/dev/null 2>&1
for id in dev-a dev-b dev-c; do
  "$fwdepot" certs issue-device --data d --id "$id" --model m1 --out "$id" >/dev/null
done
start_server d server.log

serial_of() {  # PEM file: its certificate's serial, lower-case hex without leading zeros
  openssl x509 -in "$1" -noout -serial | sed 's/^serial=0*//' | tr 'A-F' 'a-f'
}
presented() {  # HOST:PORT [s_client options]: the serial of the certificate a new handshake gets
  local target=$1
  shift
  timeout 20 openssl s_client -connect "$target" -CAfile d/pki/ca.pem -verify_return_error "$@" \
    </dev/null 2>/dev/null | openssl x509 -noout -serial | sed 's/^serial=0*//' | tr 'A-F' 'a-f'
}
device_tls() { presented "$device" -cert dev-a.pem -key dev-a.key; }
admin_tls() { presented "$admin"; }
coaps_tls() { presented "$coaps" -dtls1_2 -cert dev-a.pem -key dev-a.key; }
checkin() {  # DEVICE: the status of one check-in over a new connection
  curl -sS --max-time 30 -o /dev/null -w '%{http_code}' --cacert d/pki/ca.pem --cert "$1.pem" \
    --key "$1.key" -H 'Content-Type: application/json' \
    -d '{"model":"m1","version":"1.0.0","state":"idle"}' \
    "https://$device/api/v1/device/checkin" 2>/dev/null || true
}
revoked_refusals() {  # handshakes the device listener refused for a revoked certificate
  grep -c ' tls_refused listener=device .*reason="certificate revoked"' server.log || true
}
refused_as_revoked() {  # COUNT: waits (bounded) for refusal number COUNT+1 in the log, which
  # the server writes after the client has seen the alert
  local seen
  seen=$(timeout 30 tail -n +1 -f --pid="$server_pid" server.log |
    grep -m$(($1 + 1)) ' tls_refused listener=device .*reason="certificate revoked"' |
    tail -n +$(($1 + 1)) || true)
  [ -n "$seen" ]
}
coaps_checkin() {  # DEVICE: coap-client's output for a check-in over a new DTLS session
  timeout 30 coap-client-openssl -m post -t json -B 10 -R d/pki/ca.pem -c "$1.pem" -j "$1.key" \
    -e '{"model":"m1","version":"1.0.0","state":"idle"}' "coaps://$coaps/checkin" 2>&1 || true
}

old=$(serial_of d/pki/server.pem)
[ "$(device_tls)" = "$old" ] && [ "$(admin_tls)" = "$old" ] && [ "$(coaps_tls)" = "$old" ] ||
  fail "before the rotation, the listeners do not all present $old"

# dev-a holds one keep-alive connection across the rotation: a check-in before, one after.
cat >held.py <<'PY'
import json, socket, ssl, sys
target, ca, cert, key, go = sys.argv[1:6]
host, port = target.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=60), server_hostname=host)
reader = s.makefile("rb")

def checkin():
    body = json.dumps({"model": "m1", "version": "1.0.0", "state": "idle"}).encode()
    s.sendall(b"POST /api/v1/device/checkin HTTP/1.1\r\nHost: " + target.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    status = int(reader.readline().split()[1])
    length = 0
    while True:
        line = reader.readline().strip()
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status

serial = format(int(s.getpeercert()["serialNumber"], 16), "x")
print(f"before serial={serial} status={checkin()}", flush=True)
with open(go) as f:  # blocks until the test has rotated everything
    f.readline()
print(f"after serial={format(int(s.getpeercert()['serialNumber'], 16), 'x')} status={checkin()}",
      flush=True)
PY
mkfifo go
: >held.log
python3 held.py "$device" d/pki/ca.pem dev-a.pem dev-a.key go >held.log 2>&1 &
held_pid=$!
pids+=("$held_pid")
line=$(timeout 30 tail -n +1 -f --pid="$held_pid" held.log | grep -m1 '^before ' || true)
[ "$line" = "before serial=$old status=200" ] || fail "the held connection: $line $(cat held.log)"

# The rotation: a new server key and certificate, dev-b revoked, then SIGHUP.
"$fwdepot" certs renew-server --data d | grep -q '^renewed the server certificate ' ||
  fail "certs renew-server"
new=$(serial_of d/pki/server.pem)
[ "$new" != "$old" ] || fail "renew-server kept the serial $old"
"$fwdepot" certs revoke --data d --id dev-b >/dev/null
reloaded() {  # send SIGHUP and wait for the reload's verdict: PATTERN in the log
  local before seen
  before=$(grep -c "$1" server.log || true)
  kill -HUP "$server_pid"
  # tail ends on SIGPIPE once grep has its line: only grep's verdict counts.
  seen=$(timeout 30 tail -n +1 -f --pid="$server_pid" server.log | grep -m$((before + 1)) "$1" |
    tail -n +$((before + 1)) || true)
  [ -n "$seen" ] || fail "no '$1' after SIGHUP"
}
reloaded " server_certificate_loaded serial=$new "
grep -q ' crl_loaded .* revoked=1 ' server.log || fail "the new CRL is not loaded"

# Every new handshake gets the new certificate; the held connection is still served.
[ "$(device_tls)" = "$new" ] || fail "the device listener presents $(device_tls), not $new"
[ "$(admin_tls)" = "$new" ] || fail "the admin listener presents $(admin_tls), not $new"
[ "$(coaps_tls)" = "$new" ] || fail "CoAPS presents $(coaps_tls), not $new"
echo go >go
wait "$held_pid" || fail "the held connection: $(cat held.log)"
grep -qx "after serial=$old status=200" held.log || fail "the held connection: $(cat held.log)"
[ "$(checkin dev-c)" = 200 ] || fail "dev-c over a new connection after the rotation"
refusals=$(revoked_refusals)
[ "$(checkin dev-b)" = 000 ] || fail "revoked dev-b was not refused over HTTPS"
refused_as_revoked "$refusals" || fail "dev-b was not refused as revoked"
grep -q '"update"' <<<"$(coaps_checkin dev-c)" || fail "dev-c over CoAPS: $(coaps_checkin dev-c)"
out=$(coaps_checkin dev-b)
! grep -q '"update"' <<<"$out" || fail "revoked dev-b was served over CoAPS: $out"

# A broken renewal is refused and the last good certificate stays in force: first a certificate
# that does not parse, then a key that does not match the certificate. A device revoked in the
# same change is refused all the same: the CRL does not wait for a good certificate.
cp d/pki/server.pem good.pem
cp d/pki/server.key good.key
echo "not a certificate" >d/pki/server.pem
"$fwdepot" certs revoke --data d --id dev-c >/dev/null
reloaded " tls_reload_rejected kept=last_good "
[ "$(device_tls)" = "$new" ] && [ "$(admin_tls)" = "$new" ] && [ "$(coaps_tls)" = "$new" ] ||
  fail "a certificate that does not parse was not refused"
refusals=$(revoked_refusals)
[ "$(checkin dev-c)" = 000 ] || fail "dev-c, revoked with a refused renewal, was served"
refused_as_revoked "$refusals" || fail "dev-c was not refused as revoked"
cp good.pem d/pki/server.pem
"$fwdepot" keys generate --out other >/dev/null
cp other.key d/pki/server.key
reloaded " tls_reload_rejected kept=last_good error=.*mismatch"
[ "$(device_tls)" = "$new" ] && [ "$(admin_tls)" = "$new" ] && [ "$(coaps_tls)" = "$new" ] ||
  fail "a key that does not match was not refused"
[ "$(checkin dev-a)" = 200 ] || fail "dev-a after the refused renewals"
! grep -q 'PRIVATE KEY' server.log || fail "key material in the log"
echo "rotation: ok (serial $old -> $new)"
