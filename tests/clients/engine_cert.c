/*
 * Load certificates through libp11's engine by PKCS#11 URI, as servers that
 * keep their certificate in the token do (LOAD_CERT_CTRL), and print each
 * one's subject. Usage: engine_cert URI...; OPENSSL_CONF must load the
 * engine. All URIs go through one engine in one process, so a URI that
 * finds nothing after one that finds a certificate was looked up by an
 * engine that works. Exits 0 if every URI names a certificate, else 1.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* ENGINE is deprecated in OpenSSL 3 */
#include <stdio.h>

#include <openssl/conf.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/x509.h>

int
main(int argc, char **argv)
{
	struct {
		const char *uri;
		X509 *cert;
	} params;
	ENGINE *e;
	int i, rc = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: engine_cert URI...\n");
		return 2;
	}
	if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1) {
		fprintf(stderr, "engine_cert: cannot load the OpenSSL configuration\n");
		ERR_print_errors_fp(stderr);
		return 1;
	}
	e = ENGINE_by_id("pkcs11");
	if (e == NULL) {
		fprintf(stderr, "engine_cert: no pkcs11 engine\n");
		ERR_print_errors_fp(stderr);
		return 1;
	}
	if (ENGINE_init(e) != 1) {
		fprintf(stderr, "engine_cert: engine init failed\n");
		ERR_print_errors_fp(stderr);
		goto out;
	}
	rc = 0;
	for (i = 1; i < argc; i++) {
		params.uri = argv[i];
		params.cert = NULL;
		if (ENGINE_ctrl_cmd(e, "LOAD_CERT_CTRL", 0, &params, NULL, 1) != 1 ||
		    params.cert == NULL) {
			fprintf(stderr, "engine_cert: no certificate at %s\n", params.uri);
			/* The engine's and the module's own reasons, if any. */
			ERR_print_errors_fp(stderr);
			rc = 1;
			continue;
		}
		X509_NAME_print_ex_fp(stdout, X509_get_subject_name(params.cert), 0,
				      XN_FLAG_ONELINE);
		printf("\n");
		fflush(stdout);
		X509_free(params.cert);
	}
	ENGINE_finish(e);
out:
	ENGINE_free(e);
	return rc;
}
