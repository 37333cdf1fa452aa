#!/bin/sh
# OpenSC's pkcs11-tool against edgevault: token and PIN set-up, key pair
# generation, signing (verified by OpenSSL), reading objects, and its own
# self-test.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP"
printf 'the data to sign\n' >data

ok "init-token" $P11 --init-token --label demo --so-pin "$SO_PIN"
ok "init-pin" $P11 --token-label demo --login --login-type so --so-pin "$SO_PIN" \
	--init-pin --pin "$USER_PIN"
ok "list-slots shows the zone" sh -c "$P11 --list-slots | grep -q 'token label *: demo'"
ok "keypairgen EC P-256" $P11 --token-label demo --login --pin "$USER_PIN" \
	--keypairgen --key-type EC:prime256v1 --label ec1 --id 01
ok "keypairgen RSA 2048" $P11 --token-label demo --login --pin "$USER_PIN" \
	--keypairgen --key-type rsa:2048 --label rsa1 --id 02
fails "wrong PIN refused" $P11 --token-label demo --login --pin wrong-pin --list-objects \
	--type privkey

ok "sign ECDSA-SHA256" $P11 --token-label demo --login --pin "$USER_PIN" --sign \
	--id 01 --mechanism ECDSA-SHA256 --signature-format openssl \
	--input-file data --output-file ec.sig
ok "read EC public key" $P11 --token-label demo --read-object --type pubkey --id 01 \
	--output-file ec.pub.der
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

ok "private keys are sensitive and never extractable" sh -c \
	"$P11 --token-label demo --login --pin '$USER_PIN' --list-objects --type privkey |
	grep -q 'Access: *sensitive, always sensitive, never extractable, local'"
ok "list objects" sh -c "$P11 --token-label demo --login --pin '$USER_PIN' --list-objects |
	grep -c 'label: *ec1' | grep -q 2"
ok "pkcs11-tool --test" sh -c "$P11 --token-label demo --login --pin '$USER_PIN' --test >test.out 2>&1;
	rc=\$?; cat test.out; [ \$rc -eq 0 ] && grep -q '^No errors' test.out &&
	! grep -v '^No errors' test.out | grep -qiE 'fail|error'"

finish
