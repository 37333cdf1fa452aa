#!/bin/sh
# nginx serving TLS on 127.0.0.1 with its private keys in edgevault, through
# OpenSSL's libp11 engine ("engine:pkcs11:<URI>"), for an EC and an RSA key;
# curl verifies the server over TLS 1.2 and 1.3; nginx's workers (forked
# after the master loaded the module) serve a bounded burst of handshakes.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP"

engine=$(find /usr/lib -name pkcs11.so -path '*engines*' | head -n 1)
[ -n "$engine" ] || { echo "libp11's engine (libengine-pkcs11-openssl) is missing"; exit 1; }
$P11 --init-token --label web --so-pin "$SO_PIN" >/dev/null 2>&1
$P11 --token-label web --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN" >/dev/null 2>&1
$P11 --token-label web --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 \
	--label web-ec --id 01 >/dev/null 2>&1
$P11 --token-label web --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 \
	--label web-rsa --id 02 >/dev/null 2>&1

# The engine is loaded at OpenSSL start-up (init = 1), as nginx needs.
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
PIN = $USER_PIN
init = 1
EOC
export OPENSSL_CONF="$EV_TMP/openssl.cnf"

for k in ec rsa; do
	ok "certificate for the $k key, signed by the token" openssl req -engine pkcs11 \
		-keyform engine -key "pkcs11:token=web;object=web-$k;type=private" -new -x509 \
		-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -days 2 -sha256 \
		-out "web-$k.crt"
done

port_ec=$((20000 + $$ % 20000))
port_rsa=$((port_ec + 1))
mkdir -p logs tmp
# The workers re-initialise the module after fork (libp11 does this), so the
# worker user must be able to read the configuration and use the store and
# the root token: here, where everything belongs to root, that is root.
cat >nginx.conf <<EOC
daemon on;
master_process on;
user root;
worker_processes 2;
pid $EV_TMP/nginx.pid;
error_log $EV_TMP/logs/error.log info;
env OPENSSL_CONF;
env EDGEVAULT_CONF;
env SOFTHSM2_CONF;
events { worker_connections 64; }
http {
	access_log $EV_TMP/logs/access.log;
	client_body_temp_path $EV_TMP/tmp;
	proxy_temp_path $EV_TMP/tmp;
	fastcgi_temp_path $EV_TMP/tmp;
	uwsgi_temp_path $EV_TMP/tmp;
	scgi_temp_path $EV_TMP/tmp;
	server {
		listen 127.0.0.1:$port_ec ssl;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_certificate $EV_TMP/web-ec.crt;
		ssl_certificate_key "engine:pkcs11:pkcs11:token=web;object=web-ec;type=private";
		location / { return 200 "hello from ec\n"; }
	}
	server {
		listen 127.0.0.1:$port_rsa ssl;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_certificate $EV_TMP/web-rsa.crt;
		ssl_certificate_key "engine:pkcs11:pkcs11:token=web;object=web-rsa;type=private";
		location / { return 200 "hello from rsa\n"; }
	}
}
EOC
ok "nginx configuration is valid" nginx -p "$EV_TMP" -c "$EV_TMP/nginx.conf" -t
ok "nginx starts" nginx -p "$EV_TMP" -c "$EV_TMP/nginx.conf"
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s nginx.pid ] && break; sleep 0.2; done
[ -s nginx.pid ] && EV_PIDS="$EV_PIDS $(cat nginx.pid)"

for k in ec rsa; do
	[ $k = ec ] && port=$port_ec || port=$port_rsa
	for v in 1.2 1.3; do
		ok "curl over TLS $v verifies the $k server" sh -c \
			"curl -sS --tlsv$v --tls-max $v --cacert web-$k.crt https://127.0.0.1:$port/ |
			 grep -qx 'hello from $k'"
	done
done
ok "the EC server's key is the token's key" sh -c \
	"openssl s_client -connect 127.0.0.1:$port_ec -CAfile web-ec.crt </dev/null 2>/dev/null |
	 grep -q 'Verify return code: 0 (ok)'"
ok "a burst of 60 handshakes on each server, all verified" sh -c "
	i=0
	while [ \$i -lt 30 ]; do
		curl -sS --cacert web-ec.crt https://127.0.0.1:$port_ec/ -o /dev/null || exit 1
		curl -sS --cacert web-ec.crt https://127.0.0.1:$port_ec/ --tls-max 1.2 -o /dev/null || exit 1
		curl -sS --cacert web-rsa.crt https://127.0.0.1:$port_rsa/ -o /dev/null || exit 1
		curl -sS --cacert web-rsa.crt https://127.0.0.1:$port_rsa/ --tls-max 1.2 -o /dev/null || exit 1
		i=\$((i + 1))
	done"
ok "the handshakes were served by the workers, not the master" sh -c \
	"[ \$(awk '{print \$1}' logs/access.log | wc -l) -ge 120 ]"
ok "no error in nginx's error log" sh -c "! grep -E '\\[(error|crit|alert|emerg)\\]' logs/error.log"

ok "nginx stops" sh -c "kill -QUIT \$(cat nginx.pid)"
finish
