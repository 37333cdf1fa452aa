#!/bin/sh
# nginx serving TLS on 127.0.0.1 with its private keys in edgevault, through
# OpenSSL's libp11 engine ("engine:pkcs11:<URI>"), for an EC and an RSA key;
# curl verifies the server over TLS 1.2 and 1.3; nginx's workers, forked
# after the master loaded the module, serve a bounded burst of handshakes
# from parallel clients with no error in the error log. The OpenSSL
# configuration is conf/openssl-pkcs11.cnf.example, and nginx accepts
# conf/nginx.conf.example, with this machine's paths.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP" || exit 99

engine=$(find /usr/lib -name pkcs11.so -path '*engines*' | head -n 1)
[ -n "$engine" ] || { echo "ERROR: libp11's engine (libengine-pkcs11-openssl) is missing"; exit 99; }
run $P11 --init-token --label web --so-pin "$SO_PIN"
run $P11 --token-label web --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
run $P11 --token-label web --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 \
	--label web-ec --id 01
run $P11 --token-label web --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 \
	--label web-rsa --id 02

# The engine is loaded at OpenSSL start-up (init = 1), as nginx needs.
sed -e "s|^dynamic_path = .*|dynamic_path = $engine|" \
	-e "s|^MODULE_PATH = .*|MODULE_PATH = $EV_MODULE|" \
	-e "s|^PIN = .*|PIN = $USER_PIN|" "$EV_SRCDIR/conf/openssl-pkcs11.cnf.example" >openssl.cnf
run grep -qx "dynamic_path = $engine" openssl.cnf
run grep -qx "MODULE_PATH = $EV_MODULE" openssl.cnf
run grep -qx "PIN = $USER_PIN" openssl.cnf
run grep -qx "init = 1" openssl.cnf
export OPENSSL_CONF="$EV_TMP/openssl.cnf"

for k in ec rsa; do
	ok "certificate for the $k key, signed by the token" openssl req -engine pkcs11 \
		-keyform engine -key "pkcs11:token=web;object=web-$k;type=private" -new -x509 \
		-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -days 2 -sha256 \
		-out "web-$k.crt"
done

mkdir -p logs tmp
cat >http-paths.conf <<EOC
	access_log $EV_TMP/logs/example-access.log;
	client_body_temp_path $EV_TMP/tmp;
	proxy_temp_path $EV_TMP/tmp;
	fastcgi_temp_path $EV_TMP/tmp;
	uwsgi_temp_path $EV_TMP/tmp;
	scgi_temp_path $EV_TMP/tmp;
EOC
# The example with the certificate here and every path nginx writes in the
# test's directory. `nginx -t` loads the key from the token, and also binds
# its listening sockets: on 127.0.0.1 and a free port, not on *:443.
sed -e "s|/etc/nginx/tls/|$EV_TMP/|" -e "/^http {/r http-paths.conf" \
	-e "s|listen 443 ssl;|listen 127.0.0.1:$(ev_port) ssl;|" \
	"$EV_SRCDIR/conf/nginx.conf.example" >example.conf
run grep -q 'listen 127\.0\.0\.1:[0-9]* ssl;' example.conf
ok "conf/nginx.conf.example is valid and its key is found" nginx -p "$EV_TMP" \
	-e "$EV_TMP/logs/example-error.log" -g "pid $EV_TMP/example.pid;" -c "$EV_TMP/example.conf" -t

