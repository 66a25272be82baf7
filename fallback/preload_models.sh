#!/usr/bin/env bash
# preload_models.sh: the bash fallback of ollama-preloader, for hosts without Python (bash >= 5 and curl).
#
# Waits for an Ollama server, loads ("warms") each listed model into memory (embedding-only models through
# /api/embed, the others with a 1-token /api/generate), checks in /api/ps that each one is still loaded and
# not expired, and exits with a status a pipeline can trust:
#   0 every model warmed and resident   2 invalid or unsupported configuration (nothing was sent)
#   3 the server never became ready     4 a model failed, is not resident, or could not be verified
#   130 / 143 interrupted by SIGINT / SIGTERM.   OLLAMA_PRELOAD_BEST_EFFORT=true turns 3 and 4 into 0.
#
#   OLLAMA_PRELOAD_MODELS="llama3.2?num_ctx=8192, nomic-embed-text" OLLAMA_PRELOAD_KEEP_ALIVE=-1 ./preload_models.sh
# Reads: OLLAMA_HOST, OLLAMA_PRELOAD_MODELS (or OLLAMA_MODELS when that is empty and not a path),
# OLLAMA_PRELOAD_KEEP_ALIVE, _NUM_PREDICT, _WAIT_TIMEOUT, _WARM_TIMEOUT, _ATTEMPTS, _BEST_EFFORT, _VERBOSE,
# OLLAMA_API_KEY, OLLAMA_MAX_LOADED_MODELS, and the proxy variables as Ollama (Go) reads them.
# Per model: name?num_ctx=N&num_batch=N&num_gpu=N&num_thread=N&use_mmap=BOOL&keep_alive=DURATION.
#
# It refuses (exit 2, before sending anything) what it cannot check exactly: model names outside a strict
# allow-list, durations other than integer seconds or Go-style 1h30m/90s/500ms (sub-second keep-alives and
# overflowing values included), OLLAMA_HOST forms other than host, host:port, [v6]:port, http(s)://host[:port]
# [/path] (no credentials), and every feature of the Python CLI it does not implement (flags, pulling, JSON
# logs, reports, concurrency, other entry options): for those, use `pip install ollama-preloader`.
# The API key and proxy URLs reach curl through its standard input, never through process arguments.
set -uo pipefail
export LC_ALL=C
trap '' PIPE

PRELOADER_VERSION="0.2.0"
PYTHON_HINT="use the Python CLI for that (pip install ollama-preloader; python -m preloader)"
readonly MAX_NS=9223372036854775807 # Go's time.Duration limit
readonly DETERMINISTIC_5XX=("requires more system memory" "does not support" "incompatible" "must be of type"
  "unknown model architecture" "file does not exist")
PART='[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}'
NAMESPACE='[A-Za-z0-9_][A-Za-z0-9_-]{0,79}'
HOSTPART='[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}(:[0-9]{1,5})?'
C='"[[:space:]]*:[[:space:]]*' # the end of a JSON key: JSON allows spaces around the colon
RFC3339='([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(Z|([+-])([0-9]{2}):([0-9]{2}))'

PROBLEMS=() NAMES=() KEYS=() CLOUD=() OPTIONS=() KA_WIRE=() KA_NS=() OUTCOME=() WARMED=()
CHILD="" TMP="" DEFAULT_KA_W="" DEFAULT_KA_N=""

