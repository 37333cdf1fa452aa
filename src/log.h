/*
 * Diagnostics. Messages go to stderr when $EDGEVAULT_DEBUG is set (not in
 * setuid or setgid programs), and notices, warnings and errors to syslog
 * (LOG_USER, the host's ident, each message prefixed "edgevault: ").
 * errno is left as it was, so a format may use %m. Never pass a secret, a
 * PIN or key material to these functions.
 */
#ifndef EV_LOG_H
#define EV_LOG_H

#include <syslog.h>

void ev_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ev_debug(...) ev_log(LOG_DEBUG, __VA_ARGS__)
#define ev_notice(...) ev_log(LOG_NOTICE, __VA_ARGS__)
#define ev_warn(...) ev_log(LOG_WARNING, __VA_ARGS__)
#define ev_error(...) ev_log(LOG_ERR, __VA_ARGS__)

#endif
