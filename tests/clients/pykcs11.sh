#!/bin/sh
# PyKCS11 (Debian's python3-pykcs11) against edgevault.
. "$(dirname "$0")/lib.sh"

P11="pkcs11-tool --module $EV_MODULE"
$P11 --init-token --label python --so-pin "$SO_PIN" >/dev/null 2>&1
$P11 --token-label python --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN" >/dev/null 2>&1
# Debian's interpreter: PyKCS11 is a Debian package, not in any other Python.
exec /usr/bin/python3 "$(dirname "$0")/pykcs11_client.py" "$EV_MODULE" python "$USER_PIN"
