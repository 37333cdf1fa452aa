#!/bin/sh
# p11-kit and edgevault: with the module registered by conf/edgevault.module,
# `p11-kit list-modules` shows the module and its tokens; programs use it
# through p11-kit-proxy.so; `p11-kit remote` runs it in another process and
# `p11-kit server` exports a token over a unix socket that p11-kit-client.so
# reaches; RFC 7512 pkcs11: URIs find keys by token, label, id and type.
#
# p11-kit reads per-user module configuration only for programs that do not
# run as root, so when the test runs as root the p11-kit part runs as
# "nobody", with its own HOME in the test's directory, which it then owns.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
libdir=$(pkg-config --variable=libdir p11-kit-1 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)
PROXY=$(ls "$libdir/p11-kit-proxy.so" /usr/lib/*/p11-kit-proxy.so 2>/dev/null | head -n 1)
CLIENT=$(ls "$libdir/pkcs11/p11-kit-client.so" /usr/lib/*/pkcs11/p11-kit-client.so 2>/dev/null |
	head -n 1)
[ -n "$PROXY" ] && [ -n "$CLIENT" ] || {
	echo "ERROR: p11-kit-proxy.so or p11-kit-client.so not found (package p11-kit-modules)"
	exit 99
}
cd "$EV_TMP" || exit 99

run $P11 --init-token --label kit --so-pin "$SO_PIN"
run $P11 --token-label kit --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
# Two key pairs, so that a URI that finds one key has chosen among several.
run $P11 --token-label kit --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 \
	--label kit-ec --id 4b01
run $P11 --token-label kit --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 \
	--label kit-rsa --id 4b02
run pubkey_der kit label kit-ec ec.der
run openssl pkey -pubin -inform DER -in ec.der -out ec.pem
printf 'through p11-kit\n' >data

# The module as the test's user sees it: a copy in the test's directory, so
# that "nobody" can read it wherever the build tree is.
cp "$EV_MODULE" edgevault-pkcs11.so
MODULE="$EV_TMP/edgevault-pkcs11.so"
# The shipped module configuration, naming the module by its path here.
mkdir -p home/.config/pkcs11/modules remote-home/.config/pkcs11/modules
sed "s|^module:.*|module: $MODULE|" "$EV_SRCDIR/conf/edgevault.module" \
	>home/.config/pkcs11/modules/edgevault.module
run grep -qx "module: $MODULE" home/.config/pkcs11/modules/edgevault.module
# The same module in a separate process, spoken to over a pipe by `p11-kit remote`.
printf 'remote: |p11-kit remote %s\n' "$MODULE" \
	>remote-home/.config/pkcs11/modules/edgevault-remote.module

# as_user HOME COMMAND...: run COMMAND as a user p11-kit reads the module
# configuration in HOME for.
if [ "$(id -u)" -eq 0 ]; then
	# Owned by nobody, the directory stays closed to other users (mode 700).
	chown -R nobody:nogroup "$EV_TMP"
	as_user() {
		h=$1
		shift
		setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$h" "$@"
	}
else
	as_user() {
		h=$1
		shift
		env HOME="$h" "$@"
	}
fi
H="$EV_TMP/home"

# list_modules: p11-kit list-modules succeeds and shows the module and its zone.
list_modules() {
	as_user "$H" p11-kit list-modules >modules.txt 2>&1 || { cat modules.txt; return 1; }
	grep -q '^    library-manufacturer: edgevault$' modules.txt &&
		grep -q '^    token: kit$' modules.txt || { cat modules.txt; return 1; }
}
ok "p11-kit list-modules shows edgevault and its zone" list_modules
out_has "p11-kit-proxy.so lists the zone" 'token label *: kit$' \
	as_user "$H" pkcs11-tool --module "$PROXY" --list-slots
ok "sign through p11-kit-proxy.so" as_user "$H" pkcs11-tool --module "$PROXY" \
	--token-label kit --login --pin "$USER_PIN" --sign --label kit-ec --mechanism ECDSA-SHA256 \
	--signature-format openssl --input-file data --output-file proxy.sig
