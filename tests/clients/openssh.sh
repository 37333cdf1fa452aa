#!/bin/sh
# OpenSSH against edgevault: ssh-keygen -D lists the token's keys in
# authorized_keys form; a private sshd on 127.0.0.1 accepts logins with
# `ssh -I module` and `ssh -o PKCS11Provider=module` (EC and RSA keys), and
# through ssh-agent after `ssh-add -s module`.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
cd "$EV_TMP"

$P11 --init-token --label ssh --so-pin "$SO_PIN" >/dev/null 2>&1
$P11 --token-label ssh --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN" >/dev/null 2>&1
$P11 --token-label ssh --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 \
	--label ssh-ec --id 01 >/dev/null 2>&1
$P11 --token-label ssh --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 \
	--label ssh-rsa --id 02 >/dev/null 2>&1

# The PIN reaches ssh and ssh-add through an askpass program, never a terminal.
printf '#!/bin/sh\necho %s\n' "$USER_PIN" >askpass
chmod 700 askpass
export SSH_ASKPASS="$EV_TMP/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0

ok "ssh-keygen -D lists the EC key" sh -c \
	"ssh-keygen -D '$EV_MODULE' >keys.pub 2>keygen.err && grep -q '^ecdsa-sha2-nistp256 .* ssh-ec$' keys.pub"
ok "ssh-keygen -D lists the RSA key" grep -q '^ssh-rsa .* ssh-rsa$' keys.pub
ok "the listed EC key is the token's key" sh -c \
	"$P11 --token-label ssh --read-object --type pubkey --label ssh-ec --output-file ec.der &&
	 openssl pkey -pubin -inform DER -in ec.der -out ec.pem &&
	 ssh-keygen -i -m PKCS8 -f ec.pem | cut -d' ' -f2 >ec.want &&
	 grep ' ssh-ec$' keys.pub | cut -d' ' -f2 | cmp -s - ec.want"

# A private sshd: its own host key and authorized keys, loopback only.
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f hostkey
port=$((20000 + $$ % 20000))
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
/usr/sbin/sshd -f sshd_config -E sshd.log
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s sshd.pid ] && break; sleep 0.2; done
[ -s sshd.pid ] && EV_PIDS="$EV_PIDS $(cat sshd.pid)"
ok "sshd started on 127.0.0.1:$port" test -s sshd.pid

SSH="ssh -F none -p $port -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
	-o BatchMode=no -o PasswordAuthentication=no -o LogLevel=ERROR"
me=$(id -un)

grep ' ssh-ec$' keys.pub >authorized_keys
ok "ssh -I module logs in with the EC key" sh -c \
	"$SSH -I '$EV_MODULE' $me@127.0.0.1 echo logged-in-ec </dev/null | grep -qx logged-in-ec"
grep ' ssh-rsa$' keys.pub >authorized_keys
ok "ssh -o PKCS11Provider logs in with the RSA key" sh -c \
	"$SSH -o PKCS11Provider='$EV_MODULE' $me@127.0.0.1 echo logged-in-rsa </dev/null |
	 grep -qx logged-in-rsa"
: >authorized_keys
fails "a key not authorised is refused" sh -c \
	"$SSH -I '$EV_MODULE' $me@127.0.0.1 true </dev/null"

# ssh-agent holds the provider; logins go through the agent.
cat keys.pub | grep -v '^$' >authorized_keys
eval "$(ssh-agent -s -P "$(dirname "$EV_MODULE")/*")" >/dev/null
EV_PIDS="$EV_PIDS $SSH_AGENT_PID"
ok "ssh-add -s loads the token's keys into the agent" ssh-add -s "$EV_MODULE"
ok "the agent lists the EC and RSA keys" sh -c \
	"ssh-add -L >agent.pub && grep -q '^ecdsa-sha2-nistp256 ' agent.pub && grep -q '^ssh-rsa ' agent.pub"
ok "login through the agent" sh -c \
	"$SSH -o IdentityAgent='$SSH_AUTH_SOCK' $me@127.0.0.1 echo via-agent \
	 </dev/null | grep -qx via-agent"
ok "ssh-add -e removes the provider" ssh-add -e "$EV_MODULE"
ok "the agent is empty again" sh -c "! ssh-add -L >/dev/null 2>&1"

finish
