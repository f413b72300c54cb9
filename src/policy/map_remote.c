/*
 * map_remote: what the remote table types share beyond their connection pool
 * (policy/map_pool.h).  See map_remote.h.
 */
#include "policy/map_remote.h"

#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "smtp/address.h"

bool map_remote_key_ok(const char *table, const char *key)
{
	char *e;

	if (smtp_utf8_valid(key, strlen(key)))
		return true;
	e = log_escape_dup(key, 200);
	msg_warn("%s: non-UTF-8 key \"%s\": malformed UTF-8 or invalid codepoint", table, e);
	free(e);
	return false;
}
