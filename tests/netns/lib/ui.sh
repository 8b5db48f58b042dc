# Admin UI login for tests and scripts (source it). Needs curl and jq.
#
# ui_login NS BASE JAR [PASSWORD]: from namespace NS, sets the admin password at BASE
# (e.g. http://192.168.1.1:8080) if none is set yet, else logs in with it; keeps the
# session cookie in the curl cookie jar JAR and prints the session's CSRF token (send
# it as X-CSRF-Token with every POST).
ui_login() {
    local ns=$1 base=$2 jar=$3 pw=${4:-gatehouse-test-pw}
    local c=(ip netns exec "$ns" curl -sS --max-time 10 -b "$jar" -c "$jar")
    local code pre
    code=$("${c[@]}" -o /dev/null -w '%{http_code}' "$base/setup")
    if [ "$code" = 200 ]; then
        pre=$(awk '$6 == "gh_pre" {print $7}' "$jar" | tail -n1)
        code=$("${c[@]}" -o /dev/null -w '%{http_code}' --data-urlencode "csrf=$pre" \
            --data-urlencode "password=$pw" --data-urlencode "again=$pw" "$base/setup")
    else
        "${c[@]}" -o /dev/null "$base/login"
        pre=$(awk '$6 == "gh_pre" {print $7}' "$jar" | tail -n1)
        code=$("${c[@]}" -o /dev/null -w '%{http_code}' --data-urlencode "csrf=$pre" \
            --data-urlencode "password=$pw" "$base/login")
    fi
    [ "$code" = 303 ] || { echo "ui_login: HTTP $code from $base" >&2; return 1; }
    "${c[@]}" "$base/api/session" | jq -r .csrf
}

# ui_get NS BASE JAR PATH [CURL ARGS...]: GET PATH with the session in JAR, logging in
# (again) first when there is none, e.g. after a gatewayd restart. Prints the body.
ui_get() {
    local ns=$1 base=$2 jar=$3 path=$4
    shift 4
    local out code
    out=$(mktemp)
    code=$(ip netns exec "$ns" curl -sS --max-time 10 -b "$jar" -o "$out" -w '%{http_code}' "$@" "$base$path" || true)
    if [ "$code" = 401 ]; then
        ui_login "$ns" "$base" "$jar" >/dev/null || { rm -f "$out"; return 1; }
        code=$(ip netns exec "$ns" curl -sS --max-time 10 -b "$jar" -o "$out" -w '%{http_code}' "$@" "$base$path" || true)
    fi
    cat "$out"
    rm -f "$out"
    [ "$code" = 200 ]
}
