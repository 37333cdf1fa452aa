#!/bin/sh
# p11-kit and edgevault: `p11-kit list-modules` shows the module and its
# tokens; programs use it through p11-kit-proxy.so; `p11-kit server` exports
# a token over a unix socket and p11-kit-client.so reaches it from another
# process; RFC 7512 pkcs11: URIs find keys by token, label, id and type.
#
# p11-kit reads per-user module configuration only for programs that do not
# run as root, so the p11-kit part runs as "nobody" with its own HOME in the
# test's directory, which it then owns.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
libdir=$(pkg-config --variable=libdir p11-kit-1 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)
PROXY=$(ls "$libdir/p11-kit-proxy.so" /usr/lib/*/p11-kit-proxy.so 2>/dev/null | head -n 1)
CLIENT=$(ls "$libdir/pkcs11/p11-kit-client.so" /usr/lib/*/pkcs11/p11-kit-client.so 2>/dev/null |
	head -n 1)
cd "$EV_TMP"

$P11 --init-token --label kit --so-pin "$SO_PIN" >/dev/null 2>&1
$P11 --token-label kit --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN" >/dev/null 2>&1
$P11 --token-label kit --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 \
	--label kit-ec --id 4b01 >/dev/null 2>&1
$P11 --token-label kit --read-object --type pubkey --label kit-ec --output-file ec.der \
	>/dev/null 2>&1
openssl pkey -pubin -inform DER -in ec.der -out ec.pem
printf 'through p11-kit\n' >data

mkdir -p home/.config/pkcs11/modules remote-home/.config/pkcs11/modules
printf 'module: %s\n' "$EV_MODULE" >home/.config/pkcs11/modules/edgevault.module
# The same module in a separate process, spoken to over a pipe by `p11-kit remote`.
printf 'remote: |p11-kit remote %s\n' "$EV_MODULE" \
	>remote-home/.config/pkcs11/modules/edgevault-remote.module
# The module itself must be readable by nobody too.
chown -R nobody:nogroup "$EV_TMP"
chmod 755 "$EV_TMP"
AS_NOBODY="setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=$EV_TMP/home"

ok "p11-kit list-modules shows edgevault and its zone" sh -c \
	"$AS_NOBODY p11-kit list-modules >modules.txt 2>&1 &&
	 grep -q 'library-manufacturer: edgevault' modules.txt && grep -q 'token: kit' modules.txt"
ok "p11-kit-proxy.so lists the zone" sh -c \
	"$AS_NOBODY pkcs11-tool --module '$PROXY' --list-slots 2>&1 | grep -q 'token label *: kit'"
ok "sign through p11-kit-proxy.so" $AS_NOBODY pkcs11-tool --module "$PROXY" --token-label kit \
	--login --pin "$USER_PIN" --sign --label kit-ec --mechanism ECDSA-SHA256 \
	--signature-format openssl --input-file data --output-file proxy.sig
ok "OpenSSL verifies the proxied signature" openssl dgst -sha256 -verify ec.pem \
	-signature proxy.sig data

# RFC 7512 URIs, resolved by GnuTLS over the modules p11-kit registers
# (GnuTLS loads them through p11-kit itself, not through the proxy).
for uri in "pkcs11:token=kit;object=kit-ec;type=private" "pkcs11:token=kit;id=%4b%01;type=private" \
	"pkcs11:model=zone;manufacturer=edgevault;token=kit;type=private"; do
	ok "URI $uri finds exactly the private key" sh -c \
		"GNUTLS_PIN='$USER_PIN' $AS_NOBODY p11tool --login --list-all '$uri' \
		 >uri.txt 2>&1 && [ \$(grep -c 'type=private' uri.txt) -eq 1 ] && grep -q 'Label: kit-ec' uri.txt"
done
ok "a URI naming another token finds nothing" sh -c \
	"GNUTLS_PIN='$USER_PIN' $AS_NOBODY p11tool --login --list-all \
	 'pkcs11:token=nosuch;type=private' >none.txt 2>&1; ! grep -q 'type=private' none.txt"

ok "p11-kit remote: the proxy reaches the module in another process" sh -c \
	"$AS_NOBODY HOME='$EV_TMP/remote-home' pkcs11-tool --module '$PROXY' --token-label kit \
	 --login --pin '$USER_PIN' --list-objects --type privkey 2>&1 | grep -q 'label: *kit-ec'"

# p11-kit server: the token exported over a unix socket to another process.
sock="$EV_TMP/p11kit.sock"
p11-kit server --provider "$EV_MODULE" -f -n "$sock" "pkcs11:token=kit" >server.out 2>&1 &
server=$!
EV_PIDS="$EV_PIDS $server"
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do [ -S "$sock" ] && break; sleep 0.2; done
ok "p11-kit server listens on its unix socket" test -S "$sock"
export P11_KIT_SERVER_ADDRESS="unix:path=$sock"
ok "p11-kit-client.so sees the remote zone" sh -c \
	"pkcs11-tool --module '$CLIENT' --list-slots 2>&1 | grep -q 'token label *: kit'"
# p11-kit 0.24's RPC forwards only the mechanisms whose parameters it knows
# how to carry (CKM_ECDSA, not CKM_ECDSA_SHA256): hash here, sign there.
openssl dgst -sha256 -binary data >data.sha256
ok "sign remotely through p11-kit-client.so" pkcs11-tool --module "$CLIENT" --token-label kit \
	--login --pin "$USER_PIN" --sign --label kit-ec --mechanism ECDSA \
	--signature-format openssl --input-file data.sha256 --output-file remote.sig
ok "OpenSSL verifies the remote signature" openssl pkeyutl -verify -pubin -inkey ec.pem \
	-in data.sha256 -sigfile remote.sig
fails "a wrong PIN is refused remotely" pkcs11-tool --module "$CLIENT" --token-label kit \
	--login --pin wrong-pin --list-objects --type privkey
unset P11_KIT_SERVER_ADDRESS

finish
