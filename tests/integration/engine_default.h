/*
 * libp11's engine made OpenSSL's default for everything in the test
 * process, as `openssl ... -engine pkcs11` does (tests/integration/engine_default.c:
 * the ENGINE API is deprecated, so it is kept to that file).
 */
#ifndef EV_ENGINE_DEFAULT_H
#define EV_ENGINE_DEFAULT_H

/* Load libp11's engine and make it the default (ENGINE_METHOD_ALL); the test fails if it cannot. */
void engine_default_on(void);

/* No default ENGINE any more. */
void engine_default_off(void);

#endif
