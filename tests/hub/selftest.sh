#!/usr/bin/env bash
# Self-test of the mock Hub (tests/hub/mockhub.py): every device endpoint, every strictness
# rule and every fault, driven with curl against the run-time CA, as a device would.
# Needs python3, openssl, curl, jq. Exits non-zero naming the first failed check.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
start=$(date +%s.%N)
checks=0
fail() { echo "selftest: FAIL: $*" >&2; [ -f "$work/body" ] && echo "last body: $(head -c 600 "$work/body")" >&2; exit 1; }
ok() { checks=$((checks + 1)); }

python3 "$here/mockhub.py" --make-ca "$work/certs" --host hub.test
python3 "$here/mockhub.py" serve --certs "$work/certs" --host hub.test --log "$work/log.jsonl" --proxy-port 0 \
  >"$work/ready" 2>"$work/stderr" &
pid=$!
for _ in $(seq 200); do [ -s "$work/ready" ] && break; kill -0 "$pid" || fail "mock died: $(cat "$work/stderr")"; sleep 0.05; done
[ -s "$work/ready" ] || fail "mock not ready"
P=$(jq .port "$work/ready"); C=$(jq .control "$work/ready"); PX=$(jq .proxy "$work/ready")
UA='Pantavisor/2 (Linux; x86_64) PV/0.1.0 Date/20261207'
TOKEN=

