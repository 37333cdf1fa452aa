#!/bin/sh
# OpenSSH against edgevault: ssh-keygen -D lists the token's keys in
# authorized_keys form; a private sshd on 127.0.0.1 accepts logins with
# `ssh -I module` and `ssh -o PKCS11Provider=module` (EC and RSA keys), and
# through ssh-agent after `ssh-add -s module`. The zone also holds an Ed25519
# key: an OpenSSH that supports Ed25519 through PKCS#11 (newer than 9.2) must
# list the token's key; 9.2 (Debian 12) must skip it and still work.
#
# conf/ssh_config.example is used as shipped, with the module's path here.
#
# Written outside the test's directory: /run/sshd, sshd's compiled-in
# privilege separation directory, is created if missing; the logins run the
# invoking user's shell with its start-up files, as any ssh login does.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP" || exit 99

run $P11 --init-token --label ssh --so-pin "$SO_PIN"
run $P11 --token-label ssh --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
run $P11 --token-label ssh --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 \
	--label ssh-ec --id 01
run $P11 --token-label ssh --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 \
	--label ssh-rsa --id 02
run $P11 --token-label ssh --login --pin "$USER_PIN" --keypairgen --key-type EC:edwards25519 \
	--label ssh-ed --id 03

# The PIN reaches ssh and ssh-add through an askpass program, never a terminal.
printf '#!/bin/sh\necho %s\n' "$USER_PIN" >askpass
chmod 700 askpass
export SSH_ASKPASS="$EV_TMP/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0

ok "ssh-keygen -D lists the EC key" sh -c \
	"ssh-keygen -D '$EV_MODULE' >keys.pub 2>keygen.err && grep -q '^ecdsa-sha2-nistp256 .* ssh-ec$' keys.pub ||
	 { cat keygen.err keys.pub; exit 1; }"
out_has "ssh-keygen -D lists the RSA key" '^ssh-rsa .* ssh-rsa$' cat keys.pub
# same_as_token LABEL: the key ssh-keygen -D listed under LABEL is the token's.
same_as_token() {
	pubkey_der ssh label "$1" "$1.der" &&
		openssl pkey -pubin -in "$1.der" -out "$1.pem" &&
		ssh-keygen -i -m PKCS8 -f "$1.pem" | cut -d' ' -f2 >"$1.want" &&
		grep " $1\$" keys.pub | cut -d' ' -f2 | cmp - "$1.want"
}
ok "the listed EC key is the token's key" same_as_token ssh-ec
ok "the listed RSA key is the token's key" same_as_token ssh-rsa
if grep -q '^ssh-ed25519 ' keys.pub; then
	ok "the listed Ed25519 key is the token's key" same_as_token ssh-ed
else
	echo "note: this OpenSSH ($(ssh -V 2>&1)) skips Ed25519 keys in PKCS#11 tokens"
fi

# A private sshd: its own host key and authorized keys, loopback only, on a
# port nothing else uses; if another program takes it first, another port.
mkdir -p /run/sshd
run ssh-keygen -q -t ed25519 -N '' -f hostkey
: >authorized_keys
for attempt in 1 2 3; do
	port=$(ev_port)
	cat >sshd_config <<EOC
ListenAddress 127.0.0.1:$port
HostKey $EV_TMP/hostkey
PidFile $EV_TMP/sshd.pid
AuthorizedKeysFile $EV_TMP/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
LogLevel VERBOSE
EOC
	# sshd binds, then detaches: its exit status says whether it listens.
	/usr/sbin/sshd -f "$EV_TMP/sshd_config" -E "$EV_TMP/sshd.log" && break
	port=""
done
EV_PIDFILES="$EV_PIDFILES $EV_TMP/sshd.pid"
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
	[ -s sshd.pid ] && break
	sleep 0.2
done
ok "sshd started on 127.0.0.1:${port:-(none)}" sh -c "[ -n '$port' ] && [ -s sshd.pid ] ||
	{ cat sshd.log; exit 1; }"

SSH="ssh -F none -p ${port:-22} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
	-o BatchMode=no -o PasswordAuthentication=no -o LogLevel=ERROR"
me=$(id -un)

grep ' ssh-ec$' keys.pub >authorized_keys
out_has "ssh -I module logs in with the EC key" '^logged-in-ec$' \
	$SSH -I "$EV_MODULE" "$me@127.0.0.1" echo logged-in-ec
grep ' ssh-rsa$' keys.pub >authorized_keys
out_has "ssh -o PKCS11Provider logs in with the RSA key" '^logged-in-rsa$' \
	$SSH -o PKCS11Provider="$EV_MODULE" "$me@127.0.0.1" echo logged-in-rsa
# conf/ssh_config.example as it stands, with the module's path here, behind
# a block that points an edge-* name at the private sshd.
cat >ssh_config <<EOC
Host edge-test
	HostName 127.0.0.1
	Port ${port:-22}
	StrictHostKeyChecking no
	UserKnownHostsFile /dev/null
	PasswordAuthentication no
	LogLevel ERROR
EOC
sed "s|/usr/lib/x86_64-linux-gnu/pkcs11/edgevault-pkcs11.so|$EV_MODULE|" \
	"$EV_SRCDIR/conf/ssh_config.example" >>ssh_config
run grep -q "PKCS11Provider $EV_MODULE\$" ssh_config
out_has "ssh with conf/ssh_config.example logs in with the RSA key" '^logged-in-example$' \
	ssh -F "$EV_TMP/ssh_config" "$me@edge-test" echo logged-in-example
: >authorized_keys
fails "a key not authorised is refused" 'Permission denied \(publickey\)' \
	$SSH -I "$EV_MODULE" "$me@127.0.0.1" true

# ssh-agent holds the provider; logins go through the agent. Its socket is
# in the test's directory.
grep -v '^$' keys.pub >authorized_keys
run ssh-agent -s -a "$EV_TMP/agent.sock" -P "$(dirname "$EV_MODULE")/*"
eval "$(cat "$EV_TMP/setup.out")" >/dev/null
EV_PIDS="$EV_PIDS ${SSH_AGENT_PID:?ssh-agent printed no PID}"
ok "ssh-add -s loads the token's keys into the agent" ssh-add -s "$EV_MODULE"
ok "the agent lists the EC and RSA keys" sh -c \
	"ssh-add -L >agent.pub && grep -q '^ecdsa-sha2-nistp256 ' agent.pub &&
	 grep -q '^ssh-rsa ' agent.pub || { cat agent.pub; exit 1; }"
out_has "login through the agent" '^via-agent$' \
	$SSH -o IdentityAgent="$SSH_AUTH_SOCK" "$me@127.0.0.1" echo via-agent
ok "ssh-add -e removes the provider" ssh-add -e "$EV_MODULE"
fails "the agent is empty again" '^The agent has no identities\.$' ssh-add -L

finish
