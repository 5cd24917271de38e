#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: init (idempotent, never overwrites), device certificates checked by the openssl
# program (a verifier we did not write), revocation through the CRL, admin tokens stored as
# hashes only, and bad input that changes nothing.
set -euo pipefail
fwdepot=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
snapshot() { (cd "$1" && find . -type f ! -name '*.db*' -print0 | sort -z | xargs -0 sha256sum); }

# Bad input first: nothing may be created.
if "$fwdepot" init --data bad --ip 1.2.3 2>err.txt; then fail "init accepted a bad IP"; fi
grep -q "not an IP address" err.txt || fail "unclear error: $(cat err.txt)"
[ ! -e bad ] || fail "a failed init left files behind"

"$fwdepot" init --data d --server-name fw.example.test --ip 127.0.0.1 >/dev/null
for f in fwdepot.toml fwdepot.db pki/ca.pem pki/ca.key pki/server.pem pki/server.key pki/crl.pem \
         keys/signing.key keys/signing.pub; do
  [ -s "d/$f" ] || fail "init did not create $f"
done
for f in pki/ca.key pki/server.key keys/signing.key; do
  [ "$(stat -c %a "d/$f")" = 600 ] || fail "$f is not mode 600"
done
openssl x509 -in d/pki/server.pem -noout -ext subjectAltName | grep -q 'DNS:fw.example.test' ||
  fail "server certificate lacks its DNS name"
openssl verify -CAfile d/pki/ca.pem d/pki/server.pem >/dev/null || fail "server cert does not verify"

before=$(snapshot d)
"$fwdepot" init --data d | grep -q 'nothing changed' || fail "second init changed something"
[ "$(snapshot d)" = "$before" ] || fail "second init rewrote files"
[ "$(sqlite3 d/fwdepot.db 'PRAGMA user_version')" -ge 1 ] || fail "schema not migrated"

# Device certificates: CN is the id, OU the model; openssl accepts them until revoked.
"$fwdepot" certs issue-device --data d --id dev-1 --model board-a --out dev1 >/dev/null
"$fwdepot" certs issue-device --data d --id dev-2 --out dev2 >/dev/null
openssl x509 -in dev1.pem -noout -subject | grep -q 'OU = board-a, CN = dev-1' ||
  fail "unexpected subject: $(openssl x509 -in dev1.pem -noout -subject)"
[ "$(stat -c %a dev1.key)" = 600 ] || fail "device key is not mode 600"
[ "$(openssl x509 -in dev1.pem -noout -serial)" != "$(openssl x509 -in dev2.pem -noout -serial)" ] ||
  fail "two certificates share a serial"
openssl verify -CAfile d/pki/ca.pem -crl_check -CRLfile d/pki/crl.pem -purpose sslclient dev1.pem \
  >/dev/null || fail "device cert does not verify"
if "$fwdepot" certs issue-device --data d --id ../evil --out evil 2>err.txt; then
  fail "accepted a path-traversal device id"
fi
[ ! -e evil.pem ] && [ ! -e evil.key ] || fail "a refused issue wrote files"
if "$fwdepot" certs issue-device --data d --id dev-3 --out dev1 2>/dev/null; then
  fail "issue-device overwrote an existing certificate"
fi

crl_before=$(sha256sum < d/pki/crl.pem)
if "$fwdepot" certs revoke --data d --id nobody 2>err.txt; then fail "revoked an unknown device"; fi
[ "$(sha256sum < d/pki/crl.pem)" = "$crl_before" ] || fail "a failed revoke changed the CRL"
"$fwdepot" certs revoke --data d --id dev-1 >/dev/null
if openssl verify -CAfile d/pki/ca.pem -crl_check -CRLfile d/pki/crl.pem dev1.pem >out.txt 2>&1; then
  fail "a revoked certificate still verifies"
fi
grep -q 'certificate revoked' out.txt || fail "openssl gave another reason: $(cat out.txt)"
openssl verify -CAfile d/pki/ca.pem -crl_check -CRLfile d/pki/crl.pem dev2.pem >/dev/null ||
  fail "revoking dev-1 broke dev-2"
openssl crl -in d/pki/crl.pem -noout -text | grep -A1 'CRL Number' | grep -q '2' ||
  fail "CRL number did not increase"

# Tokens: printed once, only the SHA-256 is stored, names are unique among live tokens.
token=$("$fwdepot" token create --data d --name alice 2>/dev/null)
[[ "$token" =~ ^fwd_[A-Za-z0-9_-]{43}$ ]] || fail "unexpected token format: $token"
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
[ "$(sqlite3 d/fwdepot.db "SELECT count(*) FROM admin_tokens WHERE token_sha256 = '$hash'")" = 1 ] ||
  fail "the token's hash is not stored"
if grep -a -q -- "$token" d/fwdepot.db d/fwdepot.db-wal 2>/dev/null; then
  fail "the token itself is stored"
fi
if "$fwdepot" token create --data d --name alice >/dev/null 2>err.txt; then
  fail "two live tokens with one name"
fi
"$fwdepot" token revoke --data d --name alice >/dev/null
"$fwdepot" token create --data d --name alice >/dev/null 2>&1 || fail "name not reusable after revoke"

# A token from a secret file: stored by hash, never printed; weak or odd secrets refused.
printf 'operator-chosen-secret-0123456789abcdef\n' >secret.txt
out=$("$fwdepot" token create --data d --name from-file --from-file secret.txt 2>err.txt) ||
  fail "token from a file: $(cat err.txt)"
[ -z "$out" ] && ! grep -q "operator-chosen" err.txt || fail "the token from a file was printed"
hash=$(printf '%s' operator-chosen-secret-0123456789abcdef | sha256sum | cut -d' ' -f1)
[ "$(sqlite3 d/fwdepot.db "SELECT count(*) FROM admin_tokens WHERE token_sha256 = '$hash'")" = 1 ] ||
  fail "the file's token is not stored by its hash"
for weak in short 'has spaces in it but is long enough to pass' ; do
  printf '%s' "$weak" >weak.txt
  if "$fwdepot" token create --data d --name weak --from-file weak.txt 2>err.txt; then
    fail "accepted a token '$weak'"
  fi
  grep -q "32 to 512 characters" err.txt || fail "weak token: $(cat err.txt)"
done

# Every error is one line on stderr and exit code non-zero.
rc=0; "$fwdepot" certs revoke --data nowhere --id x 2>err.txt || rc=$?
[ "$rc" -ne 0 ] && [ "$(wc -l < err.txt)" -eq 1 ] || fail "missing data dir: rc $rc, $(cat err.txt)"
echo PASS
