/* The admin interface (include/pkcs11/edgevault.h): its function list, in fn_admin.c. */
#ifndef EV_ADMIN_H
#define EV_ADMIN_H

#include "common.h"
#include "pkcs11/edgevault.h"

/* Version 1.4 (the default), and the same functions under versions 1.3, 1.2, 1.1 and 1.0. */
extern EV_ADMIN_FUNCTION_LIST ev_admin_functions;
extern EV_ADMIN_FUNCTION_LIST ev_admin_functions_13;
extern EV_ADMIN_FUNCTION_LIST ev_admin_functions_12;
extern EV_ADMIN_FUNCTION_LIST ev_admin_functions_11;
extern EV_ADMIN_FUNCTION_LIST ev_admin_functions_10;

#endif
