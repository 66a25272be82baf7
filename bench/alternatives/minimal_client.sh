#!/usr/bin/env bash
# The curl baseline of the overhead benchmark: the preloader's requests, one curl each, no checks.
# usage: minimal_client.sh URL NUM_PREDICT MODEL...
url=$1 num_predict=$2
shift 2
curl -s -o /dev/null "$url/api/version"
for model in "$@"; do
  curl -s -o /dev/null -H 'Content-Type: application/json' -d "{\"model\":\"$model\"}" "$url/api/show"
  curl -s -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"prompt\":\"Hi\",\"stream\":false,\"options\":{\"num_predict\":$num_predict},\"raw\":true}" \
    "$url/api/generate"
done
curl -s -o /dev/null "$url/api/ps"