# The workers re-initialise the module after fork (libp11 does this), so the
# worker user must be able to read the configuration and use the store and
# the root token: here, where everything belongs to the test's user, that is
# the user itself (nginx ignores "user" when not started as root).
write_conf() {
	cat >nginx.conf <<EOC
daemon on;
master_process on;
user $(id -un);
worker_processes 2;
pid $EV_TMP/nginx.pid;
error_log $EV_TMP/logs/error.log info;
env OPENSSL_CONF;
env EDGEVAULT_CONF;
env SOFTHSM2_CONF;
env DBUS_SESSION_BUS_ADDRESS;
env EDGEVAULT_DEBUG;
events { worker_connections 64; }
http {
	log_format ev '\$pid \$status \$ssl_protocol \$server_port';
	access_log $EV_TMP/logs/access.log ev;
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
}

# Two ports nothing else uses; if another program takes one first, others.
EV_PIDFILES="$EV_PIDFILES $EV_TMP/nginx.pid"
for attempt in 1 2 3; do
	port_ec=$(ev_port)
	port_rsa=$(ev_port)
	[ "$port_ec" != "$port_rsa" ] || continue
	write_conf
	# nginx binds, then detaches: its exit status says whether it listens.
	# The module's debug lines (its stderr: the error log) say where its
	# TPM operations ran.
	EDGEVAULT_DEBUG=1 nginx -p "$EV_TMP" -e "$EV_TMP/logs/error.log" -c "$EV_TMP/nginx.conf" \
		>start.out 2>&1 && break
	grep -q 'Address already in use' start.out logs/error.log 2>/dev/null || break
done
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
	[ -s nginx.pid ] && break
	sleep 0.2
done
ok "nginx starts on 127.0.0.1:$port_ec (EC) and :$port_rsa (RSA)" sh -c \
	"[ -s nginx.pid ] || { cat start.out logs/error.log; exit 1; }"
master=$(cat nginx.pid 2>/dev/null)
[ -n "$master" ] || { finish; exit 1; }

ok "the master process has loaded the module" grep -qF "/$(basename "$EV_MODULE")" \
	"/proc/$master/maps"

# get KEY PORT VERSION: curl fetches the page over TLS VERSION, verifying
# the server with KEY's certificate.
get() {
	curl -sS -v --tlsv"$3" --tls-max "$3" --cacert "web-$1.crt" "https://127.0.0.1:$2/" \
		-o page 2>curl.err || { cat curl.err; return 1; }
	grep -q "SSL connection using TLSv$3 " curl.err || { cat curl.err; return 1; }
	[ "$(cat page)" = "hello from $1" ] || { cat curl.err page; return 1; }
}
for v in 1.2 1.3; do
	ok "curl over TLS $v verifies the EC server" get ec "$port_ec" "$v"
	ok "curl over TLS $v verifies the RSA server" get rsa "$port_rsa" "$v"
done

# served_key KEY PORT: the certificate the server presents carries the
# public key the token holds under web-KEY.
served_key() {
	openssl s_client -connect "127.0.0.1:$2" -CAfile "web-$1.crt" -verify_return_error \
		</dev/null >s_client.out 2>&1 || { cat s_client.out; return 1; }
	openssl x509 -in s_client.out -noout -pubkey >served.pem &&
		openssl pkey -pubin -in served.pem -outform DER -out served.der &&
		pubkey_der web label "web-$1" token.der && cmp served.der token.der
}
ok "the EC server presents the token's EC key" served_key ec "$port_ec"
ok "the RSA server presents the token's RSA key" served_key rsa "$port_rsa"

# burst: 4 clients at once, each 15 rounds of a TLS 1.3 and a TLS 1.2
# handshake on each server: 240 handshakes, every one verified.
client() {
	i=0
	while [ $i -lt 15 ]; do
		for s in "ec $port_ec" "rsa $port_rsa"; do
			set -- $s
			curl -sS --cacert "web-$1.crt" "https://127.0.0.1:$2/" -o /dev/null || return 1
			curl -sS --tls-max 1.2 --cacert "web-$1.crt" "https://127.0.0.1:$2/" -o /dev/null ||
				return 1
		done
		i=$((i + 1))
	done
}
burst() {
	pids=""
	for c in 1 2 3 4; do
		client >"client-$c.out" 2>&1 &
		pids="$pids $!"
	done
	failed=0
	for pid in $pids; do
		wait "$pid" || failed=1
	done
	cat client-*.out
	return $failed
}
lines_before=$(wc -l <logs/access.log)
ok "a burst of 240 handshakes from 4 parallel clients, all verified" burst

# workers_served: every request of the burst was answered, by a worker the
# master forked (a child of the master, not the master itself).
workers_served() {
	workers=$(ps -o pid= --ppid "$master" | tr -d ' ')
	echo "master $master, workers:" $workers
	tail -n +$((lines_before + 1)) logs/access.log >burst.log
	[ "$(wc -l <burst.log)" -eq 240 ] || { echo "$(wc -l <burst.log) requests logged, want 240"; return 1; }
	[ "$(grep -c ' 200 TLSv1.3 ' burst.log)" -eq 120 ] &&
		[ "$(grep -c ' 200 TLSv1.2 ' burst.log)" -eq 120 ] || { cat burst.log; return 1; }
	for pid in $(cut -d' ' -f1 burst.log | sort -u); do
		echo "served by $pid"
		echo "$workers" | grep -qx "$pid" || { echo "$pid is not a worker"; return 1; }
	done
}
ok "the handshakes were served by the master's forked workers" workers_served
# Through tpm2-abrmd, the workers are children of a master that reached it:
# their TPM operations (the zone unlock at their login) ran in
# edgevault-tpm-helper, as GLib's D-Bus does not survive fork
# (doc/key-protection.md, "Several processes").
if [ "$EV_ROOT" = tpm2-abrmd ]; then
	ok "the workers' TPM operations ran in edgevault-tpm-helper" \
		grep -q "which reached tpm2-abrmd: the operation runs in the TPM helper" logs/error.log
fi

# stop: nginx shuts down gracefully; the master exits after its workers.
stop() {
	kill -QUIT "$master" || return 1
	n=0
	while kill -0 "$master" 2>/dev/null; do
		[ $n -lt 100 ] || { echo "nginx master $master still running after 10 s"; return 1; }
		sleep 0.1
		n=$((n + 1))
	done
}
ok "nginx stops" stop
# no_errors LOG: the log exists, shows nginx working, and holds no error.
no_errors() {
	grep -q 'start worker process' "$1" || { echo "$1: nothing logged"; cat "$1"; return 1; }
	! grep -E '\[(error|crit|alert|emerg)\]' "$1"
}
ok "no error in nginx's error log, from start to exit" no_errors logs/error.log

finish
