#!/usr/bin/python3
"""Write a token's public key, as DER SubjectPublicKeyInfo, to a file.

    pubkey.py MODULE TOKEN_LABEL (id HEX | label LABEL) OUT

Reads CKA_PUBLIC_KEY_INFO of the one public key object with that CKA_ID or
CKA_LABEL, without logging in. The client tests use it instead of
`pkcs11-tool --read-object --type pubkey`: Debian 12's pkcs11-tool (OpenSC
0.23.0) frees the curve name before it builds an EC key from it (valgrind
shows the read of freed memory), so whether it works depends on the heap
of the moment. Exit status 0, or 1 with the reason on stderr.
"""
import sys

import PyKCS11


def main(argv):
    if len(argv) != 6 or argv[3] not in ("id", "label"):
        sys.stderr.write(__doc__)
        return 2
    module, token, kind, value, out = argv[1:]
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    slots = [s for s in lib.getSlotList(tokenPresent=True)
             if lib.getTokenInfo(s).label.strip() == token]
    if len(slots) != 1:
        sys.stderr.write("pubkey.py: %d tokens labelled %r\n" % (len(slots), token))
        return 1
    session = lib.openSession(slots[0])
    what = bytes.fromhex(value) if kind == "id" else value
    found = session.findObjects([
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY),
        (PyKCS11.CKA_ID if kind == "id" else PyKCS11.CKA_LABEL, what),
    ])
    if len(found) != 1:
        sys.stderr.write("pubkey.py: %d public keys with %s %s\n" % (len(found), kind, value))
        return 1
    spki = session.getAttributeValue(found[0], [PyKCS11.CKA_PUBLIC_KEY_INFO])[0]
    session.closeSession()
    if not spki:
        sys.stderr.write("pubkey.py: the key has no CKA_PUBLIC_KEY_INFO\n")
        return 1
    with open(out, "wb") as f:
        f.write(bytes(spki))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
