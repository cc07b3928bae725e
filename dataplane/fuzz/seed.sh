#!/usr/bin/env bash
# Seeds the fuzz corpora from the repository's tests/data/sip-corpus (every message, byte-exact).
set -euo pipefail
cd "$(dirname "$0")"
corpus=../../tests/data/sip-corpus
mkdir -p corpus/message corpus/uri
for f in "$corpus"/rfc4475/*.dat "$corpus"/rfc4475/variants/*.dat "$corpus"/rfc5118/*.dat \
         "$corpus"/rfc5118/wire/*.dat "$corpus"/ser-legacy/*.sip; do
  cp "$f" "corpus/message/$(basename "$(dirname "$f")")-$(basename "$f")"
done
# URI seeds: the Request-URI of each message.
for f in corpus/message/*; do
  head -n1 "$f" | awk '{print $2}' | tr -d '\r\n' > "corpus/uri/$(basename "$f")" || true
done
# Authorization seeds: every credentials header value of the corpus, and the RFC examples.
mkdir -p corpus/authorization
for f in corpus/message/*; do
  grep -aiE '^(authorization|proxy-authorization|www-authenticate|proxy-authenticate):' "$f" \
    | head -n1 | sed -E 's/^[^:]*: ?//' | tr -d '\r\n' > "corpus/authorization/$(basename "$f")" || true
done
find corpus/authorization -empty -delete
printf 'Digest username="Mufasa",\r\n realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"' > corpus/authorization/rfc2617
printf 'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"' > corpus/authorization/rfc7616
printf 'Basic dXNlcjpwYXNzd29yZA==' > corpus/authorization/basic
# Script seeds: the shipped ser.cfg and every script of the tests.
mkdir -p corpus/script
cp ../../ser.cfg corpus/script/ser.cfg
for f in ../../tests/data/scripts/*.cfg ../../tests/data/broken/*.cfg; do
  cp "$f" "corpus/script/$(basename "$(dirname "$f")")-$(basename "$f")"
done
echo "seeded $(ls corpus/message | wc -l) messages, $(ls corpus/uri | wc -l) URIs, $(ls corpus/authorization | wc -l) credentials, $(ls corpus/script | wc -l) scripts"
