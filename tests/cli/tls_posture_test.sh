#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The TLS posture of both HTTPS listeners, as sslscan (an outside scanner) and openssl s_client
# see it: no protocol below TLS 1.2; only AEAD suites with forward secrecy (TLS 1.3's, and ECDHE
# with AES-GCM or ChaCha20-Poly1305 on TLS 1.2); no renegotiation; no compression; a chain that
# verifies to the CA with the server's name, and no more of it than the certificate file holds.
set -euo pipefail
fwdepot=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

"$fwdepot" init --data d >/dev/null 2>&1
"$fwdepot" certs issue-device --data d --id dev-s --model m1 --out dev >/dev/null
start_server d server.log

check_scan() {  # NAME XML
  python3 - "$1" "$2" <<'PY'
import sys
import xml.etree.ElementTree as ET
name, path = sys.argv[1], sys.argv[2]
test = ET.parse(path).getroot().find("ssltest")
assert test is not None, f"{name}: sslscan found no TLS server"
enabled = {(p.get("type"), p.get("version")) for p in test.findall("protocol") if p.get("enabled") == "1"}
assert enabled == {("tls", "1.2"), ("tls", "1.3")}, f"{name}: protocols {sorted(enabled)}"
reneg = test.find("renegotiation")
assert reneg is not None and reneg.get("supported") == "0", f"{name}: renegotiation is supported"
for hb in test.findall("heartbleed"):
    assert hb.get("vulnerable") == "0", f"{name}: heartbleed on {hb.get('sslversion')}"
ciphers = [c for c in test.findall("cipher") if c.get("status") in ("accepted", "preferred")]
assert ciphers, f"{name}: no cipher accepted"
for c in ciphers:
    suite, version = c.get("cipher"), c.get("sslversion")
    if version == "TLSv1.3":
        ok = suite in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
    else:
        ok = version == "TLSv1.2" and suite.startswith("ECDHE-") and ("-GCM-" in suite or suite.endswith("CHACHA20-POLY1305"))
    assert ok, f"{name}: {version} {suite} is not an AEAD suite with forward secrecy"
print(f"{name}: TLS 1.2 and 1.3 only, {len(ciphers)} AEAD+ECDHE suites, no renegotiation")
PY
}

for listener in device admin; do
  address=${!listener}
  client=()
  [ "$listener" = device ] && client=(--certs=dev.pem --pk=dev.key)
  timeout 120 sslscan --no-colour "${client[@]}" --xml="$listener.xml" "$address" \
    >"$listener.scan" 2>&1 || fail "sslscan $listener: $(cat "$listener.scan")"
  check_scan "$listener" "$listener.xml" || fail "$listener: $(cat "$listener.scan")"
  # Compression and the chain, from OpenSSL's own client, on TLS 1.2 (where compression could
  # exist at all).
  session=$(timeout 30 openssl s_client -connect "$address" -tls1_2 -CAfile d/pki/ca.pem \
    -verify_return_error -verify_hostname localhost -servername localhost \
    ${client[0]:+-cert dev.pem -key dev.key} </dev/null 2>&1 || true)
  grep -q '^Compression: NONE' <<<"$session" || fail "$listener: compression: $session"
  grep -q 'Verify return code: 0 (ok)' <<<"$session" || fail "$listener: chain: $session"
  # Exactly the chain configured: the server certificate alone (the CA is the devices' own
  # trust anchor), not one OpenSSL builds from the trust store at every handshake.
  sent=$(grep -c '^ *[0-9]* s:' <<<"$session" || true)
  [ "$sent" -eq 1 ] || fail "$listener: sent $sent certificates: $session"
done
# The device listener refuses a client without a certificate, on either version. (On TLS 1.3
# the client finishes first and the alert follows, so the server's log is the witness.)
refusals() { grep -c 'tls_refused listener=device .*reason="peer did not return a certificate"' server.log || true; }
before=$(refusals)
for version in -tls1_2 -tls1_3; do
  timeout 30 openssl s_client -connect "$device" "$version" -CAfile d/pki/ca.pem </dev/null \
    >/dev/null 2>&1 || true
done
after=$(timeout 10 tail -n +1 -f --pid="$server_pid" server.log |
  grep -m$((before + 2)) 'tls_refused listener=device .*reason="peer did not return a certificate"' |
  wc -l || true)
[ "$after" -ge $((before + 2)) ] || fail "the device listener let a client without a certificate in"
echo "tls posture: ok"
