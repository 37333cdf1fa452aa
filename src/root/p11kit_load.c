/*
 * Loading the upstream PKCS#11 module through p11-kit (root.h).
 *
 * This is the only file that includes p11-kit's headers. They carry
 * p11-kit's own PKCS#11 definitions, which clash with the ones in
 * include/pkcs11/pkcs11.h, so this file includes neither that header nor
 * root.h and declares its two functions itself, with the function list as
 * a void pointer. The two CK_FUNCTION_LIST types are the same structure
 * (the PKCS#11 ABI: a version, then the function pointers in the order
 * the standard fixes), so passing the pointer across as void * and
 * reading it as the other type is sound. root.h declares the same two
 * prototypes with the same void * types, so both sides agree exactly.
 */
#include <stdio.h>

#include <p11-kit/p11-kit.h>

void *ev_p11kit_load(const char *path, char *err, size_t errlen);
void ev_p11kit_release(void *module);

void *
ev_p11kit_load(const char *path, char *err, size_t errlen)
{
	CK_FUNCTION_LIST *m;
	const char *msg;

	if (path == NULL || *path == '\0') {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "no upstream module path configured");
		return NULL;
	}
	/*
	 * Unmanaged: we get the module's own function list and make its
	 * C_Initialize/C_Finalize calls ourselves. Critical: a failure to
	 * load is an error, not something to skip over.
	 */
	m = p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED | P11_KIT_MODULE_CRITICAL);
	if (m == NULL) {
		msg = p11_kit_message();
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "cannot load upstream module %s: %s", path,
				 msg != NULL ? msg : "unknown error");
		return NULL;
	}
	return m;
}

void
ev_p11kit_release(void *module)
{
	if (module != NULL)
		p11_kit_module_release(module);
}
