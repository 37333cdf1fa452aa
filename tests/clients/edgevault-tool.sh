#!/bin/sh
# The edgevault admin tool: init, status and zone list, their JSON, exit
# codes, and the errors an operator meets (root unreachable, wrong upstream
# PIN, unknown token, store unreadable, bad configuration); revocation
# keys and list signing (checked against OpenSSL's Ed25519); revocation
# apply, show and local revoke through the module's admin interface.
. "$(dirname "$0")/lib.sh"

: "${EV_TOOL:?EV_TOOL must name the built tool}"
export EDGEVAULT_MODULE="$EV_MODULE"
cd "$EV_TMP" || exit 99

exits "no command is a usage error" 2 "$EV_TOOL"
exits "unknown command is a usage error" 2 "$EV_TOOL" frobnicate
out_has "--help lists the commands" "zone list" "$EV_TOOL" --help

exits "init succeeds" 0 "$EV_TOOL" init
if ev_root_is pkcs11; then
	out_has "init reports each step" "root of trust: pkcs11 token \"root\".*ok" "$EV_TOOL" init
else
	out_has "init reports each step" "root of trust: tpm2 TCTI \"swtpm:[^\"]*\": ok" "$EV_TOOL" init
fi
ok "init created the store" test -s "$EV_TMP/store/edgevault.db"
if ev_root_is pkcs11; then
	out_has "init created the root key in the upstream token" 'label: *edgevault-root$' \
		pkcs11-tool --module "$EV_SOFTHSM" --token-label root --login --pin "$ROOT_PIN" \
		--list-objects --type secrkey
fi

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

# zone rebind: with this (pkcs11) root no zone is bound to PCRs, so it
# seals the zone key again unbound; the key still opens afterwards.
printf '%s\n' "$SO_PIN" >so-rebind.pin
chmod 600 so-rebind.pin
out_has "zone rebind seals a new zone key" '^zone 1: new zone key sealed, bound to PCRs: none$' \
	"$EV_TOOL" zone rebind --zone 1 --so-pin-file so-rebind.pin
ok "zone rebind --json says the PCRs it is bound to" sh -c \
	"'$EV_TOOL' zone rebind --zone 1 --so-pin-file so-rebind.pin --json | '$EV_PYTHON' -c 'import json,sys; r=json.load(sys.stdin);
assert r == {\"zone\": 1, \"pcrs\": []}, r'"
ok "zone rebind takes the SO PIN from the environment" env EDGEVAULT_SO_PIN="$SO_PIN" \
	"$EV_TOOL" zone rebind --zone 1
ok "the re-bound zone still opens" \
	pkcs11-tool --module "$EV_MODULE" --token-label zone-one --login --pin "$USER_PIN" --list-objects
printf 'not-the-so-pin\n' >so-wrong.pin
chmod 600 so-wrong.pin
fails "zone rebind with a wrong SO PIN is refused" 'SO login to zone 1 failed: CKR_PIN_INCORRECT' \
	"$EV_TOOL" zone rebind --zone 1 --so-pin-file so-wrong.pin
exits "zone rebind with a wrong SO PIN exits 1" 1 \
	"$EV_TOOL" zone rebind --zone 1 --so-pin-file so-wrong.pin
run "$EV_TOOL" zone rebind --zone 1 --so-pin-file so-rebind.pin # the SO's failures reset
fails "zone rebind of no zone says so" 'no zone 9 ' \
	"$EV_TOOL" zone rebind --zone 9 --so-pin-file so-rebind.pin
exits "zone rebind of no zone exits 1" 1 "$EV_TOOL" zone rebind --zone 9 --so-pin-file so-rebind.pin
exits "zone rebind without --zone is a usage error" 2 "$EV_TOOL" zone rebind --so-pin-file so-rebind.pin
exits "zone rebind with an unknown option is a usage error" 2 \
	"$EV_TOOL" zone rebind --zone 1 --pcrs 7 --so-pin-file so-rebind.pin
exits "zone rebind with a zone that is not a number is a usage error" 2 \
	"$EV_TOOL" zone rebind --zone one --so-pin-file so-rebind.pin
exits "zone rebind without an SO PIN source or terminal exits 2" 2 "$EV_TOOL" zone rebind --zone 1
out_has "--help lists zone rebind" "zone rebind --zone N" "$EV_TOOL" --help

# Errors an operator meets, each named in words.
cp edgevault.conf good.conf
# The upstream token's errors (PIN, label, module) are the SoftHSMv2 root's;
# the TPM's is an unreachable TCTI.
if ev_root_is pkcs11; then
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
else
	sed "s|^tcti = .*|tcti = swtpm:host=127.0.0.1,port=1|" good.conf >no-tpm.conf
	fails "unreachable TPM names the TCTI" 'cannot reach the TPM.*port=1' \
		"$EV_TOOL" --config no-tpm.conf init
	fails "status shows an unreachable TPM" 'root: +tpm2: .*port=1' \
		"$EV_TOOL" --config no-tpm.conf status
	exits "status with an unreachable TPM exits 1" 1 "$EV_TOOL" --config no-tpm.conf status
fi
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


# ---- Revocation lists: the authority's side (no module needed) ----

# check_env.py ENVELOPE DOC PUBKEY: the envelope carries DOC's exact bytes
# and an Ed25519 signature OpenSSL verifies with PUBKEY (base64).
cat >check_env.py <<'EOP'
import base64, json, os, subprocess, sys
env_path, doc_path, pub = sys.argv[1:4]
e = json.load(open(env_path))
assert sorted(e) == ["payload", "signature", "type"], e
assert e["type"] == "edgevault-revocation-list", e["type"]
payload = base64.b64decode(e["payload"], validate=True)
assert payload == open(doc_path, "rb").read(), "payload is not the document"
sig = base64.b64decode(e["signature"], validate=True)
pk = base64.b64decode(pub, validate=True)
assert len(sig) == 64 and len(pk) == 32
d = os.path.dirname(os.path.abspath(env_path))
# SubjectPublicKeyInfo of an Ed25519 key: a fixed prefix, then the key.
open(d + "/pub.der", "wb").write(bytes.fromhex("302a300506032b6570032100") + pk)
open(d + "/payload.bin", "wb").write(payload)
open(d + "/sig.bin", "wb").write(sig)
subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", d + "/pub.der",
    "-keyform", "DER", "-rawin", "-in", d + "/payload.bin", "-sigfile", d + "/sig.bin"],
    check=True)
