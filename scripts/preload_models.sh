#!/usr/bin/env bash
# preload_models.sh: the bash fallback of ollama-preloader, for hosts without Python.
#
# Waits for an Ollama server, loads ("warms") every listed model into memory, checks with GET /api/ps
# that each one is still loaded, prints a summary and exits with a status a pipeline can trust.
# It reads the same variables, logs the same lines and exits with the same statuses as the Python
# package (`python -m preloader`); the functions below follow the package's steps and names.
#
#   OLLAMA_PRELOAD_MODELS="llama3.2,nomic-embed-text" scripts/preload_models.sh
#   scripts/preload_models.sh --help
#
# Needs bash >= 5.0 and curl (plus mktemp, mkdir, mv, rm and sleep, present on any such host); no jq.
# Exit: 0 all warmed and resident; 1 internal error; 2 invalid configuration (nothing sent); 3 server
# never ready; 4 a model failed or is not resident; 130/143 SIGINT/SIGTERM. Best effort: 3 and 4 -> 0.
#
# Differences from the Python CLI (everything else, including every log line, is the same):
#   - Models are warmed one at a time: OLLAMA_PRELOAD_CONCURRENCY is validated (1-16), and a value above 1
#     only earns a warning.
#   - --verbose logs each request on stderr; there is no traceback. An unexpected failure of the script
#     itself is reported with its line number, and exits 1.
#   - Flags must be spelled out (no abbreviations such as --mod for --models); --help is laid out differently.
#   - Float option values may be spelled differently in the request (1.0e3 for 1000.0): the same number.
#
# Safety: model names are validated against Ollama's name rules before anything is sent, every string
# that reaches a JSON body is escaped by json_quote, request bodies go to curl through a file and the
# API key through a pipe (`--header @/dev/fd/N`), so neither appears in any process's arguments.
set -euo pipefail
set -o errtrace # the internal-error trap must also fire inside functions
export LC_ALL=C # byte-wise string handling; ASCII-only character classes in the name rules

readonly VERSION="0.1.0"
readonly TOOL="preloader"
readonly PROG="preload_models.sh"

readonly EXIT_OK=0 EXIT_INTERNAL=1 EXIT_CONFIG=2 EXIT_SERVER_NOT_READY=3 EXIT_MODELS_NOT_READY=4
readonly EXIT_SIGINT=130 EXIT_SIGTERM=143

readonly NS_PER_S=1000000000
readonly MAX_NS=9000000000000000000 # durations saturate here (about 285 years)

# warm.py
readonly DEFAULT_PROMPT="Hi"
readonly DEFAULT_EMBED_INPUT="warm-up"
readonly SHOW_CONNECT_NS=$((10 * NS_PER_S)) SHOW_READ_NS=$((60 * NS_PER_S))
readonly WARM_CONNECT_NS=$((10 * NS_PER_S))
readonly PULL_LOG_EVERY_NS=$((5 * NS_PER_S))
# 5xx answers that will be the same on every attempt: retrying them only delays the report.
readonly DETERMINISTIC_5XX=("requires more system memory" "does not support" "incompatible" "must be of type"
  "unknown model architecture" "file does not exist")
# wait.py
readonly WAIT_FIRST_NS=100000000 WAIT_MAX_NS=250000000 # backoff 0.1 s * 1.5^n, capped at 0.25 s
readonly ATTEMPT_CONNECT_NS=$((1 * NS_PER_S)) ATTEMPT_READ_NS=$((5 * NS_PER_S))
readonly LOG_EVERY_NS=$((5 * NS_PER_S))
# run.py
readonly PS_CONNECT_NS=$((10 * NS_PER_S)) PS_READ_NS=$((60 * NS_PER_S))
# verify.py
readonly FOREVER_YEAR=2200
# names.py
readonly DEFAULT_HOST="registry.ollama.ai" DEFAULT_NAMESPACE="library" DEFAULT_TAG="latest"
readonly MISSING="!MISSING!"

# --- settings (config.py SETTINGS): variable, flag, metavar, default, switch, help ---------------------

SETTING_VARS=(OLLAMA_HOST OLLAMA_PRELOAD_MODELS OLLAMA_MODELS OLLAMA_PRELOAD_KEEP_ALIVE
  OLLAMA_PRELOAD_NUM_PREDICT OLLAMA_PRELOAD_WAIT_TIMEOUT OLLAMA_PRELOAD_WARM_TIMEOUT OLLAMA_PRELOAD_ATTEMPTS
  OLLAMA_PRELOAD_CONCURRENCY OLLAMA_PRELOAD_PULL OLLAMA_PRELOAD_BEST_EFFORT OLLAMA_PRELOAD_LOG_FORMAT
  OLLAMA_PRELOAD_REPORT OLLAMA_API_KEY OLLAMA_MAX_LOADED_MODELS OLLAMA_PRELOAD_VERBOSE)
declare -A SETTING_FLAG=(
  [OLLAMA_HOST]=--host [OLLAMA_PRELOAD_MODELS]=--models [OLLAMA_MODELS]=--fallback-models
  [OLLAMA_PRELOAD_KEEP_ALIVE]=--keep-alive [OLLAMA_PRELOAD_NUM_PREDICT]=--num-predict
  [OLLAMA_PRELOAD_WAIT_TIMEOUT]=--wait-timeout [OLLAMA_PRELOAD_WARM_TIMEOUT]=--warm-timeout
  [OLLAMA_PRELOAD_ATTEMPTS]=--attempts [OLLAMA_PRELOAD_CONCURRENCY]=--concurrency [OLLAMA_PRELOAD_PULL]=--pull
  [OLLAMA_PRELOAD_BEST_EFFORT]=--best-effort [OLLAMA_PRELOAD_LOG_FORMAT]=--log-format
  [OLLAMA_PRELOAD_REPORT]=--report [OLLAMA_API_KEY]=--api-key [OLLAMA_MAX_LOADED_MODELS]=--max-loaded-models
  [OLLAMA_PRELOAD_VERBOSE]=--verbose
)
declare -A SETTING_METAVAR=(
  [OLLAMA_HOST]=HOST [OLLAMA_PRELOAD_MODELS]=LIST [OLLAMA_MODELS]=LIST [OLLAMA_PRELOAD_KEEP_ALIVE]=DURATION
  [OLLAMA_PRELOAD_NUM_PREDICT]=N [OLLAMA_PRELOAD_WAIT_TIMEOUT]=DURATION [OLLAMA_PRELOAD_WARM_TIMEOUT]=DURATION
  [OLLAMA_PRELOAD_ATTEMPTS]=N [OLLAMA_PRELOAD_CONCURRENCY]=N [OLLAMA_PRELOAD_PULL]=POLICY
  [OLLAMA_PRELOAD_BEST_EFFORT]=BOOL [OLLAMA_PRELOAD_LOG_FORMAT]=FORMAT [OLLAMA_PRELOAD_REPORT]=PATH
  [OLLAMA_API_KEY]=KEY [OLLAMA_MAX_LOADED_MODELS]=N [OLLAMA_PRELOAD_VERBOSE]=BOOL
)
declare -A SETTING_DEFAULT=(
  [OLLAMA_HOST]="http://127.0.0.1:11434" [OLLAMA_PRELOAD_NUM_PREDICT]=1 [OLLAMA_PRELOAD_WAIT_TIMEOUT]=5m
  [OLLAMA_PRELOAD_WARM_TIMEOUT]=30m [OLLAMA_PRELOAD_ATTEMPTS]=3 [OLLAMA_PRELOAD_CONCURRENCY]=1
  [OLLAMA_PRELOAD_PULL]=never [OLLAMA_PRELOAD_BEST_EFFORT]=false [OLLAMA_PRELOAD_LOG_FORMAT]=text
  [OLLAMA_PRELOAD_VERBOSE]=false
)
declare -A SETTING_SWITCH=([OLLAMA_PRELOAD_BEST_EFFORT]=1 [OLLAMA_PRELOAD_VERBOSE]=1)
declare -A SETTING_HELP=(
  [OLLAMA_HOST]="Ollama server, parsed as Ollama parses it (ollama:11434, http://h → port 80, [::1]:11434, 0.0.0.0 → this machine, optional /path prefix)."
  [OLLAMA_PRELOAD_MODELS]="Models to warm, separated by commas and/or whitespace. Entry: NAME or NAME?key=value&... (keep_alive, prompt, think; any other key is a model option such as num_ctx=8192)."
  [OLLAMA_MODELS]="Used as the list only when OLLAMA_PRELOAD_MODELS is empty; ignored (with a warning) when it looks like a path, since it is also Ollama's models-directory variable."
  [OLLAMA_PRELOAD_KEEP_ALIVE]="Keep-alive sent with each warm request unless the entry sets its own: 30m, 1h30m, integer seconds, -1 (or any negative) = forever, 0 = unload. Unset: the server's default applies."
  [OLLAMA_PRELOAD_NUM_PREDICT]="Tokens generated by a warm request, 1-5."
  [OLLAMA_PRELOAD_WAIT_TIMEOUT]="How long to wait for the server to become healthy (duration or seconds)."
  [OLLAMA_PRELOAD_WARM_TIMEOUT]="How long one warm request may take. Keep it long: Ollama aborts a load whose client hangs up."
  [OLLAMA_PRELOAD_ATTEMPTS]="Attempts per model for transient failures (refused/reset connections, 503, 5xx), 1-10."
  [OLLAMA_PRELOAD_CONCURRENCY]="Accepted for compatibility (1-16); this script always warms one model at a time."
  [OLLAMA_PRELOAD_PULL]="never (pulling is model_puller's job) or missing (pull a model the server lacks, then warm it)."
  [OLLAMA_PRELOAD_BEST_EFFORT]="Log failures but exit 0 (statuses 3 and 4 become 0)."
  [OLLAMA_PRELOAD_LOG_FORMAT]="text (one readable line per event) or json (one JSON object per line)."
  [OLLAMA_PRELOAD_REPORT]="Also write a JSON report of the run to PATH."
  [OLLAMA_API_KEY]="Sent as 'Authorization: Bearer KEY' (for an Ollama behind an authenticating proxy). Never logged. Prefer the variable: command-line flags are visible to other users of the machine."
  [OLLAMA_MAX_LOADED_MODELS]="The server's OLLAMA_MAX_LOADED_MODELS, if you know it: more listed models than this is warned about before warming."
  [OLLAMA_PRELOAD_VERBOSE]="Log every request (on stderr)."
)

declare -A FLAGS=() # settings given on the command line, keyed by variable name; they win over the environment

# --- the configuration (config.py Config), filled once by load_config ---------------------------------

CFG_BASE_URL="" CFG_KEEP_ALIVE_WIRE="" CFG_KEEP_ALIVE_STATE="" CFG_NUM_PREDICT=1
CFG_WAIT_TIMEOUT_NS=0 CFG_WARM_TIMEOUT_NS=0 CFG_ATTEMPTS=3 CFG_CONCURRENCY=1 CFG_PULL=never
CFG_BEST_EFFORT=0 CFG_LOG_FORMAT=text CFG_REPORT_PATH="" CFG_API_KEY="" CFG_MAX_LOADED=0 CFG_VERBOSE=0
CONFIG_PROBLEMS=() CONFIG_WARNINGS=()
# One entry per listed model (entries.py ModelEntry), same index everywhere.
E_TEXT=() E_KEY=() E_CLOUD=() E_KA_WIRE=() E_KA_STATE=() E_PROMPT=() E_THINK=() E_OPTIONS=()

# --- what the run has learned so far (run.py Progress); the summary reads it even after a signal --------

SERVER_VERSION="" WAITED_NS="" DONE_ORDER=()
O_OUTCOME=() O_KIND=() O_SECONDS_NS=() O_LOAD_NS=() O_ERROR=() O_KA_STATE=() O_PULLED=()
R_RESIDENT=() R_WHERE=() R_EXPIRES=() R_CONTEXT=() R_MESSAGE=()
RUNNING_NAMES=() RUNNING_SIZE=() RUNNING_VRAM=() RUNNING_EXPIRES=() RUNNING_CONTEXT=()

WORK_DIR="" CURL_PID="" SLEEP_PID="" FINISHING=0

# ======================================================================================================
# Small helpers: strings, JSON, time
# ======================================================================================================

