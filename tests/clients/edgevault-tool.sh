#!/bin/sh
# The edgevault admin tool: init, status and zone list, their JSON, exit
# codes, and the errors an operator meets (root unreachable, wrong upstream
# PIN, unknown token, store unreadable, bad configuration).
. "$(dirname "$0")/lib.sh"

: "${EV_TOOL:?EV_TOOL must name the built tool}"
export EDGEVAULT_MODULE="$EV_MODULE"
cd "$EV_TMP" || exit 99

# exits NAME CODE COMMAND...: the command exits with CODE.
exits() {
	name=$1
	code=$2
	shift 2
	ok "$name" sh -c '"$@" >cmd.out 2>&1; rc=$?; [ $rc -eq "$0" ] || { cat cmd.out; echo "exit $rc"; exit 1; }' \
		"$code" "$@"
}

exits "no command is a usage error" 2 "$EV_TOOL"
exits "unknown command is a usage error" 2 "$EV_TOOL" frobnicate
out_has "--help lists the commands" "zone list" "$EV_TOOL" --help

exits "init succeeds" 0 "$EV_TOOL" init
out_has "init reports each step" "root of trust: pkcs11 token \"root\".*ok" "$EV_TOOL" init
ok "init created the store" test -s "$EV_TMP/store/edgevault.db"
out_has "init created the root key in the upstream token" 'label: *edgevault-root$' \
	pkcs11-tool --module "$EV_SOFTHSM" --token-label root --login --pin "$ROOT_PIN" \
	--list-objects --type secrkey

run pkcs11-tool --module "$EV_MODULE" --init-token --label zone-one --so-pin "$SO_PIN"
run pkcs11-tool --module "$EV_MODULE" --token-label zone-one --login --login-type so \
	--so-pin "$SO_PIN" --init-pin --pin "$USER_PIN"
# The free slot's ID is the next zone id: 2 here. Without --slot, pkcs11-tool
# would take the first slot and re-initialise zone-one.
run pkcs11-tool --module "$EV_MODULE" --slot 2 --init-token --label zone-two --so-pin "$SO_PIN"

out_has "zone list shows a ready zone" "^1 +zone-one +[0-9a-f]{16} +ready$" "$EV_TOOL" zone list
out_has "zone list shows a zone without user PIN" "^2 +zone-two +[0-9a-f]{16} +no-user-pin$" \
	"$EV_TOOL" zone list
ok "zone list --json is JSON with both zones" sh -c \
	"'$EV_TOOL' zone list --json | '$EV_PYTHON' -c 'import json,sys; z=json.load(sys.stdin);
assert [x[\"label\"] for x in z] == [\"zone-one\", \"zone-two\"], z'"
exits "status succeeds" 0 "$EV_TOOL" status
out_has "status counts the zones" "^zones: +2$" "$EV_TOOL" status
ok "status --json is JSON" sh -c \
	"'$EV_TOOL' --json status | '$EV_PYTHON' -c 'import json,sys; s=json.load(sys.stdin);
assert s[\"root\"][\"reachable\"] is True and s[\"zones\"] == 2, s'"

# Errors an operator meets, each named in words.
cp edgevault.conf good.conf
sed "s|^pin_file = .*|pin_file = $EV_TMP/wrong.pin|" good.conf >wrong-pin.conf
printf 'not-the-pin\n' >wrong.pin
exits "wrong upstream PIN fails init" 1 "$EV_TOOL" --config wrong-pin.conf init
fails "wrong upstream PIN is named" 'upstream PIN rejected .*CKR_PIN_INCORRECT' \
	"$EV_TOOL" --config wrong-pin.conf init
sed "s|^token_label = .*|token_label = nosuchtoken|" good.conf >no-token.conf
fails "unknown upstream token is named" 'no upstream token labelled "nosuchtoken"' \
	"$EV_TOOL" --config no-token.conf init
sed "s|^module = .*|module = $EV_TMP/missing.so|" good.conf >no-module.conf
fails "unreachable root names the module" 'cannot load upstream module .*/missing\.so' \
	"$EV_TOOL" --config no-module.conf init
fails "status shows an unreachable root" 'root: +pkcs11: cannot load upstream module .*/missing\.so' \
	"$EV_TOOL" --config no-module.conf status
exits "status with an unreachable root exits 1" 1 "$EV_TOOL" --config no-module.conf status
mkdir -p badstore && printf 'this is not a database' >badstore/edgevault.db
sed "s|^dir = .*|dir = $EV_TMP/badstore|" good.conf >bad-store.conf
fails "unreadable store is named" 'cannot open store .*/badstore/edgevault\.db' \
	"$EV_TOOL" --config bad-store.conf init
exits "unreadable store fails init" 1 "$EV_TOOL" --config bad-store.conf init
# The store named here is in the test's directory: if the typo were not
# caught, init would create it there, not in /tmp.
printf '[store]\ndir = %s/typo-store\ncolour = blue\n' "$EV_TMP" >typo.conf
fails "unknown setting is named with its line" 'typo\.conf:3: unknown key "colour"' \
	"$EV_TOOL" --config typo.conf init
ok "a configuration with a typo creates no store" test ! -e typo-store
exits "missing configuration fails" 1 "$EV_TOOL" --config "$EV_TMP/none.conf" status
fails "missing configuration is named" 'cannot read configuration .*/none\.conf' \
	"$EV_TOOL" --config "$EV_TMP/none.conf" status
exits "missing module fails zone list" 1 "$EV_TOOL" --module "$EV_TMP/none.so" zone list
fails "missing module is named" 'cannot load the module .*/none\.so' \
	"$EV_TOOL" --module "$EV_TMP/none.so" zone list

finish
