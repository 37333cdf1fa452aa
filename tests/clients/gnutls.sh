#!/bin/sh
# GnuTLS against edgevault: p11tool lists tokens and objects, exports public
# keys and test-signs with EC, Ed25519 and RSA keys; certtool makes a
# self-signed certificate with a key that stays in the token.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP" || exit 99
export GNUTLS_PIN="$USER_PIN"

run $P11 --init-token --label gnutls --so-pin "$SO_PIN"
run $P11 --token-label gnutls --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
for k in "EC:prime256v1 ec 01" "EC:edwards25519 ed 02" "rsa:2048 rsa 03"; do
	set -- $k
	run $P11 --token-label gnutls --login --pin "$USER_PIN" --keypairgen --key-type "$1" \
		--label "$2" --id "$3"
done
T="pkcs11:token=gnutls"

# list_count N TYPE [--login]: p11tool --list-all on the whole zone succeeds
# and lists exactly N objects of TYPE (private, public) and no other type.
list_count() {
	want=$1
	type=$2
	shift 2
	p11tool --provider "$EV_MODULE" "$@" --list-all "$T" >list.txt 2>&1 || {
		cat list.txt
		return 1
	}
	n=$(grep -c "URL: .*;type=$type\$" list.txt)
	other=$(grep 'URL: ' list.txt | grep -vc ";type=$type\$")
	[ "$n" -eq "$want" ] && [ "$other" -eq 0 ] || {
		cat list.txt
		echo "want $want objects of type $type and no other: $n of type $type, $other other"
		return 1
	}
}

# same_key PEM-A PEM-B: the two public keys are the same.
same_key() {
	openssl pkey -pubin -in "$1" -outform DER -out a.der &&
		openssl pkey -pubin -in "$2" -outform DER -out b.der && cmp a.der b.der
}

out_has "p11tool --list-tokens shows the zone" '^	Label: gnutls$' \
	p11tool --provider "$EV_MODULE" --list-tokens
ok "p11tool --list-all --login shows the three key pairs" sh -c \
	"p11tool --provider '$EV_MODULE' --login --list-all '$T' >login.txt &&
	 [ \$(grep -c 'URL: .*;type=private\$' login.txt) -eq 3 ] &&
	 [ \$(grep -c 'URL: .*;type=public\$' login.txt) -eq 3 ] || { cat login.txt; exit 1; }"
ok "p11tool --list-all --login shows only private keys under type=private" sh -c \
	"p11tool --provider '$EV_MODULE' --login --list-all '$T;type=private' >priv.txt &&
	 [ \$(grep -c 'URL: .*;type=private\$' priv.txt) -eq 3 ] &&
	 [ \$(grep -c 'URL: ' priv.txt) -eq 3 ] || { cat priv.txt; exit 1; }"
# Without a login the zone shows its public keys, and only them.
ok "p11tool --list-all without login shows only the three public keys" list_count 3 public

# pubkey NAME PATTERN: p11tool exports NAME's public key, OpenSSL reads it as
# the right type (its text matches PATTERN), and it is the key pkcs11-tool
# reads from the token.
pubkey() {
	ok "p11tool --export-pubkey $1" p11tool --provider "$EV_MODULE" --login \
		--export-pubkey "$T;object=$1;type=public" --outfile "$1.pub.pem"
	out_has "OpenSSL reads the exported $1 key as such" "$2" \
		openssl pkey -pubin -in "$1.pub.pem" -noout -text_pub
	run pubkey_der gnutls label "$1" "$1.p11.der"
	run openssl pkey -pubin -inform DER -in "$1.p11.der" -out "$1.p11.pem"
	ok "the exported $1 key is the token's key" same_key "$1.pub.pem" "$1.p11.pem"
}
pubkey ec '^Public-Key: \(256 bit\)'
pubkey ed '^ED25519 Public-Key:'
pubkey rsa '^Public-Key: \(2048 bit\)'

# --test-sign signs, then verifies against the private key's parameters and
# against the public key in the token; it exits non-zero if either fails.
out_has "p11tool --test-sign EC" 'against public key in the token\.\.\. ok' \
	p11tool --provider "$EV_MODULE" --login --test-sign "$T;object=ec;type=private"
out_has "p11tool --test-sign Ed25519" 'against public key in the token\.\.\. ok' \
	p11tool --provider "$EV_MODULE" --login --hash SHA512 --test-sign "$T;object=ed;type=private"
out_has "p11tool --test-sign RSA" 'against public key in the token\.\.\. ok' \
	p11tool --provider "$EV_MODULE" --login --test-sign "$T;object=rsa;type=private"
out_has "p11tool --test-sign RSA-PSS" 'Signing using RSA-PSS-SHA256\.\.\. ok' \
	p11tool --provider "$EV_MODULE" --login --sign-params RSA-PSS \
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
	"openssl x509 -in cert.pem -noout -pubkey >cert.pub.pem &&
	 openssl pkey -pubin -in cert.pub.pem -outform DER -out c.der &&
	 openssl pkey -pubin -in ec.pub.pem -outform DER -out k.der && cmp c.der k.der"

finish