EOP

out_has "revocation keygen prints the public_key line" '^public_key = [A-Za-z0-9+/]{43}=$' \
	"$EV_TOOL" revocation keygen --out "$EV_TMP/rev.key"
REV_PUB=$(sed -n 's/^public_key = //p' "$EV_TMP/out")
ok "the signing key file is mode 0600" sh -c '[ "$(stat -c %a "$1")" = 600 ]' sh "$EV_TMP/rev.key"
cp rev.key rev.key.orig
exits "revocation keygen never replaces a key" 1 "$EV_TOOL" revocation keygen --out "$EV_TMP/rev.key"
fails "revocation keygen names the existing key" 'rev\.key already exists' \
	"$EV_TOOL" revocation keygen --out "$EV_TMP/rev.key"
ok "the existing key is unchanged" cmp rev.key rev.key.orig
exits "revocation keygen without --out is a usage error" 2 "$EV_TOOL" revocation keygen

cat >rl1.json <<'EOD'
{"version": 1, "device": "test-device", "sequence": 1, "issued_at": 1700000000,
 "entries": []}
EOD
ok "revocation sign writes an envelope OpenSSL verifies" sh -c \
	'"$1" revocation sign --key rev.key --in rl1.json >rl1.env &&
	"$2" check_env.py rl1.env rl1.json "$3"' sh "$EV_TOOL" "$EV_PYTHON" "$REV_PUB"
ok "revocation sign reads stdin by default (same envelope)" sh -c \
	'"$1" revocation sign --key rev.key <rl1.json >rl1-stdin.env && cmp rl1.env rl1-stdin.env' \
	sh "$EV_TOOL"
mkdir -p outbox
ok "revocation sign --out writes the file whole, no temporary left" sh -c \
	'"$1" revocation sign --key rev.key --in rl1.json --out outbox/list-1.json &&
	cmp rl1.env outbox/list-1.json && [ "$(ls -A outbox)" = list-1.json ]' sh "$EV_TOOL"
printf '{"version": 1, "device": "test-device", "sequence": 2, "issued_at": 1,\n "entries": [{"kind": "key", "zone": 1, "lable": "web", "reason": "x"}]}\n' >bad-member.json
exits "revocation sign refuses a malformed list" 1 \
	"$EV_TOOL" revocation sign --key rev.key --in bad-member.json --out outbox/bad.json
fails "revocation sign names the entry and member" 'entries\[0\].*"lable"' \
	"$EV_TOOL" revocation sign --key rev.key --in bad-member.json
ok "a refused list leaves nothing in the output directory" sh -c '[ "$(ls -A outbox)" = list-1.json ]'
printf '{"version": 1, "device": "test-device", "sequence": 0, "issued_at": 1, "entries": []}' \
	>bad-seq.json