# strip VALUE: trim leading and trailing whitespace (Python's str.strip()) into REPLY.
strip() {
  local text=$1
  text=${text#"${text%%[![:space:]]*}"}
  REPLY=${text%"${text##*[![:space:]]}"}
}

lower() { REPLY=${1,,}; }

# The control characters (0x01-0x1f, 0x7f) and their escapes, built once without forking.
CONTROL_CHARS=() CONTROL_PY=() CONTROL_JSON=()
init_control_chars() {
  local code hex char
  for code in {1..31} 127; do
    printf -v hex '%02x' "$code"
    # shellcheck disable=SC2059 # the format is the escape being built
    printf -v char "\\x$hex"
    CONTROL_CHARS+=("$char")
    CONTROL_PY+=("\\x$hex")
    CONTROL_JSON+=("\\u00$hex")
  done
}
init_control_chars

# py_repr VALUE: the value quoted as Python's repr() shows a str, for messages identical to the package's.
py_repr() {
  local text=$1 quote="'" i
  if [[ $text == *"'"* && $text != *'"'* ]]; then quote='"'; fi
  text=${text//\\/\\\\}
  if [[ $quote == "'" ]]; then text=${text//\'/\\\'}; fi
  if [[ $text == *[[:cntrl:]]* ]]; then
    text=${text//$'\n'/\\n}
    text=${text//$'\r'/\\r}
    text=${text//$'\t'/\\t}
    for i in "${!CONTROL_CHARS[@]}"; do
      text=${text//"${CONTROL_CHARS[i]}"/${CONTROL_PY[i]}}
    done
  fi
  REPLY="$quote$text$quote"
}

# json_quote VALUE: VALUE as a JSON string literal (quotes included) into REPLY. Everything that can
# break out of a JSON string is escaped: backslash, double quote and every control character.
json_quote() {
  local text=$1 i
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  if [[ $text == *[[:cntrl:]]* ]]; then
    text=${text//$'\n'/\\n}
    text=${text//$'\r'/\\r}
    text=${text//$'\t'/\\t}
    for i in "${!CONTROL_CHARS[@]}"; do
      text=${text//"${CONTROL_CHARS[i]}"/${CONTROL_JSON[i]}}
    done
  fi
  REPLY="\"$text\""
}

# utf8_encode CODEPOINT: the character's UTF-8 bytes into REPLY (the script runs in the C locale).
utf8_encode() {
  local cp=$1 format
  if ((cp < 0x80)); then
    printf -v format '\\x%02x' "$cp"
  elif ((cp < 0x800)); then
    printf -v format '\\x%02x\\x%02x' $((0xc0 | cp >> 6)) $((0x80 | (cp & 0x3f)))
  else
    printf -v format '\\x%02x\\x%02x\\x%02x' $((0xe0 | cp >> 12)) $((0x80 | (cp >> 6 & 0x3f))) $((0x80 | (cp & 0x3f)))
  fi
  # shellcheck disable=SC2059 # the format is the escape sequence just built
  printf -v REPLY "$format"
}

# json_unescape TEXT: decode the escapes of a JSON string body (without its quotes) into REPLY.
json_unescape() {
  local text=$1 out="" escape hex
  while [[ $text == *\\* ]]; do
    out+=${text%%\\*}
    text=${text#*\\}
    escape=${text:0:1}
    text=${text:1}
    case $escape in
      n) out+=$'\n' ;;
      t) out+=$'\t' ;;
      r) out+=$'\r' ;;
      b) out+=$'\b' ;;
      f) out+=$'\f' ;;
      u)
        hex=${text:0:4}
        if [[ $hex =~ ^[0-9A-Fa-f]{4}$ ]]; then
          utf8_encode $((16#$hex))
          out+=$REPLY
          text=${text:4}
        else
          out+="\\u"
        fi
        ;;
      *) out+=$escape ;;
    esac
  done
  REPLY=$out$text
}

# json_string_field JSON KEY: the first string value of KEY, unescaped, into REPLY; status 1 if absent.
# A key pattern `"KEY":` cannot match inside a JSON string (quotes there are escaped), so a regex is safe.
json_string_field() {
  local pattern="\"$2\"[[:space:]]*:[[:space:]]*\"(([^\"\\\\]|\\\\.)*)\""
  [[ $1 =~ $pattern ]] || return 1
  json_unescape "${BASH_REMATCH[1]}"
}

# json_number_field JSON KEY: the first number value of KEY into REPLY; status 1 if absent or not a number.
json_number_field() {
  local pattern="\"$2\"[[:space:]]*:[[:space:]]*(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)"
  [[ $1 =~ $pattern ]] || return 1
  REPLY=${BASH_REMATCH[1]}
}

# json_value_end TEXT START: index just past the object or array that opens at START, into REPLY.
# Runs of plain text and whole strings are skipped with one regex match each: stepping through a 6 KB
# /api/ps answer one character at a time took ~70 ms per scan (BENCHMARKS.md).
json_value_end() {
  local text=$1 i=$2 depth=0 length=${#1} rest
  local plain='^[^][{}"]+' string='^"([^"\\]|\\.)*"'
  while ((i < length)); do
    rest=${text:i}
    case ${rest:0:1} in
      '"')
        [[ $rest =~ $string ]] || return 1
        i=$((i + ${#BASH_REMATCH[0]}))
        continue
        ;;
      '{' | '[') depth=$((depth + 1)) ;;
      '}' | ']')
        depth=$((depth - 1))
        if ((depth == 0)); then
          REPLY=$((i + 1))
          return 0
        fi
        ;;
      *)
        [[ $rest =~ $plain ]] || return 1
        i=$((i + ${#BASH_REMATCH[0]}))
        continue
        ;;
    esac
    i=$((i + 1))
  done
  return 1
}

# json_object_field JSON KEY: the text of KEY's object or array value into REPLY; status 1 if absent.
json_object_field() {
  local text=$1 prefix pattern
  # Cut at the first occurrence of the key.
  pattern="\"$2\"[[:space:]]*:[[:space:]]*[[{]"
  [[ $text =~ $pattern ]] || return 1
  prefix=${text%%"${BASH_REMATCH[0]}"*}${BASH_REMATCH[0]}
  json_value_end "$text" $((${#prefix} - 1)) || return 1
  REPLY=${text:${#prefix}-1:REPLY-${#prefix}+1}
}

# json_array_items ARRAY_TEXT: the top-level objects of a JSON array into the ITEMS array.
json_array_items() {
  local text=$1 i=1 length=${#1} char
  ITEMS=()
  while ((i < length)); do
    char=${text:i:1}
    if [[ $char == '{' ]]; then
      json_value_end "$text" "$i" || return 1
      ITEMS+=("${text:i:REPLY-i}")
      i=$REPLY
    else
      i=$((i + 1))
    fi
  done
}

# now_ns: wall clock in nanoseconds (microsecond resolution) into REPLY. No fork.
now_ns() {
  local stamp=${EPOCHREALTIME/,/.}
  REPLY=$((${stamp%.*} * NS_PER_S + 10#${stamp#*.} * 1000))
}

# days_from_civil Y M D: days since 1970-01-01 of a proleptic Gregorian date, into REPLY.
days_from_civil() {
  local y=$1 m=$((10#$2)) d=$((10#$3)) era yoe doy doe
  if ((m <= 2)); then y=$((y - 1)); fi
  if ((y >= 0)); then era=$((y / 400)); else era=$(((y - 399) / 400)); fi
  yoe=$((y - era * 400))
  if ((m > 2)); then doy=$(((153 * (m - 3) + 2) / 5 + d - 1)); else doy=$(((153 * (m + 9) + 2) / 5 + d - 1)); fi
  doe=$((yoe * 365 + yoe / 4 - yoe / 100 + doy))
  REPLY=$((era * 146097 + doe - 719468))
}

# utc_timestamp: now as 2026-01-02T03:04:05.678Z (what the package's json log lines carry), into REPLY.
utc_timestamp() {
  now_ns
  local ns=$REPLY secs days z era doe yoe y doy mp d m rem
  secs=$((ns / NS_PER_S))
  days=$((secs / 86400))
  rem=$((secs % 86400))
  z=$((days + 719468))
  era=$((z / 146097))
  doe=$((z - era * 146097))
  yoe=$(((doe - doe / 1460 + doe / 36524 - doe / 146096) / 365))
  y=$((yoe + era * 400))
  doy=$((doe - (365 * yoe + yoe / 4 - yoe / 100)))
  mp=$(((5 * doy + 2) / 153))
  d=$((doy - (153 * mp + 2) / 5 + 1))
  if ((mp < 10)); then m=$((mp + 3)); else m=$((mp - 9)); fi
  if ((m <= 2)); then y=$((y + 1)); fi
  printf -v REPLY '%04d-%02d-%02dT%02d:%02d:%02d.%03dZ' "$y" "$m" "$d" $((rem / 3600)) $((rem % 3600 / 60)) \
    $((rem % 60)) $((ns % NS_PER_S / 1000000))
}

# parse_timestamp RFC3339: epoch seconds into REPLY, the fraction (microsecond precision, as Python keeps
# it) into TS_FRAC_NS and the year into TS_YEAR (client.py parse_timestamp).
parse_timestamp() {
  local pattern='^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?$'
  [[ $1 =~ $pattern ]] || return 1
  local year=$((10#${BASH_REMATCH[1]})) month=${BASH_REMATCH[2]} day=${BASH_REMATCH[3]}
  local hh=$((10#${BASH_REMATCH[4]})) mm=$((10#${BASH_REMATCH[5]})) ss=$((10#${BASH_REMATCH[6]}))
  local zone=${BASH_REMATCH[8]} offset=0 sign frac=${BASH_REMATCH[7]#.}
  frac=${frac:0:6}
  while ((${#frac} < 6)); do frac+="0"; done
  TS_FRAC_NS=$((10#$frac * 1000))
  if [[ -n $zone && $zone != [Zz] ]]; then
    sign=${zone:0:1}
    zone=${zone:1}
    zone=${zone/:/}
    offset=$((10#${zone:0:2} * 3600 + 10#${zone:2:2} * 60))
    if [[ $sign == - ]]; then offset=$((-offset)); fi
  fi
  TS_YEAR=$year
  days_from_civil "$year" "$month" "$day"
  REPLY=$((REPLY * 86400 + hh * 3600 + mm * 60 + ss - offset))
}

# ns_to_seconds NS: a decimal number of seconds for curl and JSON (up to 9 decimals, trailing zeros cut).
ns_to_seconds() {
  local ns=$1 sign="" frac
  if ((ns < 0)); then sign="-" ns=$((-ns)); fi
  printf -v frac '%09d' $((ns % NS_PER_S))
  frac=${frac%"${frac##*[!0]}"}
  REPLY="$sign$((ns / NS_PER_S))${frac:+.$frac}"
}

# json_seconds NS [DECIMALS]: seconds as a JSON float, rounded like Python's round(x, 3) by default.
json_seconds() {
  local ns=$1 decimals=${2:-3} unit frac
  unit=$((10 ** (9 - decimals)))
  ns=$(((ns + unit / 2) / unit))
  printf -v frac "%0${decimals}d" $((ns % (10 ** decimals)))
  frac=${frac%"${frac##*[!0]}"}
  REPLY="$((ns / (10 ** decimals))).${frac:-0}"
}

# format_g NS: seconds the way Python's f"{x:g}" prints them (6 significant digits).
format_g() {
  local ns=$1 whole frac digits keep unit
  whole=$((ns / NS_PER_S))
  if ((whole > 0)); then
    digits=${#whole}
    keep=$((digits >= 6 ? 0 : 6 - digits))
  else
    printf -v frac '%09d' "$ns"
    frac=${frac%%[1-9]*}
    keep=$((${#frac} + 6 > 9 ? 9 : ${#frac} + 6))
  fi
  unit=$((10 ** (9 - keep)))
  ns=$(((ns + unit / 2) / unit))
  if ((keep == 0)); then
    REPLY=$ns
    return
  fi
  printf -v frac "%0${keep}d" $((ns % (10 ** keep)))
  frac=${frac%"${frac##*[!0]}"}
  REPLY="$((ns / (10 ** keep)))${frac:+.$frac}"
}

# format_seconds NS: durations.py format_seconds: '0.04 s', '1.23 s', '60.0 s', '5m', '1h30m'.
format_seconds() {
  local ns=$1 units total hours minutes secs text=""
  if ((ns < 0)); then ns=0; fi
  if ((ns < 10 * NS_PER_S)); then
    units=$(((ns + 5000000) / 10000000))
    printf -v REPLY '%d.%02d s' $((units / 100)) $((units % 100))
  elif ((ns < 120 * NS_PER_S)); then
    units=$(((ns + 50000000) / 100000000))
    printf -v REPLY '%d.%d s' $((units / 10)) $((units % 10))
  else
    total=$(((ns + NS_PER_S / 2) / NS_PER_S))
    hours=$((total / 3600))
    minutes=$((total % 3600 / 60))
    secs=$((total % 60))
    if ((hours)); then text+="${hours}h"; fi
    if ((minutes)); then text+="${minutes}m"; fi
    if ((secs)); then text+="${secs}s"; fi
    REPLY=${text:-0s}
  fi
}

# pause NS: sleep in the background and wait, so that SIGTERM/SIGINT are handled at once.
pause() {
  ns_to_seconds "$1"
  sleep "$REPLY" &
  SLEEP_PID=$!
  wait "$SLEEP_PID" || true
  SLEEP_PID=""
}

# ======================================================================================================
# logs.py: one line per event, `text` for people or `json` for machines, always on stdout
# ======================================================================================================

# log_event LEVEL EVENT MODEL MESSAGE [FIELD JSON_VALUE]...: MODEL may be empty (the tool itself).
log_event() {
  local level=$1 event=$2 model=$3 message=$4 line marker=""
  shift 4
  if [[ $CFG_LOG_FORMAT == json ]]; then
    utc_timestamp
    line="{\"time\": \"$REPLY\", \"level\": \"$level\", \"event\": \"$event\""
    if [[ -n $model ]]; then
      json_quote "$model"
      line+=", \"model\": $REPLY"
    fi
    if [[ -n $message ]]; then
      json_quote "$message"
      line+=", \"message\": $REPLY"
    fi
    while (($# >= 2)); do
      line+=", \"$1\": $2"
      shift 2
    done
    line+="}"
  else
    # A model's failure already says "failed:"; the tool's own errors need the word.
    if [[ $level == warning ]]; then
      marker="warning: "
    elif [[ $level == error && -z $model ]]; then
      marker="error: "
    fi
    line="${model:-$TOOL}: $marker$message"
  fi
  printf '%s\n' "$line"
}

log_info() { log_event info "$@"; }
log_warning() { log_event warning "$@"; }
log_error() { log_event error "$@"; }

# json_or_null VALUE: VALUE as a JSON string, or null when empty, into REPLY.
json_or_null() {
  if [[ -z $1 ]]; then REPLY=null; else json_quote "$1"; fi
}

# ======================================================================================================
# durations.py: Go's time.ParseDuration, keep-alives and timeouts
# ======================================================================================================

DURATION_ERROR=""

# parse_go_duration TEXT: nanoseconds into REPLY (saturating); on failure Go's message in DURATION_ERROR.
parse_go_duration() {
  local text=$1 body=$1 sign=1 total=0 whole frac unit scale part
  local quoted="\"$1\""
  case $body in
    -*) sign=-1 body=${body:1} ;;
    +*) body=${body:1} ;;
  esac
  if [[ $body == 0 ]]; then
    REPLY=0
    return 0
  fi
  if [[ -z $body ]]; then
    DURATION_ERROR="time: invalid duration $quoted"
    return 1
  fi
  while [[ -n $body ]]; do
    [[ $body =~ ^([0-9]*)(\.([0-9]*))?([^0-9.]*) ]]
    whole=${BASH_REMATCH[1]} frac=${BASH_REMATCH[3]} unit=${BASH_REMATCH[4]}
    body=${body:${#BASH_REMATCH[0]}}
    if [[ -z $whole && -z $frac ]]; then
      DURATION_ERROR="time: invalid duration $quoted"
      return 1
    fi
    if [[ -z $unit ]]; then
      DURATION_ERROR="time: missing unit in duration $quoted"
      return 1
    fi
    case $unit in
      ns) scale=1 ;;
      us | $'\xc2\xb5s' | $'\xce\xbcs') scale=1000 ;;
      ms) scale=1000000 ;;
      s) scale=$NS_PER_S ;;
      m) scale=$((60 * NS_PER_S)) ;;
      h) scale=$((3600 * NS_PER_S)) ;;
      *)
        DURATION_ERROR="time: unknown unit \"$unit\" in duration $quoted"
        return 1
        ;;
    esac
    whole=${whole#"${whole%%[!0]*}"}
    if ((${#whole} > 18)) || ((${whole:-0} > MAX_NS / scale)); then
      total=$MAX_NS
    else
      part=$((${whole:-0} * scale))
      # The fraction to nanosecond precision of the unit: 9 digits, scaled without overflow.
      frac=${frac:0:9}
      while ((${#frac} < 9)); do frac+="0"; done
      if ((scale >= NS_PER_S)); then
        part=$((part + 10#$frac * (scale / NS_PER_S)))
      else
        part=$((part + 10#$frac * scale / NS_PER_S))
      fi
      if ((total > MAX_NS - part)); then total=$MAX_NS; else total=$((total + part)); fi
    fi
  done
  REPLY=$((sign * total))
}

# parse_keep_alive TEXT: KA_WIRE (the JSON value to send) and KA_STATE (forever|unload|timed).
# Plain integers go out as JSON numbers: the API refuses the string "-1".
parse_keep_alive() {
  strip "$1"
  local value=$REPLY digits
  if [[ $value =~ ^([+-]?)([0-9]+)$ ]]; then
    digits=${BASH_REMATCH[2]#"${BASH_REMATCH[2]%%[!0]*}"}
    digits=${digits:-0}
    if [[ ${BASH_REMATCH[1]} == - && $digits != 0 ]]; then
      KA_WIRE="-$digits" KA_STATE=forever
    elif [[ $digits == 0 ]]; then
      KA_WIRE=0 KA_STATE=unload
    else
      KA_WIRE=$digits KA_STATE=timed
    fi
    return 0
  fi
  parse_go_duration "$value" || return 1
  if ((REPLY > 0 && REPLY < NS_PER_S)); then
    # Ollama counts keep-alive in whole seconds: "500ms" would unload the model at once.
    DURATION_ERROR="Ollama counts keep-alive in whole seconds, so \"$value\" would unload the model at once"
    return 1
  fi
  if ((REPLY < 0)); then KA_STATE=forever; elif ((REPLY == 0)); then KA_STATE=unload; else KA_STATE=timed; fi
  json_quote "$value"
  KA_WIRE=$REPLY
}

# parse_float TEXT: a float literal as Python's float() reads it (no inf/nan) into FLOAT_SIGN, FLOAT_INT
# (digits, leading zeros removed), FLOAT_FRAC and FLOAT_EXP (an integer); status 1 if TEXT is not one.
parse_float() {
  local pattern='^([+-]?)(([0-9]+)(\.([0-9]*))?|\.([0-9]+))([eE]([+-]?[0-9]+))?$'
  [[ $1 =~ $pattern ]] || return 1
  FLOAT_SIGN=${BASH_REMATCH[1]#+}
  FLOAT_INT=${BASH_REMATCH[3]#"${BASH_REMATCH[3]%%[!0]*}"}
  FLOAT_FRAC=${BASH_REMATCH[5]}${BASH_REMATCH[6]}
  FLOAT_EXP=${BASH_REMATCH[8]:-0}
  if ((${#FLOAT_EXP} > 6)); then FLOAT_EXP=${FLOAT_EXP:0:1}999999; fi
  FLOAT_EXP=$((${FLOAT_EXP/#+/} + 0))
}

# parse_timeout TEXT: a positive timeout (Go duration or a number of seconds) in nanoseconds, into REPLY.
parse_timeout() {
  strip "$1"
  local value=$REPLY digits point ns
  lower "$value"
  if [[ ${REPLY#[+-]} == inf || ${REPLY#[+-]} == infinity || ${REPLY#[+-]} == nan ]]; then
    DURATION_ERROR="duration must be positive, got \"$value\""
    return 1
  fi
  if parse_float "$value"; then
    # seconds = DIGITS * 10^(EXP - len(FRAC)); nanoseconds: 9 more.
    digits=$FLOAT_INT$FLOAT_FRAC
    digits=${digits#"${digits%%[!0]*}"}
    point=$((FLOAT_EXP - ${#FLOAT_FRAC} + 9))
    if [[ -z $digits ]]; then
      ns=0
    elif ((point + ${#digits} > 19)); then
      ns=$MAX_NS
    elif ((point >= 0)); then
      ns=$((10#$digits * 10 ** point))
    elif ((-point >= ${#digits})); then
      ns=1 # positive, below a nanosecond
    else
      ns=$((10#${digits:0:${#digits}+point}))
    fi
    if [[ $FLOAT_SIGN == - || $ns -le 0 ]]; then
      DURATION_ERROR="duration must be positive, got \"$value\""
      return 1
    fi
    REPLY=$ns
    return 0
  fi
  parse_go_duration "$value" || return 1
  if ((REPLY <= 0)); then
    DURATION_ERROR="duration must be positive, got \"$value\""
    return 1
  fi
}

# ======================================================================================================
# hosts.py: OLLAMA_HOST exactly as Ollama's envconfig.Host parses it
# ======================================================================================================

# parse_ipv4 TEXT: status 0 when TEXT is a dotted quad Python's ipaddress accepts (no leading zeros).
parse_ipv4() {
  local octet
  [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
  for octet in "${BASH_REMATCH[@]:1}"; do
    if [[ $octet == 0?* ]] || ((10#$octet > 255)); then return 1; fi
  done
  REPLY=$1
}

# parse_ip TEXT: Go's net.ParseIP(TEXT).String() as the package computes it, into REPLY; status 1 if no IP.
parse_ip() {
  local text=$1 head tail part count=0 i best_start=-1 best_len=0 run_start=-1 run_len=0 out=""
  local -a groups=() head_parts=() tail_parts=()
  if [[ $text == *%* ]]; then return 1; fi
  if parse_ipv4 "$text"; then return 0; fi
  [[ $text == *:* && $text =~ ^[0-9A-Fa-f:.]+$ ]] || return 1
  local last=${text##*:}
  if [[ $last == *.* ]]; then
    parse_ipv4 "$last" || return 1
    IFS=. read -r -a tail_parts <<<"$last"
    printf -v last '%x:%x' $((tail_parts[0] * 256 + tail_parts[1])) $((tail_parts[2] * 256 + tail_parts[3]))
    text="${text%:*}:$last"
    tail_parts=()
  fi
  if [[ $text == *::*::* ]]; then return 1; fi
  if [[ $text == *::* ]]; then
    head=${text%%::*} tail=${text#*::}
    if [[ -n $head ]]; then IFS=: read -r -a head_parts <<<"$head"; fi
    if [[ -n $tail ]]; then IFS=: read -r -a tail_parts <<<"$tail"; fi
    if [[ $head == *: || $tail == *: ]]; then return 1; fi
    count=$((${#head_parts[@]} + ${#tail_parts[@]}))
    ((count <= 7)) || return 1
    groups=("${head_parts[@]}")
    for ((i = count; i < 8; i++)); do groups+=(0); done
    groups+=("${tail_parts[@]}")
  else
    if [[ $text == *: ]]; then return 1; fi
    IFS=: read -r -a groups <<<"$text"
    ((${#groups[@]} == 8)) || return 1
  fi
  for part in "${groups[@]}"; do
    [[ $part =~ ^[0-9A-Fa-f]{1,4}$ ]] || return 1
  done
  for i in "${!groups[@]}"; do groups[i]=$((16#${groups[i]})); done
  # IPv4-mapped (::ffff:a.b.c.d) is shown as the IPv4 address.
  if ((groups[0] == 0 && groups[1] == 0 && groups[2] == 0 && groups[3] == 0 && groups[4] == 0 && groups[5] == 65535)); then
    REPLY="$((groups[6] >> 8)).$((groups[6] & 255)).$((groups[7] >> 8)).$((groups[7] & 255))"
    return 0
  fi
  for i in {0..7}; do
    if ((groups[i] == 0)); then
      if ((run_start < 0)); then run_start=$i run_len=0; fi
      run_len=$((run_len + 1))
      if ((run_len > best_len)); then best_start=$run_start best_len=$run_len; fi
    else
      run_start=-1
    fi
  done
  if ((best_len < 2)); then best_start=-1; fi
  for i in {0..7}; do
    if ((i == best_start)); then
      out+="::"
    elif ((best_start >= 0 && i > best_start && i < best_start + best_len)); then
      continue
    else
      if [[ -n $out && $out != *:: ]]; then out+=":"; fi
      printf -v part '%x' "${groups[i]}"
      out+=$part
    fi
  done
  REPLY=$out
}

# split_host_port HOSTPORT: Go's net.SplitHostPort into SPLIT_HOST/SPLIT_PORT; status 1 where Go errs.
split_host_port() {
  local hostport=$1 inner rest
  if [[ $hostport == \[* ]]; then
    [[ $hostport == *\]* ]] || return 1
    inner=${hostport#\[}
    inner=${inner%%\]*}
    rest=${hostport#*\]}
    [[ $rest == :* ]] || return 1
    rest=${rest#:}
    if [[ $rest == *[]:[]* ]]; then return 1; fi
    SPLIT_HOST=$inner SPLIT_PORT=$rest
    return 0
  fi
  [[ $hostport == *:* ]] || return 1
  SPLIT_HOST=${hostport%:*} SPLIT_PORT=${hostport##*:}
  if [[ $SPLIT_HOST == *:* || $hostport == *[][]* ]]; then return 1; fi
  return 0
}

valid_port() {
  local body=${1#[+-]}
  [[ $body =~ ^[0-9]+$ ]] || return 1
  ((${#body} <= 6)) || return 1
  local value=$((10#$body))
  if [[ $1 == -* ]]; then value=$((-value)); fi
  ((value >= 0 && value <= 65535))
}

join_url() {
  local scheme=$1 host=$2 port=$3 path=$4 netloc
  if [[ $host == *:* ]]; then netloc="[$host]:$port"; else netloc="$host:$port"; fi
  REPLY="$scheme://$netloc${path:+/$path}"
}

# parse_host VALUE: HOST_URL (as Ollama prints it) and HOST_BASE_URL (where a client connects). Never fails.
parse_host() {
  local text scheme hostport path="" host port default_port=11434
  strip "$1"
  text=$REPLY
  text=${text#"${text%%[!\"\']*}"}
  text=${text%"${text##*[!\"\']}"}
  strip "$text"
  text=$REPLY
  if [[ $text == *://* ]]; then
    scheme=${text%%://*} hostport=${text#*://}
    if [[ $scheme == http ]]; then default_port=80; elif [[ $scheme == https ]]; then default_port=443; fi
  else
    scheme=http hostport=$text
    if [[ $text == ollama.com ]]; then scheme=https hostport=ollama.com:443; fi
  fi
  if [[ $hostport == */* ]]; then
    path=${hostport#*/}
    hostport=${hostport%%/*}
  fi
  path=${path#"${path%%[!/]*}"}
  path=${path%"${path##*[!/]}"}
  if split_host_port "$hostport"; then
    host=$SPLIT_HOST port=$SPLIT_PORT
  else
    host=127.0.0.1 port=$default_port
    local bare=$hostport
    bare=${bare#"${bare%%[!][]*}"}
    bare=${bare%"${bare##*[!][]}"}
    if parse_ip "$bare"; then
      host=$REPLY
    elif [[ -n $hostport ]]; then
      host=$hostport
    fi
  fi
  if ! valid_port "$port"; then port=$default_port; fi
  join_url "$scheme" "$host" "$port" "$path"
  # shellcheck disable=SC2034 # the address as Ollama prints it; for callers that source this script
  HOST_URL=$REPLY
  case $host in
    "" | 0.0.0.0) host=127.0.0.1 ;;
    ::) host=::1 ;;
  esac
  join_url "$scheme" "$host" "$port" "$path"
  HOST_BASE_URL=$REPLY
}

# ======================================================================================================
# names.py: model names by Ollama's rules (types/model/name.go)
# ======================================================================================================

word_char() { [[ $1 == [A-Za-z0-9_] ]]; }

# check_part KIND PART: NAME_ERROR and status 1 when PART breaks Ollama's rules for KIND.
check_part() {
  local kind=$1 part=$2 limit=80 i char
  if [[ $kind == host ]]; then limit=350; fi
  if [[ $part == "$MISSING" ]]; then
    NAME_ERROR="the $kind part is empty"
    return 1
  fi
  if ((${#part} < 1 || ${#part} > limit)); then
    NAME_ERROR="$kind must be 1-$limit characters long"
    return 1
  fi
  if ! word_char "${part:0:1}"; then
    NAME_ERROR="$kind \"$part\" must start with a letter, digit or \"_\""
    return 1
  fi
  for ((i = 1; i < ${#part}; i++)); do
    char=${part:i:1}
    if [[ $char == . && $kind == namespace ]]; then
      NAME_ERROR="namespace \"$part\" may not contain \".\""
      return 1
    fi
    if [[ $char == : && $kind == host ]]; then continue; fi
    if ! word_char "$char" && [[ $char != [-.] ]]; then
      py_repr "$char"
      NAME_ERROR="$kind \"$part\" may not contain $REPLY"
      return 1
    fi
  done
}

# cut_promised TEXT SEP: split at the last SEP into CUT_BEFORE/CUT_AFTER, empty parts marked missing.
cut_promised() {
  CUT_BEFORE=${1%"$2"*} CUT_AFTER=${1##*"$2"}
  CUT_BEFORE=${CUT_BEFORE:-$MISSING} CUT_AFTER=${CUT_AFTER:-$MISSING}
}

# parse_model_name TEXT: NAME_DISPLAY, NAME_KEY, NAME_CLOUD; NAME_ERROR and status 1 when invalid.
parse_model_name() {
  local name=$1 source="" suffix after colons rest host="" namespace="" model tag="" has_host=0 has_ns=0 has_tag=0
  NAME_ERROR=""
  for suffix in :cloud :local; do
    # `name:tag:cloud` / `name:tag:local` pick where a model runs; `name:cloud` is a plain tag.
    if [[ $name == *"$suffix" ]]; then
      after=${name##*/}
      colons=${after//[!:]/}
      if ((${#colons} > 1)); then
        name=${name%"$suffix"}
        source=${suffix#:}
      fi
    fi
  done
  # ParseNameBare: split from the right; a ':' is a tag separator only after the last '/'.
  rest=$name
  local last_colon=-1 last_slash=-1
  if [[ $rest == *:* ]]; then
    local before_colon=${rest%:*}
    last_colon=${#before_colon}
  fi
  if [[ $rest == */* ]]; then
    local before_slash=${rest%/*}
    last_slash=${#before_slash}
  fi
  if ((last_colon > last_slash)); then
    cut_promised "$rest" :
    rest=$CUT_BEFORE tag=$CUT_AFTER has_tag=1
  fi
  if [[ $rest != */* ]]; then
    model=$rest
  else
    cut_promised "$rest" /
    rest=$CUT_BEFORE model=$CUT_AFTER
    if [[ $rest != */* ]]; then
      namespace=$rest has_ns=1
    else
      cut_promised "$rest" /
      rest=$CUT_BEFORE namespace=$CUT_AFTER has_ns=1
      if [[ $rest == *://* ]]; then host=${rest#*://}; else host=$rest; fi
      has_host=1
    fi
  fi
  if ((has_host)); then check_part host "$host" || return 1; fi
  if ((has_ns)); then check_part namespace "$namespace" || return 1; fi
  check_part model "$model" || return 1
  if ((has_tag)); then check_part tag "$tag" || return 1; fi
  tag=${tag:-$DEFAULT_TAG} host=${host:-$DEFAULT_HOST} namespace=${namespace:-$DEFAULT_NAMESPACE}
  NAME_CLOUD=0
  if [[ $source == cloud ]] || [[ $source != local && ($tag == cloud || $tag == *-cloud) ]]; then NAME_CLOUD=1; fi
  local prefix=""
  if [[ ${host,,} != "$DEFAULT_HOST" ]]; then
    prefix="$host/$namespace/"
  elif [[ ${namespace,,} != "$DEFAULT_NAMESPACE" ]]; then
    prefix="$namespace/"
  fi
  NAME_DISPLAY="$prefix$model:$tag"
  NAME_KEY=${NAME_DISPLAY,,}
}

# model_key REPORTED: the comparison key of a name the server reported (verify.py _key), into REPLY.
model_key() {
  if parse_model_name "$1"; then REPLY=$NAME_KEY; else REPLY=${1,,}; fi
}

# ======================================================================================================
# entries.py: `name` or `name?key=value&key=value`, separated by commas and/or whitespace
# ======================================================================================================

ENTRY_ERROR=""

# split_model_list TEXT: the entries into the MODEL_ITEMS array (no globbing, no empty items).
split_model_list() {
  local text=${1//,/ } item
  MODEL_ITEMS=()
  local -a words=()
  IFS=$' \t\n\r\v\f' read -r -d '' -a words <<<"$text" || true
  for item in "${words[@]}"; do
    if [[ -n $item ]]; then MODEL_ITEMS+=("$item"); fi
  done
}

# url_unquote_plus TEXT: what Python's parse_qsl makes of a query part (`+` is a space, %XX a byte).
url_unquote_plus() {
  local rest=${1//+/ } out=""
  rest=${rest//\\/\\\\}
  while [[ $rest == *%* ]]; do
    out+=${rest%%\%*}
    rest=${rest#*%}
    if [[ $rest =~ ^[0-9A-Fa-f]{2} ]]; then
      out+="\\x${rest:0:2}"
      rest=${rest:2}
    else
      out+="%"
    fi
  done
  printf -v REPLY '%b' "$out$rest"
}

# typed_value TEXT: the option value as a JSON literal (bool, int, float or string), into REPLY.
typed_value() {
  local text=$1 exponent=""
  lower "$text"
  if [[ $REPLY == true || $REPLY == false ]]; then return 0; fi
  if [[ $text =~ ^[+-]?[0-9]+$ ]]; then
    parse_float "$text"
    if [[ -z $FLOAT_INT ]]; then FLOAT_SIGN=""; fi
    REPLY="$FLOAT_SIGN${FLOAT_INT:-0}"
    return 0
  fi
  if parse_float "$text"; then
    # Written the way JSON wants a number: no '+', digits on both sides of the point.
    if [[ $text == *[eE]* ]]; then exponent="e$FLOAT_EXP"; fi
    REPLY="$FLOAT_SIGN${FLOAT_INT:-0}.${FLOAT_FRAC:-0}$exponent"
    return 0
  fi
  json_quote "$text"
}

# parse_entry TEXT: one entry into ENTRY_* variables; ENTRY_ERROR and status 1 when it is invalid.
parse_entry() {
  local text=$1 raw_name query="" has_query=0 pair key value canonical options="" lowered
  local -A seen=()
  if [[ $text == *\?* ]]; then
    raw_name=${text%%\?*} query=${text#*\?} has_query=1
  else
    raw_name=$text
  fi
  if ! parse_model_name "$raw_name"; then
    py_repr "$raw_name"
    ENTRY_ERROR="invalid model name $REPLY: $NAME_ERROR"
    return 1
  fi
  ENTRY_TEXT=$raw_name ENTRY_KEY=$NAME_KEY ENTRY_CLOUD=$NAME_CLOUD
  ENTRY_KA_WIRE="" ENTRY_KA_STATE="" ENTRY_PROMPT="" ENTRY_THINK="" ENTRY_OPTIONS=""
  if ((has_query)) && [[ -z $query ]]; then
    py_repr "$text"
    ENTRY_ERROR="$REPLY ends with '?' but names no option"
    return 1
  fi
  [[ -n $query ]] || return 0
  local -a pairs=()
  local rest=$query
  while [[ $rest == *"&"* ]]; do
    pairs+=("${rest%%&*}")
    rest=${rest#*&}
  done
  pairs+=("$rest")
  for pair in "${pairs[@]}"; do
    if [[ $pair != *=* ]]; then
      py_repr "$raw_name"
      local name_repr=$REPLY
      py_repr "$query"
      ENTRY_ERROR="options of $name_repr must look like key=value&key=value, got $REPLY"
      return 1
    fi
  done
  for pair in "${pairs[@]}"; do
    url_unquote_plus "${pair%%=*}"
    key=$REPLY
    url_unquote_plus "${pair#*=}"
    value=$REPLY
    canonical=$key
    if [[ $key == keepalive ]]; then canonical=keep_alive; fi
    if [[ -n ${seen[$canonical]+set} ]]; then
      py_repr "$key"
      local key_repr=$REPLY
      py_repr "$raw_name"
      ENTRY_ERROR="option $key_repr is given twice for $REPLY"
      return 1
    fi
    seen[$canonical]=1
    if [[ ! $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      py_repr "$key"
      local key_repr=$REPLY
      py_repr "$raw_name"
      ENTRY_ERROR="option name $key_repr of $REPLY is not an identifier"
      return 1
    fi
    case $canonical in
      keep_alive)
        if ! parse_keep_alive "$value"; then
          py_repr "$value"
          local value_repr=$REPLY
          py_repr "$raw_name"
          ENTRY_ERROR="keep_alive=$value_repr of $REPLY: $DURATION_ERROR; use seconds (-1 = forever) or 30m, 1h30m"
          return 1
        fi
        ENTRY_KA_WIRE=$KA_WIRE ENTRY_KA_STATE=$KA_STATE
        ;;
      prompt) ENTRY_PROMPT=$value ;;
      think)
        lowered=${value,,}
        if [[ $lowered == true || $lowered == false ]]; then
          ENTRY_THINK=$lowered
        else
          typed_value "$value"
          if [[ $REPLY != \"* ]]; then
            py_repr "$value"
            local value_repr=$REPLY
            py_repr "$raw_name"
            ENTRY_ERROR="think=$value_repr of $REPLY: use true, false, low, medium or high"
            return 1
          fi
          ENTRY_THINK=$REPLY
        fi
        ;;
      *)
        if [[ -z $value ]]; then
          py_repr "$key"
          local key_repr=$REPLY
          py_repr "$raw_name"
          ENTRY_ERROR="option $key_repr of $REPLY has no value"
          return 1
        fi
        if [[ $key == stop ]]; then
          json_quote "$value" # Ollama wants stop sequences as an array
          REPLY="[$REPLY]"
        else
          typed_value "$value"
        fi
        options+="${options:+, }\"$key\": $REPLY"
        ;;
    esac
  done
  ENTRY_OPTIONS=$options
}

# ======================================================================================================
# config.py: every setting parsed and validated up front; problems collected, nothing sent on error
# ======================================================================================================

# raw VAR: the setting's value (RAW_VALUE) and the label to blame (RAW_LABEL): the flag wins.
raw() {
  if [[ -n ${FLAGS[$1]+set} ]]; then
    RAW_VALUE=${FLAGS[$1]} RAW_LABEL=${SETTING_FLAG[$1]}
  else
    RAW_VALUE=${!1:-} RAW_LABEL=$1
  fi
}

# setting_value VAR: the stripped value, or the default when it is empty, into REPLY.
setting_value() {
  raw "$1"
  strip "$RAW_VALUE"
  if [[ -z $REPLY ]]; then REPLY=${SETTING_DEFAULT[$1]:-}; fi
}

problem() {
  local reason=${2:+: $2}
  py_repr "$RAW_VALUE"
  CONFIG_PROBLEMS+=("$RAW_LABEL=$REPLY is invalid$reason; accepted: $1")
}

parse_int_range() {
  local text=$1 low=$2 high=$3 body
  strip "$text"
  body=${REPLY#[+-]}
  [[ $body =~ ^[0-9]+$ && ${#body} -le 9 ]] || return 1
  [[ $REPLY != [+-][+-]* ]] || return 1
  local value=$((10#$body))
  if [[ $REPLY == -* ]]; then value=$((-value)); fi
  ((value >= low && value <= high)) || return 1
  REPLY=$value
}

parse_bool() {
  strip "$1"
  lower "$REPLY"
  case $REPLY in
    1 | true | yes | on) REPLY=1 ;;
    0 | false | no | off) REPLY=0 ;;
    *) return 1 ;;
  esac
}

parse_choice() {
  strip "$1"
  lower "$REPLY"
  local choice
  for choice in "${@:2}"; do
    if [[ $REPLY == "$choice" ]]; then return 0; fi
  done
  return 1
}

looks_like_path() {
  [[ $1 == /* || $1 == \~* || $1 == ./* || $1 == ../* || $1 == .\\* || $1 == . || $1 == .. ]]
}

# load_models: the model list into the E_* arrays (config.py _models).
load_models() {
  local text label fallback fallback_label item i
  raw OLLAMA_PRELOAD_MODELS
  text=$RAW_VALUE label=$RAW_LABEL
  strip "$text"
  if [[ -z $REPLY ]]; then
    raw OLLAMA_MODELS
    fallback_label=$RAW_LABEL
    strip "$RAW_VALUE"
    fallback=$REPLY
    if looks_like_path "$fallback"; then
      py_repr "$fallback"
      CONFIG_WARNINGS+=("$fallback_label=$REPLY looks like a path: it is Ollama's models-directory variable, not a model list, so it is ignored; list models in OLLAMA_PRELOAD_MODELS")
    elif [[ -n $fallback ]]; then
      text=$RAW_VALUE label=$fallback_label
    fi
  fi
  split_model_list "$text"
  if ((${#MODEL_ITEMS[@]} == 0)); then
    # An ignored OLLAMA_MODELS path is the likely reason the list is empty: say so as an error.
    CONFIG_PROBLEMS+=("${CONFIG_WARNINGS[@]}")
    CONFIG_WARNINGS=()
    py_repr "$text"
    CONFIG_PROBLEMS+=("$label=$REPLY is invalid: no model listed; accepted: model names separated by commas or spaces, e.g. OLLAMA_PRELOAD_MODELS=llama3.2,nomic-embed-text")
    return
  fi
  local -A seen=()
  for item in "${MODEL_ITEMS[@]}"; do
    if ! parse_entry "$item"; then
      CONFIG_PROBLEMS+=("$label: $ENTRY_ERROR; accepted: NAME or NAME?key=value&key=value by Ollama's name rules")
      continue
    fi
    if [[ -n ${seen[$ENTRY_KEY]+set} ]]; then
      py_repr "$item"
      local item_repr=$REPLY
      py_repr "${seen[$ENTRY_KEY]}"
      CONFIG_PROBLEMS+=("$label: $item_repr names the same model as $REPLY; list each model once (warming it twice with different options would reload it)")
      continue
    fi
    seen[$ENTRY_KEY]=$item
    i=${#E_TEXT[@]}
    E_TEXT[i]=$ENTRY_TEXT E_KEY[i]=$ENTRY_KEY E_CLOUD[i]=$ENTRY_CLOUD E_KA_WIRE[i]=$ENTRY_KA_WIRE
    E_KA_STATE[i]=$ENTRY_KA_STATE E_PROMPT[i]=$ENTRY_PROMPT E_THINK[i]=$ENTRY_THINK E_OPTIONS[i]=$ENTRY_OPTIONS
  done
}

# load_config: parse and validate every setting; status 1 with CONFIG_PROBLEMS filled when any is bad.
load_config() {
  CONFIG_PROBLEMS=() CONFIG_WARNINGS=()
  raw OLLAMA_HOST
  parse_host "$RAW_VALUE"
  CFG_BASE_URL=$HOST_BASE_URL
  load_models

  raw OLLAMA_PRELOAD_KEEP_ALIVE
  strip "$RAW_VALUE"
  if [[ -n $REPLY ]]; then
    if parse_keep_alive "$RAW_VALUE"; then
      CFG_KEEP_ALIVE_WIRE=$KA_WIRE CFG_KEEP_ALIVE_STATE=$KA_STATE
    else
      problem "integer seconds (-1 = forever, 0 = unload) or a Go duration such as 30m, 1h30m, -1s" "$DURATION_ERROR"
    fi
  fi
  setting_value OLLAMA_PRELOAD_NUM_PREDICT
  if parse_int_range "$REPLY" 1 5; then CFG_NUM_PREDICT=$REPLY; else problem "an integer from 1 to 5"; fi
  setting_value OLLAMA_PRELOAD_WAIT_TIMEOUT
  if parse_timeout "$REPLY"; then
    CFG_WAIT_TIMEOUT_NS=$REPLY
  else
    problem "a positive duration (90s, 5m) or seconds" "$DURATION_ERROR"
  fi
  setting_value OLLAMA_PRELOAD_WARM_TIMEOUT
  if parse_timeout "$REPLY"; then
    CFG_WARM_TIMEOUT_NS=$REPLY
  else
    problem "a positive duration (30m, 1h) or seconds" "$DURATION_ERROR"
  fi
  setting_value OLLAMA_PRELOAD_ATTEMPTS
  if parse_int_range "$REPLY" 1 10; then CFG_ATTEMPTS=$REPLY; else problem "an integer from 1 to 10"; fi
  setting_value OLLAMA_PRELOAD_CONCURRENCY
  if parse_int_range "$REPLY" 1 16; then CFG_CONCURRENCY=$REPLY; else problem "an integer from 1 to 16"; fi
  setting_value OLLAMA_PRELOAD_PULL
  if parse_choice "$REPLY" never missing; then CFG_PULL=$REPLY; else problem "never or missing"; fi
  setting_value OLLAMA_PRELOAD_BEST_EFFORT
  if parse_bool "$REPLY"; then
    CFG_BEST_EFFORT=$REPLY
  else
    problem "true or false (also 1/0, yes/no, on/off)"
  fi
  setting_value OLLAMA_PRELOAD_LOG_FORMAT
  if parse_choice "$REPLY" text json; then CFG_LOG_FORMAT=$REPLY; else problem "text or json"; fi
  setting_value OLLAMA_PRELOAD_VERBOSE
  if parse_bool "$REPLY"; then CFG_VERBOSE=$REPLY; else problem "true or false (also 1/0, yes/no, on/off)"; fi
  setting_value OLLAMA_MAX_LOADED_MODELS
  if [[ -n $REPLY ]]; then
    if parse_int_range "$REPLY" 0 1000000; then
      CFG_MAX_LOADED=$REPLY
    else
      problem "a non-negative integer (0 = automatic)"
    fi
  fi
  raw OLLAMA_PRELOAD_REPORT
  strip "$RAW_VALUE"
  CFG_REPORT_PATH=$REPLY
  if [[ $CFG_REPORT_PATH == */ ]]; then
    py_repr "$RAW_VALUE"
    CONFIG_PROBLEMS+=("$RAW_LABEL=$REPLY is a directory; accepted: a file path")
  fi
  raw OLLAMA_API_KEY
  strip "$RAW_VALUE"
  CFG_API_KEY=$REPLY
  if [[ $CFG_API_KEY == *[[:cntrl:]]* ]]; then
    # The value is a secret: name the problem, never the value.
    CONFIG_PROBLEMS+=("$RAW_LABEL contains a control character (a line break?), which cannot go into an HTTP header; accepted: the key on one line")
  fi
  if ((CFG_CONCURRENCY > 1)); then
    CONFIG_WARNINGS+=("OLLAMA_PRELOAD_CONCURRENCY=$CFG_CONCURRENCY is ignored: the bash fallback warms one model at a time")
  fi
  ((${#CONFIG_PROBLEMS[@]} == 0))
}

# ======================================================================================================
# client.py: one HTTP request through curl; typed outcome in RESP_* (success) or ERR_* (failure)
# ======================================================================================================

# start_request METHOD PATH PAYLOAD CONNECT_NS READ_NS [stream]: launch curl in the background
# (CURL_PID), the body going to $WORK_DIR/body. Waiting for it with `wait` keeps signals handled at once.
# READ_NS bounds the whole answer, or with `stream` the silence between two bytes (requests' read timeout).
start_request() {
  local method=$1 path=$2 payload=$3 connect_ns=$4 read_ns=$5 stream=${6:-}
  REQUEST_URL=$CFG_BASE_URL$path REQUEST_PATH=$path REQUEST_CONNECT_NS=$connect_ns REQUEST_READ_NS=$read_ns
  ns_to_seconds "$connect_ns"
  local -a args=(--disable --silent --show-error --globoff --proto "=http,https" --connect-timeout "$REPLY"
    --request "$method" --header "User-Agent: ollama-preloader/$VERSION" --output "$WORK_DIR/body"
    --dump-header "$WORK_DIR/headers" --write-out '%{http_code}' --url "$REQUEST_URL")
  if [[ -n $stream ]]; then
    args+=(--no-buffer --speed-limit 1 --speed-time $(((read_ns + NS_PER_S - 1) / NS_PER_S)))
  else
    ns_to_seconds "$read_ns"
    args+=(--max-time "$REPLY")
  fi
  if [[ -n $payload ]]; then
    printf '%s' "$payload" >"$WORK_DIR/request"
    args+=(--header "Content-Type: application/json" --data-binary "@$WORK_DIR/request")
  fi
  if ((CFG_VERBOSE)); then printf '%s.client: %s %s %s\n' "$TOOL" "$method" "$path" "$payload" >&2; fi
  : >"$WORK_DIR/body"
  : >"$WORK_DIR/headers"
  if [[ -n $CFG_API_KEY ]]; then
    # The key reaches curl through a pipe written by the printf builtin: never in any process's arguments
    # (which every user of the machine can see), never on disk.
    curl "${args[@]}" --header "@"<(printf 'Authorization: Bearer %s\n' "$CFG_API_KEY") \
      >"$WORK_DIR/status" 2>"$WORK_DIR/stderr" </dev/null &
  else
    curl "${args[@]}" >"$WORK_DIR/status" 2>"$WORK_DIR/stderr" </dev/null &
  fi
  CURL_PID=$!
}

# finish_request: wait for the curl started by start_request and classify the outcome. Status 0 with
# RESP_STATUS/RESP_BODY on an answer below 400; status 1 with ERR_KIND (unreachable|timeout|response|
# error), ERR_MSG (the package's str(exc)), ERR_STATUS and ERR_TEXT (the server's own words) otherwise.
finish_request() {
  local rc=0 status="" stderr="" reason="" url=$REQUEST_URL
  RESP_STATUS=0 RESP_BODY="" ERR_KIND="" ERR_MSG="" ERR_STATUS=0 ERR_TEXT="" ERR_TIMEOUT_NS=0
  wait "$CURL_PID" || rc=$?
  CURL_PID=""
  IFS= read -r status <"$WORK_DIR/status" || true
  IFS= read -r -d '' stderr <"$WORK_DIR/stderr" || true
  IFS= read -r -d '' RESP_BODY <"$WORK_DIR/body" || true
  if ((rc != 0)); then
    case $rc in
      28)
        ERR_KIND=timeout
        if [[ $stderr == *"Operation timed out"* || $stderr == *"Operation too slow"* ]]; then
          ERR_TIMEOUT_NS=$REQUEST_READ_NS
          format_g "$REQUEST_READ_NS"
          ERR_MSG="$url did not answer within $REPLY s"
        else
          ERR_TIMEOUT_NS=$REQUEST_CONNECT_NS
          format_g "$REQUEST_CONNECT_NS"
          ERR_MSG="no connection to $url within $REPLY s"
        fi
        ;;
      6) ERR_KIND=unreachable ERR_MSG="cannot reach $url: name or service not known" ;;
      7)
        ERR_KIND=unreachable
        if [[ $stderr == *"No route to host"* ]]; then
          ERR_MSG="cannot reach $url: no route to host"
        else
          ERR_MSG="cannot reach $url: connection refused"
        fi
        ;;
      52) ERR_KIND=unreachable ERR_MSG="cannot reach $url: remote end closed connection" ;;
      55 | 56)
        ERR_KIND=unreachable
        if [[ $stderr == *"reset"* ]]; then
          ERR_MSG="cannot reach $url: connection reset"
        else
          ERR_MSG="cannot reach $url: connection aborted"
        fi
        ;;
      *)
        strip "${stderr#curl: }"
        ERR_KIND=error ERR_MSG="request to $url failed: ${REPLY:-curl exit status $rc}"
        ;;
    esac
    return 1
  fi
  RESP_STATUS=$((10#${status:-0}))
  if ((RESP_STATUS >= 400)); then
    ERR_KIND=response ERR_STATUS=$RESP_STATUS
    if [[ $RESP_BODY =~ ^[[:space:]]*\{ ]] && json_string_field "$RESP_BODY" error; then
      ERR_TEXT=$REPLY
    else
      # A reverse proxy or Ollama's Host-header guard (403, empty body) answers without Ollama's JSON.
      strip "$RESP_BODY"
      ERR_TEXT=${REPLY:0:200}
      if [[ -z $ERR_TEXT ]]; then
        local line
        while IFS= read -r line; do
          line=${line%$'\r'}
          if [[ $line =~ ^HTTP/[0-9.]+[[:space:]]+[0-9]{3}[[:space:]]*(.*)$ ]]; then reason=${BASH_REMATCH[1]}; fi
        done <"$WORK_DIR/headers"
        ERR_TEXT=${reason:-no error text}
      fi
    fi
    ERR_MSG="$ERR_TEXT (HTTP $RESP_STATUS)"
    return 1
  fi
  return 0
}

# ollama_request METHOD PATH PAYLOAD CONNECT_NS READ_NS: one request whose answer is one JSON object.
ollama_request() {
  start_request "$@"
  finish_request || return 1
  if [[ ! $RESP_BODY =~ ^[[:space:]]*[{[] ]]; then
    py_repr "${RESP_BODY:0:200}"
    ERR_KIND=error ERR_MSG="$REQUEST_PATH answered HTTP $RESP_STATUS with a body that is not JSON: $REPLY"
    return 1
  fi
}

# is_transient: worth another attempt, judged from the last ERR_* (warm.py is_transient).
is_transient() {
  local text
  case $ERR_KIND in
    unreachable) return 0 ;;
    response)
      case $ERR_STATUS in 499 | 502 | 503 | 504) return 0 ;; esac
      ((ERR_STATUS >= 500)) || return 1
      for text in "${DETERMINISTIC_5XX[@]}"; do
        if [[ $ERR_TEXT == *"$text"* ]]; then return 1; fi
      done
      return 0
      ;;
  esac
  return 1
}

# ======================================================================================================
# wait.py: poll GET /api/version until it answers, within a deadline computed once
# ======================================================================================================

wait_for_server() {
  local start deadline remaining connect read attempt=0 backoff sleep_ns last_log now elapsed
  now_ns
  start=$REPLY
  deadline=$((start + CFG_WAIT_TIMEOUT_NS))
  last_log=$start
  format_seconds "$CFG_WAIT_TIMEOUT_NS"
  local timeout_text=$REPLY
  json_quote "$CFG_BASE_URL"
  local url_json=$REPLY
  json_seconds "$CFG_WAIT_TIMEOUT_NS" 9
  log_info wait "" "waiting up to $timeout_text for the server at $CFG_BASE_URL" url "$url_json" \
    timeout_seconds "$REPLY"
  while true; do
    attempt=$((attempt + 1))
    now_ns
    remaining=$((deadline - REPLY))
    if ((remaining < 50000000)); then remaining=50000000; fi
    connect=$((remaining < ATTEMPT_CONNECT_NS ? remaining : ATTEMPT_CONNECT_NS))
    read=$((remaining < ATTEMPT_READ_NS ? remaining : ATTEMPT_READ_NS))
    if ollama_request GET /api/version "" "$connect" "$read"; then
      if json_string_field "$RESP_BODY" version; then SERVER_VERSION=$REPLY; else SERVER_VERSION=unknown; fi
      now_ns
      WAITED_NS=$((REPLY - start))
      format_seconds "$WAITED_NS"
      local waited_text=$REPLY
      json_quote "$SERVER_VERSION"
      local version_json=$REPLY
      json_seconds "$WAITED_NS"
      log_info ready "" "server ready after $waited_text (Ollama $SERVER_VERSION)" version "$version_json" \
        seconds "$REPLY"
      return 0
    fi
    if [[ $ERR_KIND == response ]] && ((ERR_STATUS < 500)); then
      # A 4xx is a real answer: waiting will not change it.
      case $ERR_STATUS in
        401) REPLY="A proxy in front of Ollama wants credentials: set OLLAMA_API_KEY" ;;
        403) REPLY="An Ollama bound to loopback refuses a non-local Host header: a proxy in between must send Host: localhost" ;;
        404) REPLY="This address answers HTTP but has no /api/version: check OLLAMA_HOST and its path prefix" ;;
        *) REPLY="Check that OLLAMA_HOST points at an Ollama server" ;;
      esac
      NOT_READY_MESSAGE="the server at $CFG_BASE_URL refused the health check: $ERR_MSG. $REPLY"
      return 1
    fi
    now_ns
    now=$REPLY
    if ((now >= deadline)); then break; fi
    # A line every few seconds, not one per attempt.
    if ((now - last_log >= LOG_EVERY_NS)); then
      last_log=$now
      elapsed=$((now - start))
      format_seconds "$elapsed"
      local elapsed_text=$REPLY
      json_seconds "$elapsed"
      local elapsed_json=$REPLY
      json_quote "$ERR_MSG"
      log_info waiting "" "still waiting for the server after $elapsed_text (attempt $attempt: $ERR_MSG)" \
        attempt "$attempt" seconds "$elapsed_json" error "$REPLY"
    fi
    # Backoff 0.1 s * 1.5^(attempt-1), capped at 0.25 s, never past the deadline.
    backoff=$WAIT_FIRST_NS
    local i
    for ((i = 1; i < attempt && backoff < WAIT_MAX_NS; i++)); do backoff=$((backoff * 3 / 2)); done
    if ((backoff > WAIT_MAX_NS)); then backoff=$WAIT_MAX_NS; fi
    sleep_ns=$((deadline - now))
    if ((backoff < sleep_ns)); then sleep_ns=$backoff; fi
    pause "$sleep_ns"
  done
  if [[ $ERR_KIND == response ]]; then
    # A proxy's 5xx while Ollama starts behind it, until the end.
    NOT_READY_MESSAGE="the server at $CFG_BASE_URL kept failing for $timeout_text: $ERR_MSG"
    return 1
  fi
  NOT_READY_MESSAGE="the server at $CFG_BASE_URL did not answer within $timeout_text ($attempt attempts; last: $ERR_MSG). Check that Ollama is running and that OLLAMA_HOST points at it, or raise OLLAMA_PRELOAD_WAIT_TIMEOUT for slow starts"
  return 1
}

# ======================================================================================================
# warm.py: find out what a model is, then load it the way it can be loaded
# ======================================================================================================

# with_retries INDEX WHAT COMMAND...: run COMMAND up to CFG_ATTEMPTS times while the failure is transient.
with_retries() {
  local index=$1 what=$2 attempt=1 wait_ns
  shift 2
  while true; do
    if "$@"; then return 0; fi
    if ((attempt >= CFG_ATTEMPTS)) || ! is_transient; then return 1; fi
    # tenacity's wait_exponential(multiplier=0.5, min=0.5, max=10)
    wait_ns=$(((1 << (attempt - 1)) * NS_PER_S / 2))
    if ((wait_ns > 10 * NS_PER_S)); then wait_ns=$((10 * NS_PER_S)); fi
    format_seconds "$wait_ns"
    local wait_text=$REPLY
    json_quote "$ERR_MSG"
    log_warning retry "${E_TEXT[index]}" "$what attempt $attempt failed ($ERR_MSG); retrying in $wait_text" \
      attempt "$attempt" error "$REPLY"
    pause "$wait_ns"
    attempt=$((attempt + 1))
  done
}

# show_model INDEX: POST /api/show; EMBEDDING_ONLY=1 for embedding-only models.
show_model() {
  local index=$1 capabilities model_info
  json_quote "${E_TEXT[index]}"
  ollama_request POST /api/show "{\"model\": $REPLY}" "$SHOW_CONNECT_NS" "$SHOW_READ_NS" || return 1
  EMBEDDING_ONLY=0
  if [[ $RESP_BODY =~ \"capabilities\"[[:space:]]*:[[:space:]]*\[([^]]*)\] ]]; then
    capabilities=${BASH_REMATCH[1]}
    if [[ $capabilities =~ \"embedding\" && ! $capabilities =~ \"completion\" ]]; then EMBEDDING_ONLY=1; fi
  elif json_object_field "$RESP_BODY" model_info; then
    # Servers before 0.6.4 have no capabilities: an embedding model's GGUF declares a pooling type.
    model_info=$REPLY
    if [[ $model_info =~ \.pooling_type\"[[:space:]]*: ]]; then EMBEDDING_ONLY=1; fi
  fi
  return 0
}

# pull_line INDEX LINE: one line of a streamed pull: remember an error, log progress every few seconds.
pull_line() {
  local line=$2 status completed total percent now
  [[ -n $line ]] || return 0
  if json_string_field "$line" error; then
    PULL_ERROR=$REPLY
    return 0
  fi
  json_number_field "$line" total || return 0
  total=${REPLY%%[.eE]*}
  json_number_field "$line" completed || return 0
  completed=${REPLY%%[.eE]*}
  ((total > 0)) || return 0
  now_ns
  now=$REPLY
  ((now - PULL_LAST_LOG >= PULL_LOG_EVERY_NS)) || return 0
  PULL_LAST_LOG=$now
  json_string_field "$line" status || REPLY=""
  status=$REPLY
  # f"{percent:.0f}": round half to even
  percent=$((completed * 100 / total))
  local remainder=$((completed * 100 % total))
  if ((2 * remainder > total || (2 * remainder == total && percent % 2 == 1))); then percent=$((percent + 1)); fi
  json_quote "$status"
  log_info pull-progress "${E_TEXT[$1]}" "pulling: $status $percent%" status "$REPLY" completed "$completed" \
    total "$total"
}

# pull_model INDEX: POST /api/pull, streamed, for a model the server lacks. Progress is read from the
# growing body file while curl runs (an fd keeps its offset, so each pass reads only the new lines).
pull_model() {
  local index=$1 model=${E_TEXT[$1]} start line partial="" alive fd
  log_info pulling "$model" "not on the server; pulling it (OLLAMA_PRELOAD_PULL=missing)"
  now_ns
  start=$REPLY
  PULL_LAST_LOG=$start PULL_ERROR=""
  json_quote "$model"
  start_request POST /api/pull "{\"model\": $REPLY, \"stream\": true}" "$WARM_CONNECT_NS" "$CFG_WARM_TIMEOUT_NS" stream
  exec {fd}<"$WORK_DIR/body"
  while true; do
    alive=0
    if kill -0 "$CURL_PID" 2>/dev/null; then alive=1; fi
    while IFS= read -r -u "$fd" line; do
      pull_line "$index" "$partial$line"
      partial=""
    done
    partial+=$line
    ((alive)) || break
    pause $((NS_PER_S / 4))
  done
  exec {fd}<&-
  pull_line "$index" "$partial"
  finish_request || return 1
  if [[ -n $PULL_ERROR ]]; then
    # An error line inside a streamed 200 says nothing about HTTP: the server's words alone.
    ERR_KIND=response ERR_STATUS=$RESP_STATUS ERR_TEXT=$PULL_ERROR ERR_MSG=$PULL_ERROR
    return 1
  fi
  now_ns
  local elapsed=$((REPLY - start))
  format_seconds "$elapsed"
  local text=$REPLY
  json_seconds "$elapsed"
  log_info pulled "$model" "pulled in $text" seconds "$REPLY"
  O_PULLED[$1]=1
}

# inspect_model INDEX: what the model can do (EMBEDDING_ONLY), pulling it first when allowed.
inspect_model() {
  local index=$1
  if with_retries "$index" show show_model "$index"; then return 0; fi
  if [[ $ERR_KIND != response || $ERR_STATUS != 404 || $CFG_PULL != missing ]]; then return 1; fi
  pull_model "$index" || return 1
  with_retries "$index" show show_model "$index"
}

# effective_keep_alive INDEX: the entry's own keep-alive, else the run's (WIRE/STATE; empty when neither).
effective_keep_alive() {
  if [[ -n ${E_KA_WIRE[$1]} ]]; then
    EFFECTIVE_KA_WIRE=${E_KA_WIRE[$1]} EFFECTIVE_KA_STATE=${E_KA_STATE[$1]}
  else
    EFFECTIVE_KA_WIRE=$CFG_KEEP_ALIVE_WIRE EFFECTIVE_KA_STATE=$CFG_KEEP_ALIVE_STATE
  fi
}

# send_warm INDEX KIND: the warm request itself: /api/embed or /api/generate, with a long read timeout.
send_warm() {
  local index=$1 kind=$2 body options
  effective_keep_alive "$index"
  json_quote "${E_TEXT[index]}"
  body="{\"model\": $REPLY"
  if [[ $kind == embed ]]; then
    json_quote "${E_PROMPT[index]:-$DEFAULT_EMBED_INPUT}"
    body+=", \"input\": $REPLY"
    if [[ -n ${E_OPTIONS[index]} ]]; then body+=", \"options\": {${E_OPTIONS[index]}}"; fi
    if [[ -n $EFFECTIVE_KA_WIRE ]]; then body+=", \"keep_alive\": $EFFECTIVE_KA_WIRE"; fi
  else
    json_quote "${E_PROMPT[index]:-$DEFAULT_PROMPT}"
    body+=", \"prompt\": $REPLY, \"stream\": false"
    # Our own prompt goes in raw: through the chat template it becomes ~10 tokens that cost as much as the
    # load on a small CPU model (BENCHMARKS.md); an entry's own prompt or think goes through the template.
    if [[ -z ${E_PROMPT[index]} && -z ${E_THINK[index]} ]]; then body+=", \"raw\": true"; fi
    options=${E_OPTIONS[index]}
    # The entry's own num_predict wins over the run's.
    if [[ ! $options =~ (^|, )\"num_predict\": ]]; then options="\"num_predict\": $CFG_NUM_PREDICT${options:+, $options}"; fi
    body+=", \"options\": {$options}"
    if [[ -n $EFFECTIVE_KA_WIRE ]]; then body+=", \"keep_alive\": $EFFECTIVE_KA_WIRE"; fi
    if [[ -n ${E_THINK[index]} ]]; then body+=", \"think\": ${E_THINK[index]}"; fi
  fi
  body+="}"
  ollama_request POST "/api/$kind" "$body" "$WARM_CONNECT_NS" "$CFG_WARM_TIMEOUT_NS"
}

# explain_failure INDEX: the server's words plus what the user can do about them, into REPLY.
explain_failure() {
  local model=${E_TEXT[$1]}
  if [[ $ERR_KIND == response && $ERR_STATUS == 404 && $CFG_PULL == never ]]; then
    REPLY="not found on the server ($ERR_TEXT). Pull it first (ollama pull $model) or set OLLAMA_PRELOAD_PULL=missing"
  elif [[ $ERR_KIND == timeout ]] && ((ERR_TIMEOUT_NS >= CFG_WARM_TIMEOUT_NS)); then
    format_seconds "$ERR_TIMEOUT_NS"
    REPLY="no answer within $REPLY; the load may still be slow. Raise OLLAMA_PRELOAD_WARM_TIMEOUT (and the server's OLLAMA_LOAD_TIMEOUT) for large models"
  elif [[ $ERR_KIND == response && $ERR_STATUS == 403 && -z ${ERR_TEXT//[Forbiden ]/} ]]; then
    REPLY="HTTP 403 with no explanation: a loopback-bound Ollama refuses requests whose Host header is not local; if a proxy is in between, have it send Host: localhost"
  elif [[ $ERR_KIND == unreachable ]]; then
    REPLY="$ERR_MSG (if the server closed the connection mid-request it may have crashed: see its log)"
  elif [[ $ERR_KIND == response && $ERR_STATUS == 401 ]]; then
    REPLY="$ERR_MSG — the proxy in front of Ollama wants credentials: set OLLAMA_API_KEY"
  else
    REPLY=$ERR_MSG
  fi
}

# warm_model INDEX: warm one listed model and record its outcome (O_* arrays).
warm_model() {
  local index=$1 model=${E_TEXT[$1]} kind start seconds load_ns="" load_text="" load_json=null
  if ((E_CLOUD[index])); then
    log_info skipped "$model" "skipped: cloud model, served by ollama.com; nothing to load here"
    record_outcome "$index" skipped "" "" "" "cloud model"
    return 0
  fi
  if ! inspect_model "$index"; then
    fail_model "$index"
    return 0
  fi
  if ((EMBEDDING_ONLY)); then kind=embed; else kind=generate; fi
  log_info warming "$model" "warming via /api/$kind" kind "\"$kind\""
  now_ns
  start=$REPLY
  if ! with_retries "$index" warm send_warm "$index" "$kind"; then
    fail_model "$index"
    return 0
  fi
  now_ns
  seconds=$((REPLY - start))
  if json_number_field "$RESP_BODY" load_duration; then
    load_ns=${REPLY%%[.eE]*}
    format_seconds "$load_ns"
    load_text="; server load $REPLY"
    json_seconds "$load_ns"
    load_json=$REPLY
  fi
  format_seconds "$seconds"
  local seconds_text=$REPLY
  json_seconds "$seconds"
  log_info warmed "$model" "warmed in $seconds_text ($kind$load_text)" kind "\"$kind\"" seconds "$REPLY" \
    load_seconds "$load_json"
  effective_keep_alive "$index"
  record_outcome "$index" warmed "$kind" "$seconds" "$load_ns" "" "$EFFECTIVE_KA_STATE"
}

fail_model() {
  local index=$1
  explain_failure "$index"
  local message=$REPLY
  json_quote "$message"
  log_error failed "${E_TEXT[index]}" "failed: $message" error "$REPLY"
  record_outcome "$index" failed "" "" "" "$message"
}

# record_outcome INDEX OUTCOME KIND SECONDS_NS LOAD_NS ERROR [KEEP_ALIVE_STATE]
record_outcome() {
  O_OUTCOME[$1]=$2 O_KIND[$1]=$3 O_SECONDS_NS[$1]=$4 O_LOAD_NS[$1]=$5 O_ERROR[$1]=$6 O_KA_STATE[$1]=${7:-}
  DONE_ORDER+=("$1")
}

# warm_all: every listed model, in listed order (one at a time: Ollama loads one model at a time anyway).
warm_all() {
  local index
  for index in "${!E_TEXT[@]}"; do
    warm_model "$index"
  done
}

# ======================================================================================================
# verify.py: one GET /api/ps snapshot decides whether each warmed model is still loaded
# ======================================================================================================

# list_running: GET /api/ps (3 attempts on transient failures) into the RUNNING_* arrays.
list_running() {
  local attempt=1 item name models
  while ! ollama_request GET /api/ps "" "$PS_CONNECT_NS" "$PS_READ_NS"; do
    if ((attempt >= 3)) || ! is_transient; then return 1; fi
    pause $((attempt * NS_PER_S / 2))
    attempt=$((attempt + 1))
  done
  RUNNING_NAMES=() RUNNING_SIZE=() RUNNING_VRAM=() RUNNING_EXPIRES=() RUNNING_CONTEXT=()
  json_object_field "$RESP_BODY" models || return 0
  models=$REPLY
  json_array_items "$models" || return 1
  for item in "${ITEMS[@]}"; do
    name=""
    if json_string_field "$item" name; then name=$REPLY; fi
    if [[ -z $name ]] && json_string_field "$item" model; then name=$REPLY; fi
    RUNNING_NAMES+=("$name")
    if json_number_field "$item" size; then RUNNING_SIZE+=("${REPLY%%[.eE]*}"); else RUNNING_SIZE+=(0); fi
    if json_number_field "$item" size_vram; then RUNNING_VRAM+=("${REPLY%%[.eE]*}"); else RUNNING_VRAM+=(0); fi
    if json_string_field "$item" expires_at; then RUNNING_EXPIRES+=("$REPLY"); else RUNNING_EXPIRES+=(""); fi
    if json_number_field "$item" context_length; then RUNNING_CONTEXT+=("$REPLY"); else RUNNING_CONTEXT+=(""); fi
  done
}

# placement SIZE SIZE_VRAM: where a model sits, as `ollama ps` prints it, into REPLY.
placement() {
  local size=$1 vram=$2 gpu remainder
  if ((size <= 0 || vram <= 0)); then
    REPLY="100% CPU"
  elif ((vram >= size)); then
    REPLY="100% GPU"
  else
    # round(100 * vram / size), halves to even like Python's round()
    gpu=$((100 * vram / size))
    remainder=$((100 * vram % size))
    if ((2 * remainder > size || (2 * remainder == size && gpu % 2 == 1))); then gpu=$((gpu + 1)); fi
    REPLY="$((100 - gpu))%/$gpu% CPU/GPU"
  fi
}

# describe_expiry EXPIRES_AT: 'forever', 'in 4m59s', or empty when unknown, into REPLY.
describe_expiry() {
  if [[ -z $1 ]] || ! parse_timestamp "$1"; then
    REPLY=""
    return 0
  fi
  if ((TS_YEAR >= FOREVER_YEAR)); then
    REPLY=forever
    return 0
  fi
  local expires=$REPLY
  now_ns
  local left=$(((expires - REPLY / NS_PER_S) * NS_PER_S + TS_FRAC_NS - REPLY % NS_PER_S))
  format_seconds "$left"
  REPLY="in $REPLY"
}

# verify_residency: the R_* arrays for every warmed model, from one /api/ps snapshot.
verify_residency() {
  local index found r warmed_names="" loaded_names="" count=0
  local -A loaded=()
  for r in "${!RUNNING_NAMES[@]}"; do
    model_key "${RUNNING_NAMES[r]}"
    if [[ -z ${loaded[$REPLY]+set} ]]; then loaded[$REPLY]=$r; fi
    loaded_names+="${loaded_names:+, }${RUNNING_NAMES[r]}"
  done
  for index in "${DONE_ORDER[@]}"; do
    if [[ ${O_OUTCOME[index]} == warmed ]]; then
      warmed_names+="${warmed_names:+, }${E_TEXT[index]}"
      count=$((count + 1))
    fi
  done
  for index in "${DONE_ORDER[@]}"; do
    [[ ${O_OUTCOME[index]} == warmed ]] || continue
    found=${loaded[${E_KEY[index]}]:-}
    if [[ -n $found ]]; then
      R_RESIDENT[index]=1
      placement "${RUNNING_SIZE[found]}" "${RUNNING_VRAM[found]}"
      R_WHERE[index]=$REPLY
      describe_expiry "${RUNNING_EXPIRES[found]}"
      R_EXPIRES[index]=$REPLY
      R_CONTEXT[index]=${RUNNING_CONTEXT[found]}
      R_MESSAGE[index]=""
    elif [[ ${O_KA_STATE[index]} == unload ]]; then
      R_RESIDENT[index]=0 R_WHERE[index]="" R_EXPIRES[index]="" R_CONTEXT[index]=""
      R_MESSAGE[index]="unloaded as asked (keep_alive 0)"
    else
      R_RESIDENT[index]=0 R_WHERE[index]="" R_EXPIRES[index]="" R_CONTEXT[index]=""
      R_MESSAGE[index]="warmed, but no longer loaded: the server unloaded it, most likely to make room for another model. This run warmed $count model(s) ($warmed_names); loaded now: ${loaded_names:-nothing}. Ollama keeps at most OLLAMA_MAX_LOADED_MODELS models (default 3 per GPU, 3 on CPU) and evicts when memory runs short: raise that setting on the server, list fewer models, or give it more memory"
    fi
  done
}

# report_residency: one line per warmed model.
report_residency() {
  local index model where_json expires_json context_json
  for index in "${DONE_ORDER[@]}"; do
    [[ -n ${R_RESIDENT[index]:-} ]] || continue
    model=${E_TEXT[index]}
    if ((R_RESIDENT[index])); then
      json_or_null "${R_WHERE[index]}"
      where_json=$REPLY
      json_or_null "${R_EXPIRES[index]}"
      expires_json=$REPLY
      context_json=${R_CONTEXT[index]:-null}
      log_info resident "$model" "resident (${R_WHERE[index]}, expires ${R_EXPIRES[index]:-unknown})" \
        where "$where_json" expires "$expires_json" context_length "$context_json"
    elif [[ ${O_KA_STATE[index]} == unload ]]; then
      log_info unloaded "$model" "${R_MESSAGE[index]}"
    else
      log_error not-resident "$model" "not resident: ${R_MESSAGE[index]}"
    fi
  done
}

# ======================================================================================================
# report.py: one row per listed model, a summary table for people, a JSON document for machines
# ======================================================================================================

# model_row INDEX: ROW_* for one listed model (pending when never reached).
model_row() {
  local index=$1
  ROW_KIND="" ROW_SECONDS="" ROW_LOAD="" ROW_RESIDENT="" ROW_WHERE="" ROW_EXPIRES="" ROW_CONTEXT="" ROW_ERROR=""
  if [[ -z ${O_OUTCOME[index]:-} ]]; then
    ROW_OUTCOME=pending
    return 0
  fi
  ROW_OUTCOME=${O_OUTCOME[index]} ROW_KIND=${O_KIND[index]} ROW_SECONDS=${O_SECONDS_NS[index]}
  ROW_LOAD=${O_LOAD_NS[index]} ROW_ERROR=${O_ERROR[index]}
  if [[ -n ${R_RESIDENT[index]:-} ]]; then
    ROW_RESIDENT=${R_RESIDENT[index]} ROW_WHERE=${R_WHERE[index]} ROW_EXPIRES=${R_EXPIRES[index]}
    ROW_CONTEXT=${R_CONTEXT[index]}
    if ((!R_RESIDENT[index])) && [[ ${O_KA_STATE[index]} != unload ]]; then
      ROW_OUTCOME=not-resident ROW_ERROR=${R_MESSAGE[index]}
    fi
  fi
}

row_ok() { [[ $ROW_OUTCOME == warmed || $ROW_OUTCOME == skipped ]]; }

models_status() {
  local index
  for index in "${!E_TEXT[@]}"; do
    model_row "$index"
    row_ok || return 1
  done
}

# verdict STATUS NOTE: the last line of the summary, into REPLY.
verdict() {
  local status=$1 note=$2 index ready=0 skipped=0 failed="" text
  for index in "${!E_TEXT[@]}"; do
    model_row "$index"
    if [[ $ROW_OUTCOME == warmed ]]; then ready=$((ready + 1)); fi
    if [[ $ROW_OUTCOME == skipped ]]; then skipped=$((skipped + 1)); fi
    if ! row_ok; then failed+="${failed:+, }${E_TEXT[index]}"; fi
  done
  text="$ready of ${#E_TEXT[@]} model(s) warmed and resident"
  if ((skipped)); then text+=", $skipped skipped"; fi
  if [[ -n $failed ]]; then text+="; not ready: $failed"; fi
  if [[ -n $note ]]; then text+="; $note"; fi
  text+=" (exit $status)"
  if ((CFG_BEST_EFFORT && status == 0)); then text+=" (best effort: reported as success)"; fi
  REPLY=$text
}

# report_json STATUS NOTE INDENT: the run's report (report.py Report.to_json) into REPLY; INDENT 1 is
# json.dumps(indent=2) layout, 0 one line.
report_json() {
  local status=$1 note=$2 pretty=$3 index nl="" i1="" i2="" i3="" sep=", " colon=": " items="" row
  if ((pretty)); then nl=$'\n' i1="  " i2="    " i3="      " sep=","; fi
  local -a fields
  for index in "${!E_TEXT[@]}"; do
    model_row "$index"
    fields=()
    json_quote "${E_TEXT[index]}"
    fields+=("\"model\"$colon$REPLY")
    json_or_null "$ROW_KIND"
    fields+=("\"kind\"$colon$REPLY")
    fields+=("\"outcome\"$colon\"$ROW_OUTCOME\"")
    if [[ -n $ROW_SECONDS ]]; then json_seconds "$ROW_SECONDS" 6; else REPLY=null; fi
    fields+=("\"seconds\"$colon$REPLY")
    if [[ -n $ROW_LOAD ]]; then json_seconds "$ROW_LOAD" 9; else REPLY=null; fi
    fields+=("\"load_seconds\"$colon$REPLY")
    case $ROW_RESIDENT in 1) REPLY=true ;; 0) REPLY=false ;; *) REPLY=null ;; esac
    fields+=("\"resident\"$colon$REPLY")
    json_or_null "$ROW_WHERE"
    fields+=("\"where\"$colon$REPLY")
    json_or_null "$ROW_EXPIRES"
    fields+=("\"expires\"$colon$REPLY")
    fields+=("\"context_length\"$colon${ROW_CONTEXT:-null}")
    json_or_null "$ROW_ERROR"
    fields+=("\"error\"$colon$REPLY")
    if [[ -n ${O_PULLED[index]:-} ]]; then REPLY=true; else REPLY=false; fi
    fields+=("\"pulled\"$colon$REPLY")
    row="{$nl"
    local f first=1
    for f in "${fields[@]}"; do
      if ((!first)); then row+="$sep$nl"; fi
      if ((!pretty && !first)); then :; fi
      row+="$i3$f"
      first=0
    done
    row+="$nl$i2}"
    if [[ -n $items ]]; then items+="$sep$nl"; fi
    items+="$i2$row"
  done
  local out="{$nl"
  json_quote "$CFG_BASE_URL"
  out+="$i1\"server\"$colon$REPLY$sep$nl"
  json_or_null "$SERVER_VERSION"
  out+="$i1\"server_version\"$colon$REPLY$sep$nl"
  if [[ -n $WAITED_NS ]]; then json_seconds "$WAITED_NS" 6; else REPLY=null; fi
  out+="$i1\"waited_seconds\"$colon$REPLY$sep$nl"
  if [[ -n $items ]]; then
    out+="$i1\"models\"${colon}[$nl$items$nl$i1]$sep$nl"
  else
    out+="$i1\"models\"${colon}[]$sep$nl"
  fi
  out+="$i1\"exit_status\"$colon$status$sep$nl"
  if ((CFG_BEST_EFFORT)); then REPLY=true; else REPLY=false; fi
  out+="$i1\"best_effort\"$colon$REPLY$sep$nl"
  json_or_null "$note"
  out+="$i1\"note\"$colon$REPLY$sep$nl"
  out+="$i1\"extra\"$colon{}$nl}"
  REPLY=$out
}

# print_summary STATUS NOTE: the table (model, kind, time, load, resident, where, expiry) and the verdict.
print_summary() {
  local status=$1 note=$2 index col line cell
  if [[ $CFG_LOG_FORMAT == json ]]; then
    report_json "$status" "$note" 0
    log_info summary "" "" report "$REPLY"
    return 0
  fi
  local -a cells=(MODEL KIND TIME LOAD RESIDENT WHERE EXPIRES) widths=(0 0 0 0 0 0 0)
  for index in "${!E_TEXT[@]}"; do
    model_row "$index"
    cells+=("${E_TEXT[index]}" "${ROW_KIND:--}")
    if [[ -n $ROW_SECONDS ]]; then format_seconds "$ROW_SECONDS"; else REPLY=-; fi
    cells+=("$REPLY")
    if [[ -n $ROW_LOAD ]]; then format_seconds "$ROW_LOAD"; else REPLY=-; fi
    cells+=("$REPLY")
    if [[ $ROW_OUTCOME == skipped ]]; then
      REPLY=skipped
    else
      case $ROW_RESIDENT in 1) REPLY=yes ;; 0) REPLY=NO ;; *) REPLY=- ;; esac
    fi
    cells+=("$REPLY" "${ROW_WHERE:--}" "${ROW_EXPIRES:--}")
  done
  for index in "${!cells[@]}"; do
    col=$((index % 7))
    if ((${#cells[index]} > widths[col])); then widths[col]=${#cells[index]}; fi
  done
  for ((index = 0; index < ${#cells[@]}; index += 7)); do
    line=""
    for col in {0..6}; do
      printf -v cell '%-*s' "${widths[col]}" "${cells[index + col]}"
      line+="${line:+  }$cell"
    done
    printf '%s\n' "${line%"${line##*[! ]}"}"
  done
  verdict "$status" "$note"
  printf '%s: %s\n' "$TOOL" "$REPLY"
}

# write_report STATUS NOTE: the JSON report to OLLAMA_PRELOAD_REPORT, atomically.
write_report() {
  local path=$CFG_REPORT_PATH dir
  [[ -n $path ]] || return 0
  report_json "$1" "$2" 1
  local document=$REPLY
  if [[ $path == */* ]]; then dir=${path%/*}; else dir=.; fi
  if ! { mkdir -p -- "${dir:-/}" 2>/dev/null && printf '%s\n' "$document" >"$path.tmp" 2>/dev/null &&
    mv -f -- "$path.tmp" "$path" 2>/dev/null; }; then
    log_error report "" "cannot write the report to $path"
  fi
}

# ======================================================================================================
# run.py / cli.py: the run, step by step, and the one place errors become exit statuses
# ======================================================================================================

announce() {
  local index names="" count=0 local_count=0
  local names_json=""
  for index in "${!E_TEXT[@]}"; do
    names+="${names:+, }${E_TEXT[index]}"
    json_quote "${E_TEXT[index]}"
    names_json+="${names_json:+, }$REPLY"
    count=$((count + 1))
    if ((!E_CLOUD[index])); then local_count=$((local_count + 1)); fi
  done
  json_quote "$CFG_BASE_URL"
  log_info start "" "$count model(s) to warm on $CFG_BASE_URL: $names" url "$REPLY" models "[$names_json]"
  if ((CFG_MAX_LOADED > 0 && local_count > CFG_MAX_LOADED)); then
    log_warning too-many-models "" "$local_count models listed but the server keeps at most $CFG_MAX_LOADED (OLLAMA_MAX_LOADED_MODELS): the first ones will be evicted by the last ones and the run will fail" \
      listed "$local_count" max_loaded_models "$CFG_MAX_LOADED"
  fi
}

# preload: announce, wait for the server, warm each model, verify residency (run.py preload).
preload() {
  local index any=0
  announce
  if ! wait_for_server; then
    log_error not-ready "" "$NOT_READY_MESSAGE"
    finish "$EXIT_SERVER_NOT_READY" "server not ready"
  fi
  warm_all
  for index in "${DONE_ORDER[@]}"; do
    if [[ ${O_OUTCOME[index]} == warmed ]]; then any=1; fi
  done
  if ((any)); then
    if ! list_running; then
      # As the package reports it: the error's class, then its message.
      local class
      case $ERR_KIND in
        unreachable) class=OllamaUnreachable ;;
        timeout) class=OllamaTimeout ;;
        response) class=OllamaResponseError ;;
        *) class=OllamaError ;;
      esac
      log_error internal-error "" "internal error: $class: $ERR_MSG"
      finish "$EXIT_INTERNAL" "internal error"
    fi
    verify_residency
    report_residency
  fi
  finish "$EXIT_OK" ""
}

# finish STATUS NOTE: final status (models' state, best effort), summary, report; then exit.
finish() {
  local status=$1 note=$2
  FINISHING=1
  trap - ERR
  trap '' TERM INT
  if ((status == EXIT_OK)) && ! models_status; then status=$EXIT_MODELS_NOT_READY; fi
  if ((CFG_BEST_EFFORT)) && ((status == EXIT_SERVER_NOT_READY || status == EXIT_MODELS_NOT_READY)); then
    status=$EXIT_OK
  fi
  print_summary "$status" "$note"
  write_report "$status" "$note"
  exit "$status"
}

# on_signal NAME STATUS: stop cleanly: abandon the request in flight, say what was done, exit 130/143.
on_signal() {
  local name=$1 status=$2 index done="" done_json=""
  trap '' TERM INT
  if [[ -n $CURL_PID ]]; then kill "$CURL_PID" 2>/dev/null || true; fi
  if [[ -n $SLEEP_PID ]]; then kill "$SLEEP_PID" 2>/dev/null || true; fi
  for index in "${DONE_ORDER[@]}"; do
    done+="${done:+, }${E_TEXT[index]}"
    json_quote "${E_TEXT[index]}"
    done_json+="${done_json:+, }$REPLY"
  done
  log_warning interrupted "" "interrupted by $name; done: ${done:-none}" "done" "[$done_json]"
  finish "$status" "interrupted by $name"
}

# on_internal_error STATUS LINE: an unexpected failure of the script itself is exit 1, never 2/3/4.
on_internal_error() {
  local status=$1 line=$2
  trap - ERR
  if ((FINISHING)); then exit "$EXIT_INTERNAL"; fi
  log_error internal-error "" "internal error: command failed with status $status at line $line of $PROG"
  finish "$EXIT_INTERNAL" "internal error"
}

cleanup() {
  if [[ -n $CURL_PID ]]; then kill "$CURL_PID" 2>/dev/null || true; fi
  if [[ -n $SLEEP_PID ]]; then kill "$SLEEP_PID" 2>/dev/null || true; fi
  if [[ -n $WORK_DIR && -d $WORK_DIR ]]; then rm -rf -- "$WORK_DIR"; fi
}

run() {
  local warning
  trap 'on_signal SIGTERM "$EXIT_SIGTERM"' TERM
  trap 'on_signal SIGINT "$EXIT_SIGINT"' INT
  trap 'on_internal_error "$?" "$LINENO"' ERR
  trap cleanup EXIT
  for warning in "${CONFIG_WARNINGS[@]}"; do log_warning config "" "$warning"; done
  if ! command -v curl >/dev/null 2>&1; then
    log_error internal-error "" "internal error: curl is required but was not found on PATH"
    exit "$EXIT_INTERNAL"
  fi
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/preloader.XXXXXX")
  # Neither the key nor curl's children need to inherit the key from the environment.
  export -n OLLAMA_API_KEY 2>/dev/null || true
  preload
}

usage() {
  local var flag help default
  printf 'usage: %s [-h] [--version]' "$PROG"
  for var in "${SETTING_VARS[@]}"; do
    if [[ -n ${SETTING_SWITCH[$var]:-} ]]; then
      printf ' [%s | --no-%s]' "${SETTING_FLAG[$var]}" "${SETTING_FLAG[$var]#--}"
    else
      printf ' [%s %s]' "${SETTING_FLAG[$var]}" "${SETTING_METAVAR[$var]}"
    fi
  done
  printf '\n\n%s\n\n%s\n' \
    "Load the models an Ollama server needs into memory, verify they stay loaded, and exit with a status a pipeline can trust. The bash fallback of ollama-preloader (needs only bash and curl). Every option can also be set by the environment variable named in its help; the flag wins." \
    "options:"
  printf '  %-28s %s\n' "-h, --help" "show this help message and exit" "--version" "show program's version number and exit"
  for var in "${SETTING_VARS[@]}"; do
    flag=${SETTING_FLAG[$var]}
    if [[ -n ${SETTING_SWITCH[$var]:-} ]]; then flag+=", --no-${flag#--}"; else flag+=" ${SETTING_METAVAR[$var]}"; fi
    default=${SETTING_DEFAULT[$var]:-}
    help="${SETTING_HELP[$var]}${default:+ Default: $default.} [env: $var]"
    printf '  %-28s %s\n' "$flag" "$help"
  done
  printf '\n%s\n' "exit statuses:
  0    every listed model warmed and resident
  1    unexpected internal error
  2    invalid configuration (nothing was sent to the server)
  3    the server never became healthy within the wait timeout
  4    at least one model failed to warm or is not resident afterwards
  130  interrupted by SIGINT;  143  interrupted by SIGTERM
With best effort, 3 and 4 become 0 (the log still says what failed)."
}

usage_error() {
  printf '%s: error: %s (see --help)\n' "$PROG" "$1" >&2
  exit "$EXIT_CONFIG"
}

# parse_args ARGS...: flags into FLAGS (keyed by variable), as the package's argparse does.
parse_args() {
  local arg var name value found
  while (($#)); do
    arg=$1
    shift
    case $arg in
      -h | --help)
        usage
        exit "$EXIT_OK"
        ;;
      --version)
        printf '%s %s\n' "$PROG" "$VERSION"
        exit "$EXIT_OK"
        ;;
    esac
    name=${arg%%=*}
    found=""
    for var in "${SETTING_VARS[@]}"; do
      if [[ -n ${SETTING_SWITCH[$var]:-} ]]; then
        if [[ $arg == "${SETTING_FLAG[$var]}" ]]; then FLAGS[$var]=true found=1; fi
        if [[ $arg == "--no-${SETTING_FLAG[$var]#--}" ]]; then FLAGS[$var]=false found=1; fi
      elif [[ $name == "${SETTING_FLAG[$var]}" ]]; then
        if [[ $arg == *=* ]]; then
          value=${arg#*=}
        else
          (($#)) || usage_error "argument $arg: expected one argument"
          value=$1
          shift
        fi
        FLAGS[$var]=$value found=1
      fi
      if [[ -n $found ]]; then break; fi
    done
    [[ -n $found ]] || usage_error "unrecognized arguments: $arg"
  done
}

main() {
  if ((BASH_VERSINFO[0] < 5)); then
    printf '%s: error: bash 5.0 or newer is required (this is %s)\n' "$TOOL" "$BASH_VERSION"
    exit "$EXIT_INTERNAL"
  fi
  parse_args "$@"
  if ! load_config; then
    local problem
    # The log format of the error lines: json when it was asked for and is itself valid.
    setting_value OLLAMA_PRELOAD_LOG_FORMAT
    if parse_choice "$REPLY" json; then CFG_LOG_FORMAT=json; else CFG_LOG_FORMAT=text; fi
    for problem in "${CONFIG_PROBLEMS[@]}"; do log_error config "" "$problem"; done
    log_error exit "" "invalid configuration; nothing was sent to the server (exit $EXIT_CONFIG)" \
      exit_status "$EXIT_CONFIG"
    exit "$EXIT_CONFIG"
  fi
  run
}

# Sourcing the script (for tests) defines the functions without running anything.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