# Only printable ASCII is ever printed (no escape sequences from values or servers); a closed stdout changes nothing.
log() { local line="$*" && printf '%s\n' "${line//[^[:print:]]/?}" 2>/dev/null || :; }
problem() { PROBLEMS+=("preloader: error: $*"); }
now_ms() { local t=${EPOCHREALTIME/./}; REPLY=$((10#${t:0:${#t}-3})); }
secs() { printf -v REPLY '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
countdown() { # SECONDS -> 9m59s, as Go prints durations
  REPLY="$(($1 % 60))s"
  (($1 < 60)) || REPLY="$(($1 % 3600 / 60))m$REPLY"
  (($1 < 3600)) || REPLY="$(($1 / 3600))h$REPLY"
}
fmt_ms() { (($1 >= 120000)) && countdown $(($1 / 1000)) || printf -v REPLY '%d.%02d s' $(($1 / 1000)) $(($1 % 1000 / 10)); }
join() { local IFS=,; REPLY="$*"; REPLY=${REPLY//,/, }; }
pause() { secs "$1"; sleep "$REPLY" & CHILD=$!; wait "$CHILD"; CHILD=""; } # wait: signals interrupt it
trim() { REPLY=${1#"${1%%[![:space:]]*}"}; REPLY=${REPLY%"${REPLY##*[![:space:]]}"}; }
ip4() { local a b c d && IFS=. read -r a b c d <<<"$1" && REPLY=$(((10#$a << 24) | (10#$b << 16) | (10#$c << 8) | 10#${d:-0})); }
unix_time() { # the 11 groups of an $RFC3339 match -> REPLY: seconds since 1970 (a `date` per model cost more than the rest)
  local y=$((10#$1 - (10#$2 <= 2))) m=$(((10#$2 + 9) % 12)) # days from the civil date, years from March: Hinnant's days_from_civil
  REPLY=$(((365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + 10#$3 - 719469) * 86400 + 10#$4 * 3600 + 10#$5 * 60 + 10#$6 -
    ${9:-+}1 * (10#${10:-0} * 3600 + 10#${11:-0} * 60)))
}
cfg_quote() { REPLY=${1//\\/\\\\}; REPLY=${REPLY//\"/\\\"}; } # a string for curl's config syntax

# --- configuration: every value is checked against a strict pattern, problems are collected --------------
parse_duration() { # TEXT -> DUR_NS; integer seconds or Go units (ns us ms s m h); 1 when invalid
  local text=$1 sign=1 n unit total=0
  declare -A per=([ns]=1 [us]=1000 [ms]=1000000 [s]=1000000000 [m]=60000000000 [h]=3600000000000)
  if [[ $text =~ ^(-?)([0-9]{1,10})$ ]]; then
    ((10#${BASH_REMATCH[2]} <= 9223372036)) && DUR_NS=$((${BASH_REMATCH[1]}1000000000 * 10#${BASH_REMATCH[2]}))
    return
  fi
  [[ $text == -* ]] && sign=-1 text=${text#-}
  [[ -n $text ]] || return 1
  while [[ $text =~ ^([0-9]{1,18})(ns|us|ms|s|m|h)(([0-9].*)?)$ ]]; do
    n=$((10#${BASH_REMATCH[1]})) unit=${per[${BASH_REMATCH[2]}]} text=${BASH_REMATCH[3]}
    ((n <= (MAX_NS - total) / unit)) || return 1
    total=$((total + n * unit))
  done
  [[ -z $text ]] || return 1
  DUR_NS=$((sign * total))
}

parse_keep_alive() { # SETTING TEXT -> KA_W (JSON value) and KA_N (ns)
  local setting=$1 text=$2
  parse_duration "$text" ||
    { problem "$setting='$text' is invalid: use integer seconds (-1 = forever, 0 = unload) or a duration such as 30m or 1h30m" && return 1; }
  ((DUR_NS > 0 && DUR_NS < 1000000000)) &&
    problem "$setting='$text' is invalid: Ollama counts keep-alive in whole seconds, so it would unload at once" && return 1
  KA_N=$DUR_NS KA_W="\"$text\""
  [[ $text =~ ^-?[0-9]+$ ]] && KA_W=$((DUR_NS / 1000000000)) # a JSON number: the API refuses the string "-1"
  return 0
}

parse_timeout() { # SETTING DEFAULT -> TIMEOUT_MS; seconds (1.5), or a positive Go duration
  local setting=$1 text=${!1:-$2}
  TIMEOUT_MS=0
  if [[ $text =~ ^([0-9]{1,9})(\.([0-9]{1,3}))?$ ]]; then
    local frac="${BASH_REMATCH[3]}000"
    TIMEOUT_MS=$((10#${BASH_REMATCH[1]} * 1000 + 10#${frac:0:3}))
  elif parse_duration "$text" && ((DUR_NS > 0)); then
    TIMEOUT_MS=$((DUR_NS / 1000000))
  fi
  ((TIMEOUT_MS > 0)) || problem "$setting='$text' is invalid: use a positive duration (90s, 5m) or seconds (90, 1.5)"
}

parse_bool() { # SETTING -> BOOL (1/0)
  local value=${!1:-false}
  BOOL=0 && [[ ${value,,} =~ ^(1|true|yes|on)$ ]] && BOOL=1
  [[ ${value,,} =~ ^(0|false|no|off|1|true|yes|on)$ ]] || problem "$1='$value' is invalid: use true or false"
}
int_setting() { # SETTING DEFAULT PATTERN RANGE -> REPLY; spaces and one leading + are allowed, as Python reads ints
  trim "${!1:-$2}" && REPLY=${REPLY#+}
  [[ $REPLY =~ ^($3)$ ]] || problem "$1='${!1}' is invalid: use a whole number $4"
}

parse_host() { # OLLAMA_HOST as Ollama reads it; odd forms are refused -> BASE_URL, HOST_NAME, HOST_PORT, SCHEME
  local text=$1 port="" path="" host shown="'$1'"
  trim "$text"; text=${REPLY#[\"\']}; trim "${text%[\"\']}"; text=$REPLY # Ollama trims spaces and quotes
  [[ $text == *@* ]] && shown="(value not shown: it holds credentials)"
  SCHEME=http HOST_PORT=11434
  [[ $text == ollama.com ]] && text=https://ollama.com:443
  if [[ $text =~ ^(https?)://(.*)$ ]]; then
    SCHEME=${BASH_REMATCH[1]} text=${BASH_REMATCH[2]}
    HOST_PORT=443 && [[ $SCHEME == http ]] && HOST_PORT=80
  fi
  [[ $text == */* ]] && path=${text#*/} text=${text%%/*}
  if [[ $text =~ ^\[([0-9A-Fa-f:.]+)\](:([0-9]{1,5}))?$ ]] || [[ $text =~ ^([0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*)()$ ]] ||
    [[ $text =~ ^([A-Za-z0-9._-]*)(:([0-9]{1,5}))?$ ]]; then
    host=${BASH_REMATCH[1]} port=${BASH_REMATCH[3]:-}
  else
    problem "OLLAMA_HOST=$shown is not a form this script reads exactly: use host, host:port, [::1]:port or http(s)://host[:port][/path] (no credentials)"
    return
  fi
  [[ -n $port ]] && HOST_PORT=$((10#$port))
  if ((HOST_PORT < 1 || HOST_PORT > 65535)) || [[ ! $path =~ ^[A-Za-z0-9._~/-]*$ ]]; then
    problem "OLLAMA_HOST=$shown has an invalid port or path: the port must be 1-65535, the path letters, digits and ./_~-"
    return
  fi
  case $host in "" | 0.0.0.0) host=127.0.0.1 ;; ::) host=::1 ;; esac # a wildcard bind means this machine
  HOST_NAME=${host,,} && [[ $host == *:* ]] && host="[$host]"
  while [[ $path == */ ]]; do path=${path%/}; done
  BASE_URL="$SCHEME://$host:$HOST_PORT${path:+/$path}"
}

no_proxy_matches() { # Go's httpproxy rules for NO_PROXY / no_proxy against HOST_NAME and HOST_PORT
  local entries entry ehost eport
  IFS=, read -ra entries <<<"${NO_PROXY:-${no_proxy:-}}"
  for entry in "${entries[@]}"; do
    trim "${entry,,}"; entry=$REPLY
    [[ -z $entry ]] && continue
    [[ $entry == '*' ]] && return 0
    if [[ $entry == */* ]]; then
      if [[ $HOST_NAME =~ ^[0-9.]{7,15}$ && $entry =~ ^([0-9]{1,3}(\.[0-9]{1,3}){3})/([0-9]{1,2})$ ]] && ((BASH_REMATCH[3] <= 32)); then
        local mask=$(((0xffffffff << (32 - BASH_REMATCH[3])) & 0xffffffff)) net && ip4 "${BASH_REMATCH[1]}" && net=$REPLY
        ip4 "$HOST_NAME" && (((REPLY & mask) == (net & mask))) && return 0
      elif [[ $entry == *:*/* && $HOST_NAME == *:* ]]; then
        problem "NO_PROXY has an IPv6 range and OLLAMA_HOST an IPv6 address: this script cannot match them; $PYTHON_HINT"
      fi
      continue
    fi
    ehost=$entry eport=""
    if [[ $entry =~ ^\[(.*)\]:([0-9]+)$ || $entry =~ ^([^:]*):([0-9]+)$ ]]; then
      ehost=${BASH_REMATCH[1]} eport=${BASH_REMATCH[2]}
    fi
    [[ $ehost == '*.'* ]] && ehost=${ehost:1}
    if [[ $ehost == .* ]]; then
      [[ $HOST_NAME == *"$ehost" ]] || continue
    else
      [[ $HOST_NAME == "$ehost" || $HOST_NAME == *".$ehost" ]] || continue
    fi
    [[ -z $eport || $eport == "$HOST_PORT" ]] && return 0
  done
  return 1
}

choose_proxy() { # -> PROXY: Ollama's (Go's) rules, since curl's differ (it reads ALL_PROXY, not HTTP_PROXY)
  PROXY=""
  [[ $HOST_NAME == localhost || $HOST_NAME =~ ^127\.[0-9.]+$ || $HOST_NAME == ::1 ]] && return
  if [[ $SCHEME == http ]]; then PROXY=${HTTP_PROXY:-${http_proxy:-}}; else PROXY=${HTTPS_PROXY:-${https_proxy:-}}; fi
  if [[ -z $PROXY ]] || no_proxy_matches; then PROXY="" && return; fi
  [[ $PROXY == *://* ]] || PROXY="http://$PROXY"
  if [[ ! $PROXY =~ ^(https?|socks5h?)://[[:graph:]]+$ ]]; then
    problem "the ${SCHEME^^}_PROXY variable is not a proxy URL this script can pass on (value not shown: it may hold credentials)"
  fi
}

parse_entry() { # TEXT: name[?key=value&...] -> appends to NAMES KEYS CLOUD OPTIONS KA_WIRE KA_NS
  local text=$1 name=${1%%\?*} query="" pair key value options="" ka_w="" ka_n="" host ns model tag=latest
  [[ $text == *\?* ]] && query=${text#*\?}
  if [[ $name =~ ^($PART)(:($PART))?$ ]]; then
    model=${BASH_REMATCH[1]}
  elif [[ $name =~ ^($NAMESPACE)/($PART)(:($PART))?$ ]]; then
    ns=${BASH_REMATCH[1]} model=${BASH_REMATCH[2]}
  elif [[ $name =~ ^($HOSTPART)/($NAMESPACE)/($PART)(:($PART))?$ ]]; then
    host=${BASH_REMATCH[1]} ns=${BASH_REMATCH[3]} model=${BASH_REMATCH[4]}
  else
    problem "OLLAMA_PRELOAD_MODELS: '$name' is not a model name this script accepts: [host/][namespace/]model[:tag], each part letters, digits, _ . - (no . in the namespace), at most 80 characters"
    return
  fi
  [[ $name =~ :($PART)$ && ${name##*/} == *:* ]] && tag=${BASH_REMATCH[1]}
  local shown="$model:$tag"
  if [[ -n ${host:-} && ${host,,} != registry.ollama.ai ]]; then shown="$host/${ns:-library}/$shown"
  elif [[ -n ${ns:-} && ${ns,,} != library ]]; then shown="$ns/$shown"; fi
  if [[ -n ${SEEN[${shown,,}]:-} ]]; then
    problem "OLLAMA_PRELOAD_MODELS lists the same model twice: '${SEEN[${shown,,}]}' and '$name'"
    return
  fi
  SEEN[${shown,,}]=$name
  local pairs=() && [[ -n $query ]] && IFS='&' read -ra pairs <<<"$query"
  for pair in "${pairs[@]}"; do
    key=${pair%%=*} value=${pair#*=}
    if [[ $pair != *=* ]]; then
      problem "OLLAMA_PRELOAD_MODELS: '$pair' in '$text' has no value: write key=value"
    elif [[ $key =~ ^(num_ctx|num_batch|num_gpu|num_thread)$ ]]; then
      [[ $value =~ ^[0-9]{1,9}$ ]] || problem "OLLAMA_PRELOAD_MODELS: $key='$value' in '$text' is invalid: use a whole number"
      options+=",\"$key\":$((10#0${value//[^0-9]/}))"
    elif [[ $key == use_mmap ]]; then
      [[ $value =~ ^(true|false)$ ]] || problem "OLLAMA_PRELOAD_MODELS: use_mmap='$value' in '$text' is invalid: use true or false"
      options+=",\"$key\":$value"
    elif [[ $key == keep_alive || $key == keepalive ]]; then
      parse_keep_alive "OLLAMA_PRELOAD_MODELS: keep_alive" "$value" && ka_w=$KA_W ka_n=$KA_N
    else
      problem "OLLAMA_PRELOAD_MODELS: the entry option '$key' (in '$text') is not supported by the bash fallback, which knows num_ctx, num_batch, num_gpu, num_thread, use_mmap and keep_alive; $PYTHON_HINT"
    fi
  done
  local cloud="" && [[ $tag == cloud || $tag == *-cloud ]] && cloud=1
  NAMES+=("$name") KEYS+=("${shown,,}") OPTIONS+=("$options") KA_WIRE+=("$ka_w") KA_NS+=("$ka_n") CLOUD+=("$cloud")
}

load_config() {
  local list=${OLLAMA_PRELOAD_MODELS:-} items item setting
  declare -gA SEEN=()
  declare -A unsupported=([OLLAMA_PRELOAD_LOG_FORMAT]=text [OLLAMA_PRELOAD_PULL]=never [OLLAMA_PRELOAD_CONCURRENCY]=1
    [OLLAMA_PRELOAD_MODE]=once [OLLAMA_PRELOAD_RESOLVE]=none [OLLAMA_PRELOAD_REPORT]="" [OLLAMA_PRELOAD_HOSTS]="")
  for setting in "${!unsupported[@]}"; do
    local value=${!setting:-${unsupported[$setting]}}
    [[ ${value,,} == "${unsupported[$setting]}" ]] ||
      problem "$setting='${value//*@*/(not shown)}' is not supported by the bash fallback (it accepts only '${unsupported[$setting]}'); $PYTHON_HINT"
  done
  parse_host "${OLLAMA_HOST:-}"
  [[ -n ${HOST_NAME:-} ]] && choose_proxy
  unset HTTP_PROXY http_proxy HTTPS_PROXY https_proxy ALL_PROXY all_proxy NO_PROXY no_proxy # decided: curl gets PROXY only
  if [[ -z ${list//[[:space:],]/} && -n ${OLLAMA_MODELS:-} ]]; then
    if [[ $OLLAMA_MODELS =~ ^(/|~|\./|\.\./|\.\\) || $OLLAMA_MODELS == . || $OLLAMA_MODELS == .. ]]; then
      log "preloader: warning: OLLAMA_MODELS='$OLLAMA_MODELS' looks like a path (to Ollama it is the models-directory variable); ignored as a model list"
    else
      list=$OLLAMA_MODELS
    fi
  fi
  IFS=$', \t\n' read -r -d '' -a items <<<"$list"
  for item in "${items[@]}"; do [[ -n $item ]] && parse_entry "$item"; done
  ((${#NAMES[@]} + ${#PROBLEMS[@]})) || problem "OLLAMA_PRELOAD_MODELS is empty: list the models to warm, separated by commas or spaces"
  int_setting OLLAMA_PRELOAD_NUM_PREDICT 1 '[1-5]' "from 1 to 5" && NUM_PREDICT=$REPLY
  int_setting OLLAMA_PRELOAD_ATTEMPTS 3 '[1-9]|10' "from 1 to 10" && ATTEMPTS=$REPLY
  int_setting OLLAMA_MAX_LOADED_MODELS "" '[0-9]{0,4}' "(0-9999)" && MAX_LOADED=$REPLY
  [[ -n ${OLLAMA_PRELOAD_KEEP_ALIVE:-} ]] && parse_keep_alive OLLAMA_PRELOAD_KEEP_ALIVE "$OLLAMA_PRELOAD_KEEP_ALIVE" &&
    DEFAULT_KA_W=$KA_W DEFAULT_KA_N=$KA_N
  parse_timeout OLLAMA_PRELOAD_WAIT_TIMEOUT 5m && WAIT_MS=$TIMEOUT_MS
  parse_timeout OLLAMA_PRELOAD_WARM_TIMEOUT 30m && WARM_MS=$TIMEOUT_MS
  parse_bool OLLAMA_PRELOAD_BEST_EFFORT && BEST_EFFORT=$BOOL
  parse_bool OLLAMA_PRELOAD_VERBOSE && VERBOSE=$BOOL
  command -v curl >/dev/null || problem "curl is not installed: this script sends its requests with it"
  API_KEY=${OLLAMA_API_KEY:-}
  unset OLLAMA_API_KEY # children (curl, sleep, mktemp, rm) never inherit it
  [[ -z $API_KEY || $API_KEY =~ ^[[:graph:]]{1,4096}$ ]] ||
    problem "OLLAMA_API_KEY holds spaces or control characters (value not shown): a bearer token is visible ASCII only"
  ((${#PROBLEMS[@]} == 0))
}

# --- HTTP: one request path --------------------------------------------------------------------------------
request() { # METHOD PATH BODY CONNECT_MS MAX_MS -> STATUS ("000" when no answer), BODY, CURL_RC, ERROR
  local cfg connect max
  secs "$4"; connect=$REPLY; secs "$5"; max=$REPLY
  cfg_quote "$BASE_URL$2"
  cfg="url = \"$REPLY\""$'\n'"request = \"$1\""$'\n'"connect-timeout = $connect"$'\n'"max-time = $max"
  cfg+=$'\n'"user-agent = \"ollama-preloader-bash/$PRELOADER_VERSION\""$'\n'"output = \"$TMP/body\""
  cfg+=$'\n''write-out = "%{http_code}"'$'\n''silent'$'\n'
  if [[ -n $PROXY ]]; then cfg_quote "$PROXY"; cfg+="proxy = \"$REPLY\""$'\n'; else cfg+='noproxy = "*"'$'\n'; fi
  [[ -n $API_KEY ]] && cfg_quote "$API_KEY" && cfg+="header = \"Authorization: Bearer $REPLY\""$'\n'
  if [[ -n $3 ]]; then cfg_quote "$3"; cfg+='header = "Content-Type: application/json"'$'\n'"data-raw = \"$REPLY\""$'\n'; fi
  ((VERBOSE)) && log "preloader: > $1 $BASE_URL$2 $3" >&2
  : >"$TMP/body"
  curl -K - <<<"$cfg" >"$TMP/code" 2>/dev/null &
  CHILD=$!
  wait "$CHILD"
  CURL_RC=$? CHILD=""
  { STATUS=$(<"$TMP/code") BODY=$(<"$TMP/body"); } 2>/dev/null
  ((CURL_RC == 0)) || STATUS=000 # a cut-off answer is no answer: retried like a reset
  case $CURL_RC in
    0) ERROR="" ;; 6) ERROR="could not resolve the host name" ;; 7) ERROR="connection refused" ;;
    18) ERROR="the answer was cut off" ;; 28) ERROR="no answer within $max s" ;;
    52) ERROR="the server closed the connection without answering" ;; 55 | 56) ERROR="connection reset" ;;
    *) ERROR="curl failed with status $CURL_RC" ;;
  esac
  if [[ $STATUS == 2?? && ! $BODY =~ ^[[:space:]]*\{.*\}[[:space:]]*$ ]]; then
    ERROR="HTTP $STATUS with a body that is not a JSON object: ${BODY:0:100}"
  elif [[ $STATUS == 2?? ]]; then
    return 0
  elif [[ $BODY =~ \"error$C\"(([^\"\\]|\\.)*)\" ]]; then
    ERROR="${BASH_REMATCH[1]} (HTTP $STATUS)"
  elif [[ $STATUS != 000 ]]; then
    ERROR="${BODY:0:200} (HTTP $STATUS)" && ERROR=${ERROR# }
  fi
  ERROR=${ERROR//[^[:print:]]/?} # server text is printed as ASCII only: no escape sequences, always valid UTF-8
  return 1
}

transient() { # the last failure may pass: no answer at all (but a timeout), 499/502/503/504, other 5xx
  local text && [[ $STATUS == 000 ]] && return $((CURL_RC == 28))
  [[ $STATUS =~ ^(499|502|503|504)$ ]] && return 0
  ((STATUS >= 500)) || return 1
  for text in "${DETERMINISTIC_5XX[@]}"; do [[ $ERROR == *"$text"* ]] && return 1; done
  return 0
}

retrying() { # WHAT MODEL then request's arguments; backoff 0.5 s doubling, up to 10 s
  local what=$1 model=$2 attempt=1 delay=500 && shift 2
  until request "$@"; do
    transient && ((attempt < ATTEMPTS)) || return 1
    fmt_ms "$delay" && log "$model: warning: $what attempt $attempt failed ($ERROR); retrying in $REPLY"
    pause "$delay"
    delay=$((delay * 2 > 10000 ? 10000 : delay * 2)) attempt=$((attempt + 1))
  done
}

# --- steps -----------------------------------------------------------------------------------------------
wait_for_server() {
  local start deadline left now attempts=0 delay=100 next_log
  now_ms; start=$REPLY deadline=$((REPLY + WAIT_MS)) next_log=$((REPLY + 5000))
  fmt_ms "$WAIT_MS"
  log "preloader: waiting up to $REPLY for the server at $BASE_URL"
  while :; do
    now_ms; left=$((deadline - REPLY)) attempts=$((attempts + 1))
    ((left < 50)) && left=50
    if request GET /api/version "" $((left < 1000 ? left : 1000)) $((left < 5000 ? left : 5000)); then
      [[ $BODY =~ \"version$C\"([A-Za-z0-9._+-]{0,40})\" ]]
      now_ms; fmt_ms $((REPLY - start))
      log "preloader: server ready after $REPLY (Ollama ${BASH_REMATCH[1]:-unknown})"
      return 0
    elif [[ $STATUS == 4?? ]]; then
      local hint="check that OLLAMA_HOST points at an Ollama server (and its path prefix)"
      [[ $STATUS == 401 ]] && hint="a proxy in front of Ollama wants credentials: set OLLAMA_API_KEY"
      [[ $STATUS == 403 ]] && hint="an Ollama bound to loopback refuses a non-local Host header: a proxy in between must send Host: localhost"
      log "preloader: error: the server at $BASE_URL refused the health check: $ERROR; $hint"
      return 1
    fi
    now_ms; now=$REPLY
    ((now >= deadline)) && break
    if ((now >= next_log)); then
      next_log=$((now + 5000)) && fmt_ms $((now - start))
      log "preloader: still waiting for the server after $REPLY (attempt $attempts: $ERROR)"
    fi
    pause $((deadline - now < delay ? deadline - now : delay))
    delay=$((delay * 3 / 2 > 250 ? 250 : delay * 3 / 2))
  done
  fmt_ms "$WAIT_MS"
  log "preloader: error: the server at $BASE_URL did not answer within $REPLY ($attempts attempts; last: $ERROR). Check that Ollama is running and that OLLAMA_HOST points at it, or raise OLLAMA_PRELOAD_WAIT_TIMEOUT"
  return 1
}

warm_model() { # INDEX -> OUTCOME[i] = warmed | failed | skipped
  local i=$1 name=${NAMES[$1]} kind=generate body ka=${KA_WIRE[$1]:-$DEFAULT_KA_W} start load=""
  if [[ -n ${CLOUD[$i]} ]]; then
    log "$name: skipped: cloud model, served by ollama.com; nothing to load here"
    OUTCOME[i]=skipped && return
  fi
  OUTCOME[i]=failed
  if ! retrying show "$name" POST /api/show "{\"model\":\"$name\"}" 10000 60000; then
    [[ $STATUS == 404 ]] && ERROR="not found on the server ($ERROR); pull it first: ollama pull $name"
    log "$name: failed: $ERROR" && return
  fi
  if [[ $BODY =~ \"capabilities$C\[([^]]*)\] ]]; then
    [[ ${BASH_REMATCH[1]} == *'"embedding"'* && ${BASH_REMATCH[1]} != *'"completion"'* ]] && kind=embed
  elif [[ $BODY =~ \.pooling_type$C ]]; then
    kind=embed # servers before 0.6.4 have no capabilities: a pooling type means an embedding model
  fi
  if [[ $kind == embed ]]; then
    body="{\"model\":\"$name\",\"input\":\"warm-up\"${OPTIONS[i]:+,\"options\":{${OPTIONS[i]#,}\}}${ka:+,\"keep_alive\":$ka}}"
  else
    # raw: our own 2-letter prompt skips the chat template, one token to evaluate instead of ten
    body="{\"model\":\"$name\",\"prompt\":\"Hi\",\"raw\":true,\"stream\":false,\"options\":{\"num_predict\":$NUM_PREDICT${OPTIONS[i]}}${ka:+,\"keep_alive\":$ka}}"
  fi
  log "$name: warming via /api/$kind"
  now_ms; start=$REPLY
  # The read timeout is the whole warm timeout: Ollama aborts a load whose client hangs up.
  if ! retrying warm "$name" POST "/api/$kind" "$body" 10000 "$WARM_MS"; then
    [[ $CURL_RC == 28 ]] && fmt_ms "$WARM_MS" &&
      ERROR="no answer within $REPLY; the load may still be slow. Raise OLLAMA_PRELOAD_WARM_TIMEOUT (and the server's OLLAMA_LOAD_TIMEOUT) for large models"
    [[ $STATUS == 403 && $ERROR == "(HTTP 403)" ]] &&
      ERROR="HTTP 403 with no explanation: a loopback-bound Ollama refuses a non-local Host header; a proxy in between must send Host: localhost"
    log "$name: failed: $ERROR" && return
  fi
  [[ $BODY =~ \"load_duration$C([0-9]{1,18}) ]] && fmt_ms $((BASH_REMATCH[1] / 1000000)) && load="; server load $REPLY"
  now_ms; fmt_ms $((REPLY - start))
  log "$name: warmed in $REPLY ($kind$load)"
  OUTCOME[i]=warmed WARMED+=("$name")
}

verify_residency() { # every warmed model must be listed in /api/ps and not expired
  local i chunk chunks=() key names="" now=$EPOCHSECONDS size=0 vram=0
  declare -A where=() expiry=() ends=()
  ((${#WARMED[@]})) || return 0
  if retrying list preloader GET /api/ps "" 10000 60000; then # one piece per model, split at its "name": small regexes
    [[ $BODY =~ \"models$C\[(.*)$ ]] && IFS=$'\x1f' read -r -d '' -a chunks <<<"${BASH_REMATCH[1]//\"name\"/$'\x1f'}"
    ((${#chunks[@]})) || ERROR="/api/ps answered without a list of models"
  fi
  for chunk in "${chunks[@]:1}"; do
    [[ $chunk =~ ^[[:space:]]*:[[:space:]]*\"([A-Za-z0-9_./:-]+)\" ]] && key=${BASH_REMATCH[1]} &&
      [[ $chunk =~ \"size$C([0-9]{1,18})[,}] ]] && size=${BASH_REMATCH[1]} &&
      [[ $chunk =~ \"size_vram$C([0-9]{1,18})[,}] ]] && vram=${BASH_REMATCH[1]} &&
      [[ $chunk =~ \"expires_at$C\"($RFC3339)\" ]] ||
      { ERROR="/api/ps answered in a form this script does not read" && break; }
    names+="${names:+, }$key" key=${key,,} key=${key#registry.ollama.ai/} key=${key#library/}
    [[ ${key##*/} == *:* ]] || key+=":latest"
    expiry[$key]=${BASH_REMATCH[1]} && unix_time "${BASH_REMATCH[@]:2}" && ends[$key]=$REPLY
    if ((size <= 0 || vram <= 0)); then where[$key]="100% CPU"; elif ((vram >= size)); then where[$key]="100% GPU"
    else where[$key]="$((100 - (100 * vram + size / 2) / size))%/$(((100 * vram + size / 2) / size))% CPU/GPU"; fi
  done
  if [[ -n $ERROR ]]; then
    for i in "${!NAMES[@]}"; do [[ ${OUTCOME[i]} == warmed ]] && OUTCOME[i]=unverified; done
    log "preloader: error: could not verify residency: $ERROR" && return
  fi
  for i in "${!NAMES[@]}"; do
    [[ ${OUTCOME[i]} == warmed ]] || continue
    key=${KEYS[i]}
    if [[ -z ${expiry[$key]:-} ]]; then
      if [[ ${KA_NS[i]:-$DEFAULT_KA_N} == 0 ]]; then
        log "${NAMES[i]}: unloaded as asked (keep_alive 0)"
        continue
      fi
      OUTCOME[i]=evicted && join "${WARMED[@]}"
      log "${NAMES[i]}: not resident: warmed, but no longer loaded: the server unloaded it, most likely to make room for another model. This run warmed ${#WARMED[@]} model(s) ($REPLY); loaded now: ${names:-nothing}. Ollama keeps at most OLLAMA_MAX_LOADED_MODELS models (default 3 per GPU, 3 on CPU) and evicts when memory runs short: raise that setting on the server, list fewer models, or give it more memory"
    elif ((ends[$key] >= 7258118400)); then # 2200 or later: keep_alive -1, which Ollama writes as a date in 2318
      log "${NAMES[i]}: resident (${where[$key]}, expires forever)"
    elif ((ends[$key] > now)); then
      countdown $((ends[$key] - now)) && log "${NAMES[i]}: resident (${where[$key]}, expires in $REPLY)"
    else
      OUTCOME[i]=evicted && log "${NAMES[i]}: not resident: /api/ps lists it, but it expired at ${expiry[$key]}"
    fi
  done
}

# --- the run ---------------------------------------------------------------------------------------------
finish() { # STATUS [REASON]: the summary line, best effort applied
  local status=$1 i ok=0 total=0 bad=()
  for i in "${!NAMES[@]}"; do
    [[ ${OUTCOME[i]:-} == skipped ]] && continue
    total=$((total + 1))
    [[ ${OUTCOME[i]:-} == warmed ]] && ok=$((ok + 1)) || bad+=("${NAMES[i]}")
  done
  ((status == 0 && ${#bad[@]})) && status=4
  local line="preloader: $ok of $total model(s) warmed and resident"
  ((${#bad[@]})) && join "${bad[@]}" && line="preloader: not ready: $REPLY"
  [[ -n ${2:-} ]] && line+="; $2"
  ((BEST_EFFORT && (status == 3 || status == 4))) && line+=" (best effort: status $status reported as success)" && status=0
  log "$line (exit $status)"
  exit "$status"
}

on_signal() { # NAME STATUS: stop at once; a load in flight is abandoned
  trap '' INT TERM
  [[ -n $CHILD ]] && kill "$CHILD" 2>/dev/null
  local i finished=()
  for i in "${!NAMES[@]}"; do [[ ${OUTCOME[i]:-} =~ warmed|skipped ]] && finished+=("${NAMES[i]}"); done
  join "${finished[@]}"
  log "preloader: warning: interrupted by $1; done: ${REPLY:-nothing}"
  finish "$2" "interrupted by $1"
}

main() {
  local line
  case ${1:-} in
    "") ;;
    -h | --help)
      while IFS= read -r line && [[ $line == '#'* ]]; do [[ $line == '#!'* ]] || { line=${line#\#} && log "${line# }"; }; done <"${BASH_SOURCE[0]}"
      exit 0 ;;
    *) problem "the bash fallback takes no arguments ('$1'): set the OLLAMA_* variables instead; for flags, $PYTHON_HINT" ;;
  esac
  if ! load_config; then
    for line in "${PROBLEMS[@]}" "preloader: error: invalid configuration; nothing was sent to the server (exit 2)"; do log "$line"; done
    exit 2
  fi
  TMP=$(mktemp -d) || exit 1
  trap 'rm -rf "$TMP"' EXIT
  trap 'on_signal SIGINT 130' INT
  trap 'on_signal SIGTERM 143' TERM
  join "${NAMES[@]}"
  log "preloader: ${#NAMES[@]} model(s) to warm on $BASE_URL: $REPLY"
  if [[ -n $MAX_LOADED ]] && ((MAX_LOADED > 0 && ${#NAMES[@]} > MAX_LOADED)); then
    log "preloader: warning: ${#NAMES[@]} models listed but the server keeps at most $MAX_LOADED (OLLAMA_MAX_LOADED_MODELS): the first ones will be evicted"
  fi
  wait_for_server || finish 3 "the server was not ready"
  local i
  for i in "${!NAMES[@]}"; do warm_model "$i"; done
  verify_residency
  finish 0
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi # sourcing only defines the functions
