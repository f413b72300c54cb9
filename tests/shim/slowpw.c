/*
 * slowpw: LD_PRELOAD shim that makes passwd lookups slow, as they are behind
 * LDAP or sssd on a bad day, to show that no event loop waits for one
 * (issue 6: "with passwd lookups slowed to 3 s, NOOP in other sessions
 * still answers in under 100 ms").
 *
 * Environment (read at each call):
 *   MXGATE_SLOW_PASSWD_MS=N    sleep N ms in every getpwnam_r() whose name
 *                              is not MXGATE_SLOW_PASSWD_SKIP
 *   MXGATE_SLOW_PASSWD_SKIP=u  a name that is answered at once (the daemon's
 *                              own mail_owner look-up at start-up)
 *
 * Built without sanitizers (Makefile rule build/shim/%.so); with an ASan
 * binary, preload the ASan runtime first.
 */
#include <dlfcn.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int getpwnam_r_fn(const char *, struct passwd *, char *, size_t, struct passwd **);

int
getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t buflen,
	   struct passwd **result)
{
	static getpwnam_r_fn *real;
	const char *ms = getenv("MXGATE_SLOW_PASSWD_MS");
	const char *skip = getenv("MXGATE_SLOW_PASSWD_SKIP");

	if (real == NULL)
		real = (getpwnam_r_fn *)dlsym(RTLD_NEXT, "getpwnam_r");
	if (ms != NULL && (skip == NULL || strcmp(skip, name) != 0)) {
		long n = atol(ms);
		struct timespec ts = { n / 1000, (n % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) != 0)
			;
	}
	return real(name, pwd, buf, buflen, result);
}
