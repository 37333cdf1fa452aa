"""A PyKCS11 client of edgevault: log in, generate, find, sign, verify,
and ask for slot events without blocking. Run by pykcs11.sh, which sets up
the zone and runs it in the test's directory; prints one PASS/FAIL line per
check and the summary line."""
import subprocess
import sys

import PyKCS11
from PyKCS11 import LowLevel

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("PASS: " + name)
    else:
        failed += 1
        print("FAIL: " + name + (": " + detail if detail else ""))


def finish():
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 else 1)


def der_int(b):
    b = b.lstrip(b"\0") or b"\0"
    if b[0] & 0x80:
        b = b"\0" + b
    return bytes([2, len(b)]) + b


def openssl_verifies_p256(ec_point, data, sig):
    """OpenSSL, not the module, verifies the raw ECDSA signature r||s over
    data with the P-256 public key whose CKA_EC_POINT is given."""
    point = bytes(ec_point)[2:]  # the DER OCTET STRING around 04||X||Y
    spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + point
    half = len(sig) // 2
    body = der_int(sig[:half]) + der_int(sig[half:])
    for name, value in (("py-ec.der", spki), ("py.data", data),
                        ("py.sig", bytes([0x30, len(body)]) + body)):
        with open(name, "wb") as f:
            f.write(value)
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", "py-ec.der", "-keyform", "DER",
                        "-signature", "py.sig", "py.data"], capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def expect_error(name, code, fn, *args):
    try:
        fn(*args)
    except PyKCS11.PyKCS11Error as e:
        check(name, e.value == code, "got " + str(e))
        return
    check(name, False, "no error")


module, label, user_pin = sys.argv[1:4]
lib = PyKCS11.PyKCS11Lib()
lib.load(module)

info = lib.getInfo()
check("C_GetInfo names edgevault", info.manufacturerID.strip() == "edgevault")
slots = [s for s in lib.getSlotList(tokenPresent=True)
         if lib.getTokenInfo(s).label.strip() == label]
check("the zone is in the slot list", len(slots) == 1, str(slots))
if not slots:
    finish()
slot = slots[0]

# Nothing has happened: a non-blocking wait answers CKR_NO_EVENT.
expect_error("C_WaitForSlotEvent(CKF_DONT_BLOCK) is CKR_NO_EVENT", LowLevel.CKR_NO_EVENT,
             lib.waitForSlotEvent, PyKCS11.CKF_DONT_BLOCK)

session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
expect_error("a wrong PIN is CKR_PIN_INCORRECT", LowLevel.CKR_PIN_INCORRECT, session.login,
             "wrong-pin")
session.login(user_pin)
check("logged in", session.getSessionInfo().state == PyKCS11.CKS_RW_USER_FUNCTIONS)

p256 = bytes.fromhex("06082a8648ce3d030107")
pub, priv = session.generateKeyPair(
    [(PyKCS11.CKA_EC_PARAMS, p256), (PyKCS11.CKA_TOKEN, True),
     (PyKCS11.CKA_LABEL, "py-ec"), (PyKCS11.CKA_ID, b"\x42"), (PyKCS11.CKA_VERIFY, True)],
    [(PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_LABEL, "py-ec"), (PyKCS11.CKA_ID, b"\x42"),
     (PyKCS11.CKA_SIGN, True)],
    mecha=PyKCS11.MechanismECGENERATEKEYPAIR)
check("generated an EC key pair", pub is not None and priv is not None)

rsa_pub, rsa_priv = session.generateKeyPair(
    [(PyKCS11.CKA_MODULUS_BITS, 2048), (PyKCS11.CKA_TOKEN, True),
     (PyKCS11.CKA_LABEL, "py-rsa"), (PyKCS11.CKA_VERIFY, True)],
    [(PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_LABEL, "py-rsa"), (PyKCS11.CKA_SIGN, True)],
    mecha=PyKCS11.MechanismRSAGENERATEKEYPAIR)

found = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
                             (PyKCS11.CKA_LABEL, "py-ec")])
check("found the private key by class and label", len(found) == 1)
found = session.findObjects([(PyKCS11.CKA_ID, b"\x42")])
check("found both halves by CKA_ID", len(found) == 2)

data = b"signed from python"
sig = bytes(session.sign(priv, data, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA256)))
check("ECDSA signature is 64 bytes", len(sig) == 64)
check("the module verifies it",
      session.verify(pub, data, sig, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA256)))
verified, detail = openssl_verifies_p256(
    session.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT])[0], data, sig)
check("OpenSSL verifies it with the token's public key", verified, detail)
bad = bytes([sig[0] ^ 1]) + sig[1:]
check("a changed signature does not verify",
      not session.verify(pub, data, bad, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA256)))

pss = PyKCS11.RSA_PSS_Mechanism(PyKCS11.CKM_SHA256_RSA_PKCS_PSS, PyKCS11.CKM_SHA256,
                                PyKCS11.CKG_MGF1_SHA256, 32)
sig = bytes(session.sign(rsa_priv, data, pss))
check("RSA-PSS signature is 256 bytes", len(sig) == 256)
check("the module verifies the PSS signature", session.verify(rsa_pub, data, sig, pss))

value = session.getAttributeValue(priv, [PyKCS11.CKA_SENSITIVE, PyKCS11.CKA_EXTRACTABLE])
check("the private key is sensitive and not extractable", value == [True, False], str(value))

session.logout()
found = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY)])
check("after logout no private key is found", len(found) == 0)
session.closeSession()

finish()
