/* libp11's engine as OpenSSL's default (engine_default.h). */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <check.h>
#include <stddef.h>

#include <openssl/engine.h>

#include "engine_default.h"

static ENGINE *engine;

void
engine_default_on(void)
{
	/* Found by id in OpenSSL's engines directory, as `-engine pkcs11` finds it. */
	engine = ENGINE_by_id("pkcs11");
	ck_assert_msg(engine != NULL, "libp11's engine (libengine-pkcs11-openssl) is missing");
	ck_assert_int_eq(ENGINE_init(engine), 1);
	ck_assert_int_eq(ENGINE_set_default(engine, ENGINE_METHOD_ALL), 1);
}

void
engine_default_off(void)
{
	if (engine == NULL)
		return;
	ENGINE_unregister_RSA(engine);
	ENGINE_unregister_EC(engine);
	ENGINE_unregister_RAND(engine);
	ENGINE_unregister_pkey_meths(engine);
	ENGINE_unregister_digests(engine);
	ENGINE_unregister_ciphers(engine);
	ENGINE_finish(engine);
	ENGINE_free(engine);
	engine = NULL;
}
