#!/bin/sh
# PyKCS11 (Debian's python3-pykcs11) against edgevault.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
client="$(cd "$(dirname "$0")" && pwd)/pykcs11_client.py"
cd "$EV_TMP" || exit 99
run $P11 --init-token --label python --so-pin "$SO_PIN"
run $P11 --token-label python --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
# Debian's interpreter: PyKCS11 is a Debian package, not in any other Python.
# Not exec'ed: the shell's EXIT trap must still remove the directory.
/usr/bin/python3 "$client" "$EV_MODULE" python "$USER_PIN"