fails "revocation sign refuses sequence 0" '"sequence".*out of range' \
	"$EV_TOOL" revocation sign --key rev.key --in bad-seq.json
printf 'not json\n' >not.json
fails "revocation sign refuses what is not JSON" 'not valid JSON' \
	"$EV_TOOL" revocation sign --key rev.key --in not.json
cp rev.key open.key && chmod 644 open.key
fails "revocation sign refuses a key readable by others" 'open\.key is accessible to group or others' \
	"$EV_TOOL" revocation sign --key open.key --in rl1.json
fails "revocation sign names a missing input" 'cannot read .*none\.json' \
	"$EV_TOOL" revocation sign --key rev.key --in none.json

exits "revocation sign without --key is a usage error" 2 "$EV_TOOL" revocation sign --in rl1.json
exits "revocation sign with a stray argument is a usage error" 2 \
	"$EV_TOOL" revocation sign --key rev.key rl1.json
exits "revocation alone is a usage error" 2 "$EV_TOOL" revocation
exits "unknown revocation command is a usage error" 2 "$EV_TOOL" revocation frobnicate
exits "revocation apply without a file is a usage error" 2 "$EV_TOOL" revocation apply
exits "revocation apply with two files is a usage error" 2 "$EV_TOOL" revocation apply a b
exits "revocation show with an argument is a usage error" 2 "$EV_TOOL" revocation show x
exits "revoke alone is a usage error" 2 "$EV_TOOL" revoke
exits "revoke key without --reason is a usage error" 2 "$EV_TOOL" revoke key --zone 1 --label web
exits "revoke key without --label is a usage error" 2 "$EV_TOOL" revoke key --zone 1 --reason x
exits "revoke zone with --label is a usage error" 2 \
	"$EV_TOOL" revoke zone --zone 1 --label web --reason x
exits "revoke with a zone that is not a number is a usage error" 2 \
	"$EV_TOOL" revoke key --zone one --label web --reason x
exits "revoke with bad hex in --id is a usage error" 2 \
	"$EV_TOOL" revoke key --zone 1 --label web --id 0g --reason x
# The PIN is never an argument, not even through an abbreviated option, and
# a mistyped one is not echoed back.
ok "revoke refuses a PIN on the command line and does not echo it" sh -c \
	'"$1" revoke key --zone 1 --label web --reason x --so-pin=pin-on-cmdline >pin.out 2>&1
	rc=$?; cat pin.out; [ $rc -eq 2 ] && ! grep -q pin-on-cmdline pin.out' sh "$EV_TOOL"
exits "revoke refuses an abbreviated --so-pin" 2 \
	"$EV_TOOL" revoke key --zone 1 --label web --reason x --so-pin "$EV_TMP/so.pin"
fails "revoke without an SO PIN source or terminal says so" 'no SO PIN' \
	"$EV_TOOL" revoke key --zone 1 --label web --reason x
exits "revoke without an SO PIN source or terminal exits 2" 2 \
	"$EV_TOOL" revoke key --zone 1 --label web --reason x

# ==== NEEDS THE MODULE SIDE OF REVOCATION ====
# Everything below goes through the module's admin interface
# (EV_ApplyRevocationList, EV_Revoke) and its revocation history in the
# store; it passes once those have landed.

printf '[revocation]\npublic_key = %s\n' "$REV_PUB" >>"$EDGEVAULT_CONF"

out_has "revocation apply applies a signed list" '^applied revocation list 1$' \
	"$EV_TOOL" revocation apply rl1.env
exits "the same list again is not an error" 0 "$EV_TOOL" revocation apply rl1.env

printf '{"version": 1, "device": "test-device", "sequence": 1, "issued_at": 1700000001, "entries": []}\n' \
	>rl1b.json
run "$EV_TOOL" revocation sign --key rev.key --in rl1b.json --out rl1b.env
fails "a list not newer than the last one is refused" 'CKR_FUNCTION_REJECTED' \
	"$EV_TOOL" revocation apply rl1b.env
printf '{"version": 1, "device": "other-device", "sequence": 5, "issued_at": 1, "entries": []}\n' \
	>other-dev.json
run "$EV_TOOL" revocation sign --key rev.key --in other-dev.json --out other-dev.env
fails "a list for another device is refused" 'CKR_DATA_INVALID' \
	"$EV_TOOL" revocation apply other-dev.env
fails "a list for another device is explained" 'device "other-device"' \
	"$EV_TOOL" revocation apply other-dev.env
run "$EV_TOOL" revocation keygen --out "$EV_TMP/other.key"
printf '{"version": 1, "device": "test-device", "sequence": 9, "issued_at": 1, "entries": []}\n' \
	>rl9.json
