#!/bin/sh
# GnuTLS against edgevault: p11tool lists tokens and objects, exports public
# keys and test-signs with EC, Ed25519 and RSA keys; certtool makes a
# self-signed certificate with a key that stays in the token.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP"
export GNUTLS_PIN="$USER_PIN"

$P11 --init-token --label gnutls --so-pin "$SO_PIN" >/dev/null 2>&1
$P11 --token-label gnutls --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN" >/dev/null 2>&1
for k in "EC:prime256v1 ec 01" "EC:edwards25519 ed 02" "rsa:2048 rsa 03"; do
	set -- $k
	$P11 --token-label gnutls --login --pin "$USER_PIN" --keypairgen --key-type "$1" \
		--label "$2" --id "$3" >/dev/null 2>&1 || echo "cannot generate $1"
done
T="pkcs11:token=gnutls"

ok "p11tool --list-tokens shows the zone" sh -c \
	"p11tool --provider '$EV_MODULE' --list-tokens | grep -q 'Label: gnutls'"
ok "p11tool --list-all --login shows the private keys" sh -c \
	"p11tool --provider '$EV_MODULE' --login --list-all '$T' >all.txt &&
	 grep -c 'type=private' all.txt | grep -qx 3"
ok "p11tool without login shows no private key" sh -c \
	"p11tool --provider '$EV_MODULE' --list-all '$T' >pub.txt; ! grep -q 'type=private' pub.txt"
for k in ec ed rsa; do
	ok "p11tool --export-pubkey $k" p11tool --provider "$EV_MODULE" --login \
		--export-pubkey "$T;object=$k;type=public" --outfile "$k.pub.pem"
	ok "the exported $k key is a public key OpenSSL reads" openssl pkey -pubin -in "$k.pub.pem" \
		-noout
done
ok "p11tool --test-sign EC" p11tool --provider "$EV_MODULE" --login --test-sign \
	"$T;object=ec;type=private"
ok "p11tool --test-sign Ed25519" p11tool --provider "$EV_MODULE" --login --hash SHA512 \
	--test-sign "$T;object=ed;type=private"
ok "p11tool --test-sign RSA" p11tool --provider "$EV_MODULE" --login --test-sign \
	"$T;object=rsa;type=private"
ok "p11tool --test-sign RSA-PSS" p11tool --provider "$EV_MODULE" --login --sign-params RSA-PSS \
	--test-sign "$T;object=rsa;type=private"

cat >cert.tmpl <<EOT
cn = "edgevault gnutls test"
serial = 7
expiration_days = 30
signing_key
EOT
ok "certtool makes a self-signed certificate with an edgevault key" certtool \
	--provider "$EV_MODULE" --generate-self-signed --load-privkey "$T;object=ec;type=private" \
	--load-pubkey "$T;object=ec;type=public" --template cert.tmpl --outfile cert.pem
ok "OpenSSL verifies the certificate" openssl verify -CAfile cert.pem cert.pem
ok "the certificate carries the token's public key" sh -c \
	"openssl x509 -in cert.pem -noout -pubkey | openssl pkey -pubin -outform DER >c.der &&
	 openssl pkey -pubin -in ec.pub.pem -outform DER >k.der && cmp -s c.der k.der"

finish
