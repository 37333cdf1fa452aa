#!/bin/sh
# OpenSSL 3 with libp11's engine against edgevault: pkeyutl signs with EC,
# RSA PKCS#1 v1.5 and RSA-PSS keys (verified with the exported public keys),
# `openssl req -x509` makes a certificate with a key in the token, and a
# certificate stored in the token is found by the engine.
#
# libp11 0.4.12 (Debian 12) stops enumerating a token's keys at the first
# key type it does not know, such as Ed25519, so this zone holds none.
. "$(dirname "$0")/lib.sh"

: "${EV_ENGINE_CERT:?EV_ENGINE_CERT must name the built tests/clients/engine_cert}"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP" || exit 99

engine=$(find /usr/lib -name pkcs11.so -path '*engines*' | head -n 1)
[ -n "$engine" ] || { echo "ERROR: libp11's engine (libengine-pkcs11-openssl) is missing"; exit 99; }
cat >openssl.cnf <<EOC
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $EV_MODULE
init = 0
EOC
export OPENSSL_CONF="$EV_TMP/openssl.cnf"

run $P11 --init-token --label ossl --so-pin "$SO_PIN"
run $P11 --token-label ossl --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
run $P11 --token-label ossl --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 \
	--label ec --id 01
run $P11 --token-label ossl --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 \
	--label rsa --id 02
K="pkcs11:token=ossl"
PIN="pin-value=$USER_PIN"
printf 'sign me\n' >data
run openssl dgst -sha256 -binary -out dgst data
printf 'other\n' >other
run openssl dgst -sha256 -binary -out other.dgst other

for k in ec rsa; do
	ok "export the $k public key" pubkey_der ossl label $k $k.der
	run openssl pkey -pubin -inform DER -in $k.der -out $k.pem
done

ok "pkeyutl -sign with the EC key" openssl pkeyutl -engine pkcs11 -keyform engine \
	-inkey "$K;object=ec;type=private;$PIN" -sign -in dgst -out ec.sig
ok "OpenSSL verifies the EC signature" openssl pkeyutl -verify -pubin -inkey ec.pem -in dgst \
	-sigfile ec.sig
ok "pkeyutl -sign RSA PKCS#1 v1.5" openssl pkeyutl -engine pkcs11 -keyform engine \
	-inkey "$K;object=rsa;type=private;$PIN" -sign -in dgst -out rsa.sig \
	-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pkcs1
ok "OpenSSL verifies the PKCS#1 v1.5 signature" openssl pkeyutl -verify -pubin -inkey rsa.pem \
	-in dgst -sigfile rsa.sig -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pkcs1
ok "pkeyutl -sign RSA-PSS" openssl pkeyutl -engine pkcs11 -keyform engine \
	-inkey "$K;object=rsa;type=private;$PIN" -sign -in dgst -out pss.sig \
	-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32
ok "OpenSSL verifies the PSS signature" openssl pkeyutl -verify -pubin -inkey rsa.pem \
	-in dgst -sigfile pss.sig -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss \
	-pkeyopt rsa_pss_saltlen:32
fails "a changed digest does not verify" 'Signature Verification Failure' \
	openssl pkeyutl -verify -pubin -inkey rsa.pem -in other.dgst -sigfile pss.sig \
	-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32
fails "the PSS signature is not a PKCS#1 v1.5 one" 'Signature Verification Failure' \
	openssl pkeyutl -verify -pubin -inkey rsa.pem -in dgst -sigfile pss.sig \
	-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pkcs1

ok "openssl req -x509 with a key in the token" openssl req -engine pkcs11 -keyform engine \
	-key "$K;object=ec;type=private;$PIN" -new -x509 -subj /CN=edgevault-openssl -days 2 \
	-sha256 -out cert.pem
ok "the certificate verifies and carries the token's key" sh -c \
	"openssl verify -CAfile cert.pem cert.pem &&
	 openssl x509 -in cert.pem -noout -pubkey | openssl pkey -pubin -outform DER >c.der &&
	 openssl pkey -pubin -in ec.pem -outform DER >k.der && cmp c.der k.der"
ok "store the certificate in the token (CKO_CERTIFICATE)" sh -c \
	"openssl x509 -in cert.pem -outform DER -out cert.der &&
	 $P11 --token-label ossl --login --pin '$USER_PIN' --write-object cert.der --type cert \
	 --label ec --id 01"
out_has "the engine finds the certificate in the token" '^CN = edgevault-openssl$' \
	"$EV_ENGINE_CERT" "$K;object=ec;type=cert"
# finds_only_first: one engine finds the certificate under its label, then
# none under another: the second lookup failed in an engine that works.
finds_only_first() {
	"$EV_ENGINE_CERT" "$K;object=ec;type=cert" "$K;object=nosuch;type=cert" >lookup.out 2>&1
	rc=$?
	cat lookup.out
	[ $rc -eq 1 ] && grep -qx 'CN = edgevault-openssl' lookup.out &&
		grep -qx 'engine_cert: no certificate at pkcs11:token=ossl;object=nosuch;type=cert' \
			lookup.out
}
ok "the engine finds no certificate under another label" finds_only_first

finish
