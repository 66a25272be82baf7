#!/usr/bin/env bash
# The other common hand-written wait: `sleep N && curl …`. It fails when the server is slower than N.
# usage: fixed_sleep.sh URL MODEL SECONDS
url=$1 model=$2 seconds=$3
sleep "$seconds"
curl -sf -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"model\":\"$model\",\"prompt\":\"Hi\",\"stream\":false,\"options\":{\"num_predict\":1}}" "$url/api/generate"
