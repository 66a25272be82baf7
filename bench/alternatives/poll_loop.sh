#!/usr/bin/env bash
# The common hand-written wait: `while ! ollama ps; do sleep 5; done`, then one warm request.
# usage: poll_loop.sh URL MODEL INTERVAL [OLLAMA_CLI]   (without a CLI, `curl -sf URL/api/ps` stands in)
url=$1 model=$2 interval=$3 cli=${4:-}
ready() {
  if [[ -n $cli ]]; then
    OLLAMA_HOST=$url "$cli" ps >/dev/null 2>&1
  else
    curl -sf -o /dev/null "$url/api/ps"
  fi
}
while ! ready; do sleep "$interval"; done
curl -sf -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"model\":\"$model\",\"prompt\":\"Hi\",\"stream\":false,\"options\":{\"num_predict\":1}}" "$url/api/generate"
