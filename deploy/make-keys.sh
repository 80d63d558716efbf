#!/bin/sh
# CURVE keys for a broker, its workers and the web gateway, one folder per role:
#   OUT/broker/  broker.key, broker.key_secret, clients/web.key, workers/worker.key  (the broker's --keys-dir)
#   OUT/worker/  worker.key_secret, broker.key                                        (--key, --broker-key)
#   OUT/web/     web.key_secret, broker.key                  (ENGINE_CLIENT_KEY, ENGINE_BROKER_KEY)
# Each role gets only its own secret. Run it as the user that will read the keys (the
# image's user 10001, see compose.yaml's "keys" service): secret files are mode 0600 and
# a peer refuses one that others can read. See SECURITY.md for rotation and revocation.
set -eu
OUT=${1:-keys}
python -m engine.keys init --keys-dir "$OUT/broker"
python -m engine.keys new worker --dir "$OUT/worker"
python -m engine.keys allow --workers "$OUT/worker/worker.key" --keys-dir "$OUT/broker"
python -m engine.keys new web --dir "$OUT/web"
python -m engine.keys allow --clients "$OUT/web/web.key" --keys-dir "$OUT/broker"
cp "$OUT/broker/broker.key" "$OUT/worker/broker.key"
cp "$OUT/broker/broker.key" "$OUT/web/broker.key"
python -m engine.keys list --keys-dir "$OUT/broker"
