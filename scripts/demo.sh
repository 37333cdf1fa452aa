#!/bin/sh
# The demo on the embedded default: a SoftHSMv2 token as the root of trust.
# Installs what is needed, builds, creates a zone, generates keys and signs
# with them through pkcs11-tool and through OpenSSL (libp11's engine), and
# checks every signature with OpenSSL outside the module.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

say() { printf '\n== %s\n' "$*"; }

say "Installing packages and building edgevault"
sh scripts/deps.sh
sh scripts/build.sh
module="$top/.libs/edgevault-pkcs11.so"
tool="$top/tools/edgevault"

demo=${EDGEVAULT_DEMO_DIR:-/tmp/edgevault-demo}
rm -rf "$demo"
mkdir -p "$demo/tokens"
cd "$demo"

say "Setting up the root of trust: a SoftHSMv2 token labelled 'root'"
cat >softhsm2.conf <<EOC
directories.tokendir = $demo/tokens
objectstore.backend = file
log.level = ERROR
EOC
export SOFTHSM2_CONF="$demo/softhsm2.conf"
softhsm2-util --init-token --free --label root --pin root-pin-1234 --so-pin root-so-1234 >/dev/null
printf 'root-pin-1234\n' >root.pin
chmod 600 root.pin
cat >edgevault.conf <<EOC
[store]
dir = $demo/store
[device]
id = demo-device
[root]
backend = pkcs11
module = /usr/lib/softhsm/libsofthsm2.so
token_label = root
pin_file = $demo/root.pin
key_label = edgevault-root
EOC
export EDGEVAULT_CONF="$demo/edgevault.conf"
export EDGEVAULT_MODULE="$module"

say "edgevault init: check the configuration, create the root key inside the root token, create the store"
"$tool" init

say "Creating a zone (a token) with pkcs11-tool: SO PIN, then the user PIN"
p11="pkcs11-tool --module $module"
$p11 --init-token --label demo-zone --so-pin so-pin-1234 >/dev/null
$p11 --token-label demo-zone --login --login-type so --so-pin so-pin-1234 \
	--init-pin --pin user-pin-1234 >/dev/null
"$tool" zone list

say "Generating an EC P-256 key pair and an RSA-2048 key pair in the zone"
$p11 --token-label demo-zone --login --pin user-pin-1234 --keypairgen \
	--key-type EC:prime256v1 --label ec-key --id 01 >/dev/null
$p11 --token-label demo-zone --login --pin user-pin-1234 --keypairgen \
	--key-type rsa:2048 --label rsa-key --id 02 >/dev/null
$p11 --token-label demo-zone --login --pin user-pin-1234 --list-objects --type privkey

say "Signing with pkcs11-tool (ECDSA-SHA256); OpenSSL verifies with the exported public key"
printf 'hello from the edge\n' >data
$p11 --token-label demo-zone --login --pin user-pin-1234 --sign --id 01 \
	--mechanism ECDSA-SHA256 --signature-format openssl --input-file data --output-file ec.sig
$p11 --token-label demo-zone --read-object --type pubkey --id 01 --output-file ec.pub.der
openssl pkey -pubin -inform DER -in ec.pub.der -out ec.pub.pem
openssl dgst -sha256 -verify ec.pub.pem -signature ec.sig data

say "Signing with OpenSSL through libp11's engine (RSA, PKCS#1 v1.5), verified by OpenSSL"
engine=$(find /usr/lib -name pkcs11.so -path '*engines*' | head -n 1)
cat >openssl.cnf <<EOC
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $module
init = 0
EOC
$p11 --token-label demo-zone --read-object --type pubkey --id 02 --output-file rsa.pub.der
openssl pkey -pubin -inform DER -in rsa.pub.der -out rsa.pub.pem
OPENSSL_CONF="$demo/openssl.cnf" openssl dgst -sha256 -engine pkcs11 -keyform engine \
	-sign "pkcs11:token=demo-zone;object=rsa-key;type=private;pin-value=user-pin-1234" \
	-out rsa.sig data 2>engine.log || { cat engine.log; exit 1; }
openssl dgst -sha256 -verify rsa.pub.pem -signature rsa.sig data

say "Status"
"$tool" status

say "Done. Everything lives in $demo: the root token (tokens/), the store (store/), the config."
echo "The zone key is sealed by the root key inside SoftHSMv2; the keys above are wrapped by"
echo "the zone key in store/edgevault.db and never stored in the clear."
