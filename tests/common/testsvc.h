/*
 * testsvc: a whole session in memory, for unit tests and the session
 * fuzzer: a configuration directory written from main.cf text, the
 * service data built from it, a virtual-time loop, anvil, an inline
 * lookups pool and a deliverer whose store keeps messages in memory.
 */
#ifndef MXGATE_TESTS_TESTSVC_H
#define MXGATE_TESTS_TESTSVC_H

#include <stdatomic.h>
#include <stddef.h>

#include "memio.h"
#include "smtp/session.h"
#include "util/buf.h"

struct anvil;
struct conf;
struct deliverer;
struct fakedns;
struct fakeloop;
struct smtp_service;
struct workpool;

/* The uid the virtual mailboxes belong to, and that the session runs as. */
#define TESTSVC_UID	5000

struct testsvc_msg {
	char	queue_id[16];
	struct buf body;
	char	received[512];	/* the Received: header (cut at 511 bytes) */
	size_t	nrcpts;
	int	bdat;		/* the session said BDAT when it was stored */
	size_t	consumed;	/* input the client's transport had consumed then */
};

struct testsvc {
	char	dir[64];
	struct conf *conf;
	void   *normal, *stress;	/* smtp_service_build() */
	const struct smtp_service *ss;
	struct fakeloop *fl;
	struct anvil *anvil;
	struct workpool *pool;
	struct deliverer *deliver;
	atomic_long body_bytes;
	struct session_env env;
	struct testsvc_msg *msgs;
	size_t	nmsgs;
	int	fail_store;	/* make the store fail */
	struct fakedns *dns;	/* testsvc_set_dns(); NULL: no resolver */
	/* the current session */
	struct memio io;
	struct session *s;
};

/*
 * Write main_cf (plus a vmailbox with alice@ and bob@virt.test, and the
 * virtual_* lines unless main_cf sets them) into a new directory and build
 * everything.  anvil_spec: "memory", "test-delay:200" ...  Returns 0, or
 * -1 with a message on stderr.  testsvc_init() is testsvc_init_service()
 * then testsvc_init_env(); the fuzzer builds the service once and an
 * environment (loop, anvil, pool, deliverer) per input.
 */
int testsvc_init(struct testsvc *t, const char *main_cf, const char *anvil_spec);
int testsvc_init_service(struct testsvc *t, const char *main_cf);
int testsvc_init_env(struct testsvc *t, const char *anvil_spec);
/* Free the environment (and the current session and stored messages); the service stays. */
void testsvc_free_env(struct testsvc *t);
/* A new session from addr (IPv4 text), started with client name "unknown". */
struct session *testsvc_connect(struct testsvc *t, const char *addr);
/* A new session whose client has these names (statuses as net/peername.h; 0: derived). */
struct session *testsvc_connect_named(struct testsvc *t, const char *addr, const char *name,
				      const char *reverse, int name_status, int reverse_status);
/* Answer DNS from these records (tests/common/fakedns.h), for the sessions to come. */
void testsvc_set_dns(struct testsvc *t, const char *const *records);
/* Free the current session (as the connection would at close). */
void testsvc_disconnect(struct testsvc *t);
/* Run the loop until nothing is due, jumping over at most max timers. */
void testsvc_settle(struct testsvc *t, int max_timers);
void testsvc_free(struct testsvc *t);

#endif