run "$EV_TOOL" revocation sign --key other.key --in rl9.json --out rl9-other.env
fails "a list signed by another key is refused" 'CKR_SIGNATURE_INVALID' \
	"$EV_TOOL" revocation apply rl9-other.env
exits "a list signed by another key exits 1" 1 "$EV_TOOL" revocation apply rl9-other.env

# keypair ZONE-LABEL LABEL ID: an EC key pair in a zone, as an application makes it.
keypair() {
	run pkcs11-tool --module "$EV_MODULE" --token-label "$1" --login --pin "$USER_PIN" \
		--keypairgen --key-type EC:prime256v1 --label "$2" --id "$3"
}
# in_zone_one LABEL: zone-one holds an object labelled LABEL.
in_zone_one() {
	pkcs11-tool --module "$EV_MODULE" --token-label zone-one --login --pin "$USER_PIN" \
		--list-objects 2>/dev/null | grep -qE "label: +$1\$"
}
not_in_zone_one() {
	! in_zone_one "$1"
}
keypair zone-one web 0a1b
keypair zone-one api 0c0d
keypair zone-one db 0e0f
ok "the keys to revoke are there" in_zone_one web

cat >rl2.json <<'EOD'
{"version": 1, "device": "test-device", "sequence": 2, "issued_at": 1700000100,
 "entries": [{"kind": "key", "zone": 1, "label": "web", "reason": "compromised"}]}
EOD
run "$EV_TOOL" revocation sign --key rev.key --in rl2.json --out rl2.env
out_has "a list revoking a key is applied" '^applied revocation list 2$' \
	"$EV_TOOL" revocation apply rl2.env
ok "the revoked key is gone" not_in_zone_one web

out_has "revoke key with the SO PIN from the environment" '^revoked 2 object\(s\)$' \
	env EDGEVAULT_SO_PIN="$SO_PIN" "$EV_TOOL" revoke key --zone 1 --label api --reason rotated
ok "the locally revoked key is gone" not_in_zone_one api
printf '%s\n' "$SO_PIN" >so.pin
chmod 600 so.pin
out_has "revoke key with the SO PIN from a file, narrowed by CKA_ID" '^revoked 2 object\(s\)$' \
	"$EV_TOOL" revoke key --zone 1 --label db --id 0e0f --generation 1 --reason retired \
	--so-pin-file so.pin
fails "revoke key naming no key says so" 'CKR_KEY_HANDLE_INVALID' \
	"$EV_TOOL" revoke key --zone 1 --label nosuchkey --reason x --so-pin-file so.pin
printf 'not-the-so-pin\n' >wrong-so.pin
chmod 600 wrong-so.pin
fails "revoke with a wrong SO PIN names the refusal" 'CKR_PIN_INCORRECT' \
	"$EV_TOOL" revoke key --zone 1 --label web --reason x --so-pin-file wrong-so.pin
out_has "revoke zone" '^revoked zone 2$' \
	"$EV_TOOL" revoke zone --zone 2 --reason decommissioned --so-pin-file so.pin
ok "the revoked zone has left the zone list" sh -c "! '$EV_TOOL' zone list | grep -q zone-two"
exits "revoking a revoked zone fails" 1 \
	"$EV_TOOL" revoke zone --zone 2 --reason again --so-pin-file so.pin

out_has "revocation show lists the applied list" 'applied .*sequence 2' \
	"$EV_TOOL" revocation show
out_has "revocation show lists what the list revoked" 'revoked key zone 1 label "web".*compromised' \
	"$EV_TOOL" revocation show
out_has "revocation show lists refusals" '^[0-9TZ:-]+ refused ' "$EV_TOOL" revocation show
out_has "revocation show lists local revocations" 'revoked zone 2.*decommissioned' \
	"$EV_TOOL" revocation show
ok "revocation show --json is JSON with lists, refusals and local revocations" sh -c \
	"'$EV_TOOL' revocation show --json | '$EV_PYTHON' -c 'import json,sys; h=json.load(sys.stdin)
assert any(r[\"applied\"] and r[\"sequence\"] == 2 and
           any(x[\"kind\"] == \"key\" and x[\"label\"] == \"web\" for x in r[\"revoked\"])
           for r in h), h
assert any(not r[\"applied\"] for r in h), h
assert any(x[\"kind\"] == \"key\" and x.get(\"id\") == \"0e0f\" for r in h for x in r[\"revoked\"]), h
assert any(x[\"kind\"] == \"zone\" and x[\"zone\"] == 2 for r in h for x in r[\"revoked\"]), h
assert all(r[\"time\"].endswith(\"Z\") for r in h), h'"

finish
