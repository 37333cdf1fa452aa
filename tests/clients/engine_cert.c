/*
 * Load a certificate through libp11's engine by PKCS#11 URI, as servers
 * that keep their certificate in the token do (LOAD_CERT_CTRL), and print
 * its subject. Usage: engine_cert URI. OPENSSL_CONF must load the engine.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* ENGINE is deprecated in OpenSSL 3 */
#include <stdio.h>

#include <openssl/conf.h>
#include <openssl/engine.h>
#include <openssl/x509.h>

int
main(int argc, char **argv)
{
	struct {
		const char *uri;
		X509 *cert;
	} params = { NULL, NULL };
	ENGINE *e;
	int rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: engine_cert URI\n");
		return 2;
	}
	params.uri = argv[1];
	if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1)
		return 1;
	e = ENGINE_by_id("pkcs11");
	if (e == NULL) {
		fprintf(stderr, "engine_cert: no pkcs11 engine\n");
		return 1;
	}
	if (ENGINE_init(e) != 1) {
		fprintf(stderr, "engine_cert: engine init failed\n");
		goto out;
	}
	if (ENGINE_ctrl_cmd(e, "LOAD_CERT_CTRL", 0, &params, NULL, 1) != 1 || params.cert == NULL) {
		fprintf(stderr, "engine_cert: no certificate at %s\n", params.uri);
		ENGINE_finish(e);
		goto out;
	}
	X509_NAME_print_ex_fp(stdout, X509_get_subject_name(params.cert), 0, XN_FLAG_ONELINE);
	printf("\n");
	X509_free(params.cert);
	ENGINE_finish(e);
	rc = 0;
out:
	ENGINE_free(e);
	return rc;
}
