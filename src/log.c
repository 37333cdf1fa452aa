#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* secure_getenv */
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

static ev_log_sink *log_sink;

void
ev_log_set_sink(ev_log_sink *sink)
{
	log_sink = sink;
}

void
ev_log(int priority, const char *fmt, ...)
{
	/*
	 * Callers may use %m: keep their errno for each of the two outputs,
	 * since writing to stderr can change it before syslog formats.
	 */
	int saved = errno;
	/* Not from a setuid caller's environment: it would see our paths and errors. */
	const char *debug = secure_getenv("EDGEVAULT_DEBUG");
	char msg[1024];
	va_list ap;

	if (log_sink != NULL) {
		va_start(ap, fmt);
		errno = saved;
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		log_sink(priority, msg);
		errno = saved;
		return;
	}
	if (debug != NULL && *debug != '\0') {
		va_start(ap, fmt);
		fprintf(stderr, "edgevault[%ld]: ", (long)getpid());
		errno = saved;
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	if (priority <= LOG_NOTICE) {
		/*
		 * No openlog(): the ident and facility are the host's to choose.
		 * The prefix says which library in the host is speaking.
		 */
		va_start(ap, fmt);
		errno = saved;
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		syslog(LOG_USER | priority, "edgevault: %s", msg);
	}
	errno = saved;
}
