#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

void
ev_log(int priority, const char *fmt, ...)
{
	const char *debug = getenv("EDGEVAULT_DEBUG");
	va_list ap;

	if (debug != NULL && *debug != '\0') {
		va_start(ap, fmt);
		fprintf(stderr, "edgevault[%ld]: ", (long)getpid());
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	if (priority <= LOG_WARNING) {
		va_start(ap, fmt);
		vsyslog(LOG_USER | priority, fmt, ap);
		va_end(ap);
	}
}
