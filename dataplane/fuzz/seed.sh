#!/usr/bin/env bash
# Seeds the fuzz corpora from ../shared/sip-corpus (every message, byte-exact).
set -euo pipefail
cd "$(dirname "$0")"
shared=../../../shared/sip-corpus
mkdir -p corpus/message corpus/uri
for f in "$shared"/rfc4475/*.dat "$shared"/rfc4475/variants/*.dat "$shared"/rfc5118/*.dat \
         "$shared"/rfc5118/wire/*.dat "$shared"/ser-legacy/*.sip; do
  cp "$f" "corpus/message/$(basename "$(dirname "$f")")-$(basename "$f")"
done
# URI seeds: the Request-URI of each message.
for f in corpus/message/*; do
  head -n1 "$f" | awk '{print $2}' | tr -d '\r\n' > "corpus/uri/$(basename "$f")" || true
done
echo "seeded $(ls corpus/message | wc -l) messages, $(ls corpus/uri | wc -l) URIs"
