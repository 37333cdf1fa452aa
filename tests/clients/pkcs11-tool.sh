#!/bin/sh
# OpenSC's pkcs11-tool against edgevault: token and PIN set-up, key pair
# generation, signing (verified by OpenSSL), reading objects, and its own
# self-test.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP" || exit 99
printf 'the data to sign\n' >data

ok "init-token" $P11 --init-token --label demo --so-pin "$SO_PIN"
ok "init-pin" $P11 --token-label demo --login --login-type so --so-pin "$SO_PIN" \
	--init-pin --pin "$USER_PIN"
ok "list-slots shows the zone" sh -c "$P11 --list-slots | grep -q 'token label *: demo'"
ok "keypairgen EC P-256" $P11 --token-label demo --login --pin "$USER_PIN" \
	--keypairgen --key-type EC:prime256v1 --label ec1 --id 01
ok "keypairgen RSA 2048" $P11 --token-label demo --login --pin "$USER_PIN" \
	--keypairgen --key-type rsa:2048 --label rsa1 --id 02
fails "wrong PIN refused" 'C_Login failed: rv = CKR_PIN_INCORRECT' \
	$P11 --token-label demo --login --pin wrong-pin --list-objects --type privkey

ok "sign ECDSA-SHA256" $P11 --token-label demo --login --pin "$USER_PIN" --sign \
	--id 01 --mechanism ECDSA-SHA256 --signature-format openssl \
	--input-file data --output-file ec.sig
# Not pkcs11-tool's own --read-object for an EC key: see tests/clients/pubkey.py.
ok "read EC public key" pubkey_der demo id 01 ec.pub.der
ok "OpenSSL verifies the EC signature" sh -c \
	"openssl pkey -pubin -inform DER -in ec.pub.der -out ec.pub.pem &&
	 openssl dgst -sha256 -verify ec.pub.pem -signature ec.sig data"

ok "sign SHA256-RSA-PKCS" $P11 --token-label demo --login --pin "$USER_PIN" --sign \
	--id 02 --mechanism SHA256-RSA-PKCS --input-file data --output-file rsa.sig
ok "read RSA public key" $P11 --token-label demo --read-object --type pubkey --id 02 \
	--output-file rsa.pub.der
ok "OpenSSL verifies the RSA signature" sh -c \
	"openssl pkey -pubin -inform DER -in rsa.pub.der -out rsa.pub.pem &&
	 openssl dgst -sha256 -verify rsa.pub.pem -signature rsa.sig data"
ok "sign RSA-PSS" $P11 --token-label demo --login --pin "$USER_PIN" --sign \
	--id 02 --mechanism SHA256-RSA-PKCS-PSS --input-file data --output-file pss.sig
ok "OpenSSL verifies the PSS signature" openssl dgst -sha256 -verify rsa.pub.pem \
	-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 -signature pss.sig data

# both_private_keys_protected: each of the two private keys is sensitive,
# never extractable and generated on the token.
both_private_keys_protected() {
	$P11 --token-label demo --login --pin "$USER_PIN" --list-objects --type privkey >priv.txt ||
		return 1
	cat priv.txt
	[ "$(grep -c '^Private Key Object' priv.txt)" -eq 2 ] &&
		[ "$(grep -c 'Access: *sensitive, always sensitive, never extractable, local$' \
			priv.txt)" -eq 2 ]
}
ok "private keys are sensitive and never extractable" both_private_keys_protected
ok "list objects shows both halves of ec1" sh -c \
	"$P11 --token-label demo --login --pin '$USER_PIN' --list-objects >objects.txt &&
	 [ \$(grep -c 'label: *ec1\$' objects.txt) -eq 2 ] || { cat objects.txt; exit 1; }"

# pkcs11-tool's self-test reports a mechanism it cannot use as skipped, not
# as an error: the parts the module must pass are named here. (Its signature
# part runs only on mechanisms flagged CKF_HW, which a software module does
# not claim; signing is checked above.)
self_test() {
	$P11 --token-label demo --login --pin "$USER_PIN" --test >test.out 2>&1
	rc=$?
	cat test.out
	[ $rc -eq 0 ] || { echo "pkcs11-tool --test exit status $rc"; return 1; }
	grep -qx 'No errors' test.out || return 1
	if grep -v '^No errors$' test.out | grep -E -i 'fail|error|mechanism not supported|mismatch|match input'; then
		return 1
	fi
	grep -q '^  seems to be OK$' test.out || { echo "random: not OK"; return 1; }
	grep -q '^  all 4 digest functions seem to work$' test.out || { echo "digests"; return 1; }
	# RSA-PKCS is verified, and decrypted, with the RSA key.
	[ "$(grep -c '^    RSA-PKCS: OK$' test.out)" -eq 2 ] || { echo "RSA-PKCS: not twice OK"; return 1; }
	# RSA-OAEP with SHA-256, once with a label (encoding parameter), once without.
	grep -q 'OAEP parameters: hashAlg=SHA256, mgf=MGF1-SHA256, encoding parameter (Label) present' \
		test.out &&
		grep -q 'OAEP parameters: hashAlg=SHA256, mgf=MGF1-SHA256, encoding parameter (Label) not present' \
		test.out || { echo "RSA-OAEP SHA-256 with and without a label: not tested"; return 1; }
	# Each RSA-PKCS-OAEP decryption ends with OK (on its line or the next).
	awk '/RSA-PKCS-OAEP:/ { n++; if ($0 ~ /OK$/) ok++; else if ((getline l) > 0 && l == "OK") ok++ }
	     END { if (n < 2 || ok != n) { printf "RSA-PKCS-OAEP: %d run, %d OK\n", n, ok; exit 1 } }' \
		test.out
}
ok "pkcs11-tool --test" self_test

finish
