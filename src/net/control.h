/*
 * control: the daemon's control socket, a UNIX stream socket at
 * mxgate_control_socket (default /run/mxgate/control), owned by mail_owner
 * and mode 0600, that `mxgate anvil show|clear` talks to when the anvil
 * backend is the in-memory one (with Redis the command reads Redis itself).
 *
 * Protocol: one request line per connection, one answer, then the daemon
 * closes:
 *   show [MATCH]\n   one line per live ident (anvil_list()):
 *                    "<ident> count=N connection_rate=N message_rate=N
 *                     recipient_rate=N newtls_rate=N auth_rate=N\n"
 *   clear MATCH\n    "cleared N\n" (anvil_clear())
 *   anything else    "error: ...\n"
 * A request line longer than CONTROL_MAX_LINE, or none within 5 s, closes
 * the connection.  The socket is served on one event loop (worker 0); the
 * answer is built there, under anvil's shard locks for a moment.
 */
#ifndef MXGATE_NET_CONTROL_H
#define MXGATE_NET_CONTROL_H

#include <sys/types.h>

struct anvil;
struct buf;
struct control;
struct event_base;

#define CONTROL_MAX_LINE	1024

/*
 * Bind and listen at path as the starting user (root: before dropping
 * privileges): a stale socket is removed first, a missing parent directory
 * is created (mode 0755, owner uid:gid), and the socket gets owner uid:gid,
 * mode 0600.  Returns the descriptor, or -1 with *err_r set (caller frees).
 */
int control_bind(const char *path, uid_t uid, gid_t gid, char **err_r);

/* Serve fd on base with anvil a; NULL never (allocation failure is fatal). */
struct control *control_start(int fd, const char *path, struct event_base *base,
			      struct anvil *a);
/* Stop serving, close the socket, remove it (when allowed), *cp = NULL. */
void control_free(struct control **cp);

/* A line for anvil_list()'s reply, as "show" answers it. */
struct anvil_reply;
void control_format(struct buf *out, const char *ident, const struct anvil_reply *r);

/*
 * The client side: send line (without its \n) to the socket at path and
 * append the whole answer to out.  Blocks, for at most timeout_ms.  Returns
 * 0, or -1 with *err_r set.
 */
int control_request(const char *path, const char *line, struct buf *out, long timeout_ms,
		    char **err_r);

#endif