# hub METHOD PATH [BODY] [curl args..]: a device request; the status in $code, body in $work/body
hub() {
  local m=$1 p=$2 body=${3-}; shift $(($# < 3 ? $# : 3))
  local args=(-sS --cacert "$work/certs/ca.pem" --resolve "hub.test:$P:127.0.0.1" -A "$UA"
    -X "$m" -o "$work/body" -w '%{http_code}')
  [ -n "$TOKEN" ] && args+=(-H "Authorization: Bearer $TOKEN")
  [ -n "$body" ] && args+=(--data-binary "$body")
  [ -n "${CT-application/json}" ] && args+=(-H "Content-Type: ${CT-application/json}")
  code=$(curl "${args[@]}" "$@" "https://hub.test:$P$p" 2>"$work/curlerr") || code="curl-$?"
}
# ctl METHOD PATH [BODY]: the control API
ctl() { curl -sS -X "$1" "http://127.0.0.1:$C/control$2" ${3:+--data-binary "$3"}; }
expect() { [ "$code" = "$1" ] || fail "$2: status $code, expected $1"; ok; }
has() { jq -e "$1" "$work/body" >/dev/null || fail "$2: body does not satisfy $1"; ok; }

# --- transport (8.1): the CA verifies the server; a wrong host name is refused by curl
ctl POST /cert '{"cert":"wrong"}' >/dev/null
hub POST /devices/; [ "$code" = curl-60 ] || fail "wrong-name cert accepted ($code)"; ok
grep -q '"event": "no-request"' "$work/log.jsonl" || fail "refused connection not logged"; ok
ctl POST /cert '{"cert":"good"}' >/dev/null
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P/devices/" 2>/dev/null) || code=refused
[ "$code" != 200 ] || fail "plain HTTP answered on the TLS port"; ok

# --- registration and claiming (8.2)
hub POST /devices/
expect 200 register; has '.owner == "" and (.challenge | length > 0) and (.prn | startswith("prn:::devices:/"))' register
ID=$(jq -r .id "$work/body"); PRN=$(jq -r .prn "$work/body"); SECRET=$(jq -r .secret "$work/body")
CHALLENGE=$(jq -r .challenge "$work/body")
hub POST /devices/ '' -H 'Pantahub-Devices-Auto-Token-V1: nosuch'; expect 400 "unknown auto-token"
ctl POST /autotokens '{"token":"factory1","user-meta":{"fleet":"a"}}' >/dev/null
hub POST /devices/ '' -H 'Pantahub-Devices-Auto-Token-V1: factory1'
expect 200 auto-claim; has '.owner == "prn:::accounts:/mockuser" and .challenge == null and ."user-meta".fleet == "a"' auto-claim
hub POST /devices/ '{"bogus":1}'; expect 400 "register, unknown field"
hub GET "/devices/$ID"; expect 401 "no bearer"; has '.Error == "Not Authorized"' "no bearer"

# --- session (8.3)
login() { TOKEN=; hub POST /auth/login "{\"username\":\"$PRN\",\"password\":\"$SECRET\"}"; expect 200 login; TOKEN=$(jq -r .token "$work/body"); }
hub POST /auth/login "{\"username\":\"$PRN\",\"password\":\"nope\"}"; expect 401 "wrong secret"
hub POST /auth/login "{\"username\":\"$PRN\",\"password\":\"$SECRET\",\"scope\":\"x\"}"; expect 400 "login, unknown field"
grep -q "unknown field 'scope'" "$work/body" || fail "400 does not name the field"; ok
CT=text/plain hub POST /auth/login "{\"username\":\"$PRN\",\"password\":\"$SECRET\"}"; expect 415 "login, text/plain"
has '.Error == "Bad Content-Type or charset, expected '"'"'application/json'"'"'"' 415
code=$(curl -sS --cacert "$work/certs/ca.pem" -o /dev/null -w '%{http_code}' -A '' -X POST -H 'Content-Type: application/json' \
  --data '{}' "https://localhost:$P/auth/login"); expect 403 "no User-Agent"
login
hub GET "/devices/$ID"; expect 200 "device info"; has ".id == \"$ID\" and .owner == \"\" and .challenge == \"$CHALLENGE\"" "device info"
hub GET /devices/0123456789abcdef01234567; expect 403 "another device"
hub POST /trails/ '{}'; expect 403 "unclaimed trail"; has '.error == "Device needs an owner"' "unclaimed trail"
[ "$(ctl POST "/devices/$ID/claim" '{"challenge":"wrong"}' | jq -r .error)" = "No Access to Device" ] || fail "wrong challenge claimed"; ok
[ "$(ctl POST "/devices/$ID/claim" "{\"challenge\":\"$CHALLENGE\"}" | jq -r .owner)" = "prn:::accounts:/mockuser" ] || fail claim; ok
hub GET "/devices/$ID"; has '.owner != "" and .challenge == null' claimed
hub POST /trails/ '{}'; expect 403 "token from before the claim"
login

# --- first sync: objects and trail (8.5)
printf 'factory object bytes\n%.0s' $(seq 300) >"$work/obj"
SHA=$(sha256sum "$work/obj" | cut -d' ' -f1); SIZE=$(stat -c %s "$work/obj")
hub POST /objects/ "{\"objectname\":\"bsp/kernel.img\",\"size\":$SIZE,\"sha256sum\":\"$SHA\"}"; expect 400 "size as a number"
hub POST /objects/ "{\"objectname\":\"bsp/kernel.img\",\"size\":\"$SIZE\",\"sha256sum\":\"$SHA\"}"
expect 200 "object post"; grep -q '\\u0026' "$work/body" || fail "signed URL not Go-escaped"; ok
PUTPATH=$(jq -r '."signed-puturl"' "$work/body" | sed 's|^https://[^/]*||')
hub PUT "$PUTPATH" 'not the object'; expect 400 "upload of other bytes"
hub PUT "$PUTPATH" '' --data-binary "@$work/obj"; expect 200 "upload, labelled application/json as upstream's"
hub PUT "${PUTPATH/signature=/signature=0}" '' --data-binary "@$work/obj"; expect 403 "bad put signature"
hub POST /objects/ "{\"objectname\":\"bsp/kernel.img\",\"size\":\"$SIZE\",\"sha256sum\":\"$SHA\"}"; expect 409 "object already there"
hub GET /trails/; expect 200 "trails"; has 'length == 0' "no trail yet"
hub POST /trails/ '{"#spec":"pantavisor-service-system@1","bsp/kernel.img":"'"$(printf 1%.0s $(seq 64))"'"}'
expect 500 "trail naming an object not uploaded"
hub POST /trails/ '{"#spec":"other@1"}'; expect 500 "trail of an unknown spec"
STATE='{"#spec": "pantavisor-service-system@1",  "bsp/kernel.img": "'$SHA'", "a/run.json": {"x":[1, 2]}}'
hub POST /trails/ "$STATE"; expect 200 "first sync"
[ "$(ctl GET "/devices/$ID/trail" | jq -j .raw)" = "$STATE" ] || fail "factory state not byte-exact"; ok
hub POST /trails/ "$STATE"; expect 500 "second trail"
hub GET /trails/; has "length == 1 and .[0].\"factory-state\".\"bsp/kernel.img\" == \"$SHA\"" trails

# --- steps and the $in filter (5.4, 8.5), exactly as upstream's query string
NEWOBJ=$(printf 'new revision object %.0s' $(seq 500) | base64 -w0)
NEWSHA=$(printf 'new revision object %.0s' $(seq 500) | sha256sum | cut -d' ' -f1)
ctl POST "/devices/$ID/steps" "{\"rev\":1,\"state\":{\"#spec\":\"pantavisor-service-system@1\",\"z.json\":1,\"a\":\"$NEWSHA\"},\"objects\":[\"$NEWOBJ\"],\"commit-msg\":\"one\"}" | jq -e .rev >/dev/null || fail "step 1"; ok
ctl POST "/devices/$ID/steps" '{"rev":3,"state":{"#spec":"pantavisor-service-system@1","a":"'"$SHA"'0"}}' | grep -q 'not on the Hub' || fail "step naming a missing object"; ok
ctl POST "/devices/$ID/steps" '{"rev":2,"state":{},"status":"CANCELLED"}' >/dev/null
# shellcheck disable=SC2016 # upstream's literal query (pantahub_proto.c QUERY_PENDING_STEPS)
Q='?progress.status=%7B%22$in%22:%5B%22NEW%22,%22DOWNLOADING%22,%22INPROGRESS%22,%22TESTING%22,%22QUEUED%22%5D%7D'
hub GET "/trails/$ID/steps$Q"; expect 200 steps
has 'length == 1 and .[0].rev == 1 and .[0].progress.status == "NEW" and .[0]."commit-msg" == "one"' "steps \$in"
grep -q '"state":{"#spec":"pantavisor-service-system@1","a":' "$work/body" || fail "state map keys not sorted as Go does"; ok
hub GET "/trails/$ID/steps?progress.status=%7B%22%24in%22%3A%5B%22DONE%22%2C%22CANCELLED%22%5D%7D"
has '[.[].rev] == [0, 2]' "steps \$in DONE,CANCELLED (rev order)"
hub GET "/trails/$ID/steps"; has 'length == 1 and .[0].rev == 1' "steps, no filter: NEW, one"
hub GET "/trails/$ID/steps?progress.status=%7B%22%24where%22%3A1%7D"; expect 400 "unsupported filter"

# --- object metadata and download (5.4 steps 3-4)
hub GET "/objects/$NEWSHA"; expect 200 "object metadata"
has ".sha256sum == \"$NEWSHA\" and .size == \"10000\" and (.\"signed-geturl\" | startswith(\"https://hub.test:$P/local-s3/\"))" "object metadata"
GETURL=$(jq -r '."signed-geturl"' "$work/body")
hub GET "/objects/$(printf 0%.0s $(seq 64))"; expect 403 "unknown object"
hub GET /objects/nothex; expect 400 "bad sha"
dl() { code=$(curl -sS --cacert "$work/certs/ca.pem" --resolve "hub.test:$P:127.0.0.1" -o "$work/dl" -D "$work/hdr" -w '%{http_code}' "$@" "$GETURL" 2>"$work/curlerr") || code="curl-$?"; }
dlsha() { sha256sum "$work/dl" | cut -d' ' -f1; }
dl; expect 200 download; [ "$(dlsha)" = "$NEWSHA" ] || fail "downloaded bytes differ"; ok
dl -H 'Range: bytes=9000-'; expect 206 "range"
grep -qi '^content-range: bytes 9000-9999/10000' "$work/hdr" || fail "Content-Range"; ok
[ "$(stat -c %s "$work/dl")" = 1000 ] || fail "range length"; ok
dl -H 'Range: bytes=10000-'; expect 416 "range past the end"
code=$(curl -sS --cacert "$work/certs/ca.pem" --resolve "hub.test:$P:127.0.0.1" -o /dev/null -w '%{http_code}' "${GETURL/signature=/signature=f}"); expect 403 "bad signature"
ctl POST /faults '{"kind":"cut","sha":"'"$NEWSHA"'","after":4096}' >/dev/null
dl; expect curl-18 "cut download"
tail -1 "$work/log.jsonl" | jq -e '.out == 4096 and .fault == "cut after 4096"' >/dev/null || fail "cut not logged with its bytes"; ok
dl -H 'Range: bytes=4096-'; expect 206 "resume after the cut"
ctl POST /faults '{"kind":"cut","after":10,"count":null}' >/dev/null
dl; expect curl-18 "cut every time (1)"; dl; expect curl-18 "cut every time (2)"
ctl DELETE /faults >/dev/null
ctl POST /faults '{"kind":"wrong-bytes"}' >/dev/null
dl; expect 200 "wrong bytes"; [ "$(dlsha)" != "$NEWSHA" ] || fail "wrong-bytes served the object"; ok
[ "$(stat -c %s "$work/dl")" = 10000 ] || fail "wrong bytes of another size"; ok
dl; [ "$(dlsha)" = "$NEWSHA" ] || fail "wrong-bytes not once"; ok
ctl POST /faults '{"kind":"ignore-range"}' >/dev/null
dl -H 'Range: bytes=100-'; expect 200 "Range ignored"; [ "$(dlsha)" = "$NEWSHA" ] || fail "ignore-range"; ok
ctl POST /faults '{"kind":"url-ttl","seconds":0}' >/dev/null
hub GET "/objects/$NEWSHA"; GETURL=$(jq -r '."signed-geturl"' "$work/body")
dl; expect 403 "expired URL"; grep -q expired "$work/dl" || fail "expiry not named"; ok
ctl DELETE /faults >/dev/null
printf 'from a file' >"$work/f"
[ "$(ctl POST /objects "{\"path\":\"$work/f\"}" | jq -r .sha)" = "$(sha256sum <"$work/f" | cut -d' ' -f1)" ] || fail "object from a file"; ok
BIG=$(ctl POST /objects '{"random":100000}' | jq -r .sha)
hub GET "/objects/$BIG"; has '.size == "100000"' "random object"; GETURL=$(jq -r '."signed-geturl"' "$work/body")
ctl POST /faults '{"kind":"slow","rate":100000}' >/dev/null
dl -w '%{http_code} %{time_total}'; t=${code#* }; code=${code% *}; expect 200 "slow download"; [ "$(dlsha)" = "$BIG" ] || fail "slow bytes"; ok
awk "BEGIN{exit !($t >= 0.9)}" || fail "slow download took ${t}s"; ok
ctl POST /faults '{"kind":"slow","rate":100000,"count":2}' >/dev/null
dl & dl; wait $!
jq -e -s '[.[] | select(.method and (.path | startswith("/local-s3/"))) | .inflight] | max == 2' "$work/log.jsonl" >/dev/null || fail "in-flight count"; ok
ctl GET /state | jq -e '."inflight-max"."GET local-s3" == 2' >/dev/null || fail "in-flight most"; ok
ctl POST /objects '{"path":"/nonexistent"}' | jq -e '.error' >/dev/null || fail "control error"; ok

# --- progress (5.2)
PROG='{"status":"DOWNLOADING","status-msg":"Downloading update artifacts, retry 1 of 10","progress":25,"retries":1,"downloads":{"total":{"object_name":"total","object_id":"none","total_size":10000,"total_downloaded":4096,"start_time":1,"current_time":7}}}'
hub PUT "/trails/$ID/steps/1/progress" "$PROG"; expect 200 progress
has '.status == "DOWNLOADING" and .log == "" and .retries == null and .downloads.total.total_downloaded == 4096' "progress as the Hub keeps it"
hub PUT "/trails/$ID/steps/1/progress" '{"status":"QUEUED","progress":5,"extra":1}'; expect 400 "progress, unknown field"
hub PUT "/trails/$ID/steps/1/progress" '{"status":"SYNCING","progress":5}'; expect 400 "progress, Hub-only status"
hub PUT "/trails/$ID/steps/1/progress" '{"status":"QUEUED","progress":"5"}'; expect 400 "progress as a string"
hub PUT "/trails/$ID/steps/9/progress" '{"status":"QUEUED","progress":5}'; expect 400 "progress of no step"
[ "$(ctl GET "/devices/$ID/steps" | jq -r '.[] | select(.rev == 1) | .history[0]')" = "$PROG" ] || fail "progress history"; ok
hub GET "/trails/$ID/steps$Q"; has '.[0].progress.status == "DOWNLOADING"' "steps after progress"

# --- metadata (8.5, 8.6)
ctl PUT "/devices/$ID/user-meta" '{"b":{"x":1},"a":"1","pantahub.log.push":"0"}' >/dev/null
hub GET "/devices/$ID/user-meta"; expect 200 user-meta; grep -qx '{"a":"1","b":{"x":1},"pantahub.log.push":"0"}' "$work/body" || fail "user-meta"; ok
ctl DELETE "/devices/$ID/user-meta/pantahub.log.push" >/dev/null
hub GET "/devices/$ID/user-meta"; has 'has("pantahub.log.push") | not' "user-meta key deleted"
hub PUT "/devices/$ID/device-meta" '{"pantavisor.arch":"x86_64","interfaces":{"eth0.ipv4":["10.0.0.2"]}}'; expect 200 device-meta
[ "$(ctl GET "/devices/$ID" | jq -r '."device-meta".interfaces."eth0.ipv4"[0]')" = 10.0.0.2 ] || fail "device-meta kept"; ok
hub PUT "/devices/$ID/device-meta" '["x"]'; expect 400 "device-meta not an object"
CT=text/plain hub PUT "/devices/$ID/device-meta" '{}'; expect 415 "device-meta text/plain"

# --- log push (8.7)
E='{"tsec":0,"tnano":0,"lvl":"INFO","src":"/var/log/messages","plat":"hello","rev":"0","msg":"line 1"}'
hub POST /logs/ "[$E]"; expect 200 logs; has '.status == "ok"' logs
hub POST /logs/ '[{"tsec":0,"msg":"x"}]'; expect 400 "entry missing keys"
hub POST /logs/ "[${E/\"rev\":\"0\"/\"rev\":0}]"; expect 400 "entry rev as a number"
hub POST /logs/ "[${E%\}},\"time\":1}]"; expect 400 "entry unknown key"
hub POST /logs/ "[$(printf "$E,%.0s" $(seq 201))$E]"; expect 413 "over 200 entries"
[ "$(ctl GET /logs | jq -r ".[0].entry.msg + .[0].device")" = "line 1$ID" ] || fail "logs kept"; ok

# --- the CONNECT proxy (PH_CREDS_PROXY_*), and a migrated device's trail
code=$(curl -sS --cacert "$work/certs/ca.pem" -A "$UA" -H "Authorization: Bearer $TOKEN" -o "$work/body" -w '%{http_code}' \
  -x "http://127.0.0.1:$PX" --proxytunnel "https://hub.test:$P/trails/"); expect 200 "through the proxy"
grep -q "\"event\": \"connect\", \"target\": \"hub.test:$P\", \"status\": 200" "$work/log.jsonl" || fail "CONNECT not logged"; ok
curl -sS -o /dev/null -x "http://127.0.0.1:$PX" --proxytunnel https://example.invalid:443/ 2>/dev/null && fail "proxy tunnelled elsewhere"; ok
MIG=$(ctl POST /devices '{"id":"00000000000000000000abcd","secret":"s3cret","owner":"prn:::accounts:/mockuser"}' | jq -r .id)
[ "$MIG" = 00000000000000000000abcd ] || fail "device created as already registered"; ok
ctl POST "/devices/$MIG/trail" '{"state":{"#spec":"pantavisor-service-system@1"}}' >/dev/null
( PRN="prn:::devices:/$MIG" SECRET=s3cret; login; hub GET /trails/; has 'length == 1' "migrated trail"
  hub GET "/trails/$MIG/steps?progress.status=DONE"; has '.[0].rev == 0 and .[0]."commit-msg" == "Factory State (rev 0)"' "migrated step 0" )

# --- faults on the session and the transport
ctl POST /faults '{"kind":"unauthorized","count":2}' >/dev/null
hub GET /trails/; expect 401 "injected 401 (1)"; hub GET /trails/; expect 401 "injected 401 (2)"; hub GET /trails/; expect 200 "after the 401s"
ctl POST /revoke-tokens >/dev/null; hub GET /trails/; expect 401 "revoked token"; login
ctl POST /faults '{"kind":"status","path":"/logs/","status":503}' >/dev/null
hub POST /logs/ "[$E]"; expect 503 "injected 503"; hub POST /logs/ "[$E]"; expect 200 "503 once"
ctl POST /faults '{"kind":"hang","path":"/trails/","seconds":1}' >/dev/null
t=$(curl -sS --cacert "$work/certs/ca.pem" -A "$UA" -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{time_total}' "https://localhost:$P/trails/")
awk "BEGIN{exit !($t >= 0.95)}" || fail "hang answered after ${t}s"; ok
hub GET "/devices/$ID"; expect 200 "hang on another path"
ctl POST /faults '{"kind":"refuse","seconds":2}' >/dev/null
for _ in $(seq 100); do hub GET /trails/; [ "$code" = curl-7 ] && break; sleep 0.02; done
expect curl-7 "refused while not listening"
for _ in $(seq 150); do hub GET /trails/; [ "$code" = 200 ] && break; sleep 0.05; done
expect 200 "listening again"

# --- the request log: every device request, with its fields
jq -e -s '[.[] | select(.method)] | length > 60 and all(has("t", "path", "status", "in", "out", "ms"))' "$work/log.jsonl" >/dev/null || fail "request log"; ok
[ "$(ctl GET /requests | jq length)" = "$(wc -l <"$work/log.jsonl")" ] || fail "control requests differ from the log"; ok
kill -0 "$pid" || fail "mock died"
[ ! -s "$work/stderr" ] || fail "mock wrote to stderr: $(cat "$work/stderr")"; ok
echo "selftest: ok, $checks checks in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s"
