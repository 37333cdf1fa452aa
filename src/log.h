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

/*
 * Where messages go instead (stderr and syslog are then left alone): the
 * TPM helper collects them to carry them back to the module, which logs
 * them as its own (src/root/tpm2_helper.h). NULL: the usual outputs.
 * Set once, before any thread logs.
 */
typedef void ev_log_sink(int priority, const char *msg);
void ev_log_set_sink(ev_log_sink *sink);

#define ev_debug(...) ev_log(LOG_DEBUG, __VA_ARGS__)
#define ev_notice(...) ev_log(LOG_NOTICE, __VA_ARGS__)
#define ev_warn(...) ev_log(LOG_WARNING, __VA_ARGS__)
#define ev_error(...) ev_log(LOG_ERR, __VA_ARGS__)

#endif