ok "OpenSSL verifies the proxied signature" openssl dgst -sha256 -verify ec.pem \
	-signature proxy.sig data

# RFC 7512 URIs, resolved by GnuTLS over the modules p11-kit registers
# (GnuTLS loads them through p11-kit itself, not through the proxy).
# uri_finds URI N LABEL...: p11tool lists exactly N objects for URI, with
# these labels.
uri_finds() {
	uri=$1
	want=$2
	shift 2
	as_user "$H" env GNUTLS_PIN="$USER_PIN" p11tool --login --list-all "$uri" >uri.txt 2>&1 ||
		{ cat uri.txt; return 1; }
	n=$(grep -c '^	URL: ' uri.txt)
	[ "$n" -eq "$want" ] || { cat uri.txt; echo "$n objects, want $want"; return 1; }
	for label; do
		grep -qx "	Label: $label" uri.txt || { cat uri.txt; echo "no $label"; return 1; }
	done
}
ok "URI by token, label and type finds the EC private key" uri_finds \
	"pkcs11:token=kit;object=kit-ec;type=private" 1 kit-ec
ok "URI by token, id and type finds the EC private key" uri_finds \
	"pkcs11:token=kit;id=%4b%01;type=private" 1 kit-ec
ok "URI by token, id and type finds the RSA private key" uri_finds \
	"pkcs11:token=kit;id=%4b%02;type=private" 1 kit-rsa
ok "URI by token, label and type=public finds the EC public key" uri_finds \
	"pkcs11:token=kit;object=kit-ec;type=public" 1 kit-ec
ok "URI by library, token and type finds both private keys" uri_finds \
	"pkcs11:model=zone;manufacturer=edgevault;token=kit;type=private" 2 kit-ec kit-rsa
fails "a URI naming another token finds nothing" 'No matching objects found' \
	as_user "$H" env GNUTLS_PIN="$USER_PIN" p11tool --login --list-all \
	"pkcs11:token=nosuch;type=private"

out_has "p11-kit remote: the proxy reaches the module in another process" 'label: *kit-ec$' \
	as_user "$EV_TMP/remote-home" pkcs11-tool --module "$PROXY" --token-label kit \
	--login --pin "$USER_PIN" --list-objects --type privkey

# p11-kit server: the token exported over a unix socket to another process.
sock="$EV_TMP/p11kit.sock"
p11-kit server --provider "$EV_MODULE" -f -n "$sock" "pkcs11:token=kit" >server.out 2>&1 &
EV_PIDS="$EV_PIDS $!"
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
	[ -S "$sock" ] && break
	sleep 0.2
done
ok "p11-kit server listens on its unix socket" sh -c "test -S '$sock' || { cat server.out; exit 1; }"
export P11_KIT_SERVER_ADDRESS="unix:path=$sock"
out_has "p11-kit-client.so sees the remote zone" 'token label *: kit$' \
	pkcs11-tool --module "$CLIENT" --list-slots
# p11-kit 0.24's RPC forwards only the mechanisms whose parameters it knows
# how to carry (CKM_ECDSA, not CKM_ECDSA_SHA256): hash here, sign there.
run openssl dgst -sha256 -binary -out data.sha256 data
ok "sign remotely through p11-kit-client.so" pkcs11-tool --module "$CLIENT" --token-label kit \
	--login --pin "$USER_PIN" --sign --label kit-ec --mechanism ECDSA \
	--signature-format openssl --input-file data.sha256 --output-file remote.sig
ok "OpenSSL verifies the remote signature" openssl pkeyutl -verify -pubin -inkey ec.pem \
	-in data.sha256 -sigfile remote.sig
fails "a wrong PIN is refused remotely" 'CKR_PIN_INCORRECT' pkcs11-tool --module "$CLIENT" \
	--token-label kit --login --pin wrong-pin --list-objects --type privkey
unset P11_KIT_SERVER_ADDRESS

finish
