/* The admin interface (include/pkcs11/edgevault.h): its function list, in fn_admin.c. */
#ifndef EV_ADMIN_H
#define EV_ADMIN_H

#include "common.h"
#include "pkcs11/edgevault.h"

extern EV_ADMIN_FUNCTION_LIST ev_admin_functions;

#endif
