/*
 * policy/map_socket: socketmap and tcp tables against servers run here on
 * threads: a server that is down is MAP_FAIL with one warning for the whole
 * outage (and one line when it answers again), a connection the server has
 * closed is replaced without the lookup failing, and many threads share at
 * most MAP_REMOTE_CONCURRENCY connections and each get their own answer.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/map_socket.h"
#include "policy/maps.h"
#include "util/xalloc.h"

/* ---- stderr, captured ---- */

static int saved_stderr = -1;
static FILE *captured;

static void capture_start(void)
{
	captured = tmpfile();
	assert_non_null(captured);
	saved_stderr = dup(2);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(captured), 2) >= 0);
}

/* What was logged since capture_start() (caller frees); stderr is back. */
static char *capture_end(void)
{
	long n;
	char *text;

	assert_true(dup2(saved_stderr, 2) >= 0);
	close(saved_stderr);
	n = ftell(captured);
	assert_true(n >= 0);
	text = xcalloc(1, (size_t)n + 1);
	rewind(captured);
	assert_int_equal(fread(text, 1, (size_t)n, captured), (size_t)n);
	fclose(captured);
	fputs(text, stderr);	/* still shown */
	return text;
}

static int count(const char *text, const char *what)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

/* ---- a server on a thread ---- */

enum proto { PROTO_TCP, PROTO_SOCKETMAP };

struct server {
	int lfd;
	enum proto proto;
	int delay_ms;		/* before each reply */
	bool hangup;		/* close after each reply */
	atomic_int conns, active, max_active, stop;
	pthread_t tid;
};

struct session {
	struct server *srv;
	int fd;
};

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Read one request: a line (tcp) or a netstring (socketmap).  The key, or NULL at EOF. */
static char *read_request(int fd, enum proto proto)
{
	char buf[20000];
	size_t n = 0, want = 0;

	for (;;) {
		char ch;

		if (read(fd, &ch, 1) != 1)
			return NULL;
		if (n + 1 >= sizeof(buf))
			return NULL;
		buf[n++] = ch;
		buf[n] = '\0';
		if (proto == PROTO_TCP && ch == '\n') {
			buf[n - 1] = '\0';
			return xstrdup(strncmp(buf, "get ", 4) == 0 ? buf + 4 : buf);
		}
		if (proto == PROTO_SOCKETMAP) {
			char *colon = strchr(buf, ':');

			if (colon != NULL && want == 0)
				want = (size_t)atoi(buf) + (size_t)(colon - buf) + 2;
			if (want != 0 && n == want) {
				buf[n - 1] = '\0';	/* the ',' */
				colon = strchr(colon + 1, ' ');	/* "name key" */
				return xstrdup(colon ? colon + 1 : "");
			}
		}
	}
}

static void *session_main(void *arg)
{
	struct session *s = arg;
	struct server *srv = s->srv;
	char *key;
	int now = atomic_fetch_add(&srv->active, 1) + 1;

	atomic_fetch_add(&srv->conns, 1);
	for (int m = atomic_load(&srv->max_active); now > m;)
		if (atomic_compare_exchange_weak(&srv->max_active, &m, now))
			break;
	while ((key = read_request(s->fd, srv->proto)) != NULL) {
		char reply[256], *value = xasprintf("value-of-%s", key);

		if (srv->delay_ms)
			sleep_ms(srv->delay_ms);
		if (srv->proto == PROTO_TCP)
			snprintf(reply, sizeof(reply), "200 %s\n", value);
		else
			snprintf(reply, sizeof(reply), "%zu:OK %s,", strlen(value) + 3, value);
		free(value);
		free(key);
		if (write(s->fd, reply, strlen(reply)) < 0 || srv->hangup)
			break;
	}
	atomic_fetch_sub(&srv->active, 1);
	close(s->fd);
	free(s);
	return NULL;
}

static void *server_main(void *arg)
{
	struct server *srv = arg;

	while (!atomic_load(&srv->stop)) {
		int fd = accept(srv->lfd, NULL, NULL);
		struct session *s;
		pthread_t t;

		if (fd < 0)
			continue;
		if (atomic_load(&srv->stop)) {
			close(fd);
			break;
		}
		s = xcalloc(1, sizeof(*s));
		s->srv = srv;
		s->fd = fd;
		assert_int_equal(pthread_create(&t, NULL, session_main, s), 0);
		pthread_detach(t);
	}
	return NULL;
}

/* A TCP socket bound to a free port on 127.0.0.1, not listening yet: connects are refused. */
static int bound_socket(int *port_r)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port_r = ntohs(sin.sin_port);
	return fd;
}

static void server_start(struct server *srv, int lfd, enum proto proto)
{
	srv->lfd = lfd;
	srv->proto = proto;
	assert_int_equal(listen(lfd, 64), 0);
	assert_int_equal(pthread_create(&srv->tid, NULL, server_main, srv), 0);
}

/* Stop accepting and wait for the sessions to end (clients must close or be gone). */
static void server_stop(struct server *srv, struct sockaddr *sa, socklen_t salen)
{
	int fd = socket(sa->sa_family, SOCK_STREAM, 0);

	atomic_store(&srv->stop, 1);
	(void)!connect(fd, sa, salen);	/* wakes accept() */
	close(fd);
	pthread_join(srv->tid, NULL);
	close(srv->lfd);
}

static void stop_inet(struct server *srv, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	server_stop(srv, (struct sockaddr *)&sin, sizeof(sin));
}

static void expect(const struct map *m, const char *key, enum map_status want_st)
{
	char *v = NULL, *want = xasprintf("value-of-%s", key);
	enum map_status st = map_lookup(m, key, &v);

	if (st != want_st)
		fail_msg("%s: lookup \"%s\": status %d, want %d", map_spec(m), key, st, want_st);
	if (want_st == MAP_FOUND)
		assert_string_equal(v, want);
	free(v);
	free(want);
}

/* Down, up, down again: one warning per outage, whatever the number of lookups. */
static void test_outage_warned_once(void **state)
{
	for (int proto = 0; proto < 2; proto++) {
		struct server srv = { .hangup = true };
		int port, lfd = bound_socket(&port);
		char *spec = proto == PROTO_TCP ? xasprintf("tcp:127.0.0.1:%d", port)
						: xasprintf("socketmap:inet:127.0.0.1:%d:name", port);
		char *refused = xasprintf("connect to 127.0.0.1:%d: Connection refused", port);
		char *err = NULL, *log;
		struct map *m = map_open(spec, &err);

		assert_non_null(m);
		assert_true(map_is_remote(m));
		capture_start();
		for (int i = 0; i < 5; i++)
			expect(m, "a", MAP_FAIL);
		log = capture_end();
		assert_int_equal(count(log, refused), 1);
		assert_int_equal(count(log, "lookup error for \"a\""), 5);	/* maps.c, per lookup */
		free(log);

		server_start(&srv, lfd, (enum proto)proto);
		capture_start();
		expect(m, "a", MAP_FOUND);
		expect(m, "B", MAP_FOUND);	/* not folded: the server gets "B" */
		log = capture_end();
		assert_int_equal(count(log, "connected again"), 1);
		assert_int_equal(count(log, "warning"), 0);
		free(log);

		/* The server goes away (its side of our pooled connection is closed). */
		stop_inet(&srv, port);
		capture_start();
		for (int i = 0; i < 3; i++)
			expect(m, "c", MAP_FAIL);
		log = capture_end();
		assert_int_equal(count(log, refused), 1);
		free(log);
		map_free(&m);
		free(spec);
		free(refused);
	}
}

/* A server that closes after every reply: each next lookup still gets its answer. */
static void test_server_closes(void **state)
{
	char dir[] = "/tmp/mxgate-test-map-socket-XXXXXX";
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct server srv = { .hangup = true };
	char *spec, *err = NULL, *log;
	struct map *m;
	int lfd;

	assert_non_null(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s", dir);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	server_start(&srv, lfd, PROTO_SOCKETMAP);
	spec = xasprintf("socketmap:unix:%s:name", sun.sun_path);
	m = map_open(spec, &err);
	assert_non_null(m);
	capture_start();
	for (int i = 0; i < 5; i++)
		expect(m, i % 2 ? "x@example.test" : "Y", MAP_FOUND);
	log = capture_end();
	assert_int_equal(count(log, "warning"), 0);
	free(log);
	assert_int_equal(atomic_load(&srv.conns), 5);
	map_free(&m);
	server_stop(&srv, (struct sockaddr *)&sun, sizeof(sun));
	unlink(sun.sun_path);
	rmdir(dir);
	free(spec);
}

/* Many threads, one table: at most MAP_REMOTE_CONCURRENCY connections, every answer right. */
#define NTHREADS 12
#define NLOOKUPS 40

struct worker {
	const struct map *m;
	int id, errors;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < NLOOKUPS; i++) {
		char key[64], want[96], *v = NULL;

		snprintf(key, sizeof(key), "t%d-%d", w->id, i);
		snprintf(want, sizeof(want), "value-of-%s", key);
		if (map_lookup(w->m, key, &v) != MAP_FOUND || strcmp(v, want) != 0)
			w->errors++;
		free(v);
	}
	return NULL;
}

static void test_pool(void **state)
{
	for (int proto = 0; proto < 2; proto++) {
		struct server srv = { .delay_ms = 10 };
		int port, lfd = bound_socket(&port);
		char *spec = proto == PROTO_TCP ? xasprintf("tcp:127.0.0.1:%d", port)
						: xasprintf("socketmap:inet:127.0.0.1:%d:name", port);
		char *err = NULL;
		struct map *m;
		pthread_t tid[NTHREADS];
		struct worker w[NTHREADS];

		server_start(&srv, lfd, (enum proto)proto);
		m = map_open(spec, &err);
		assert_non_null(m);
		for (int i = 0; i < NTHREADS; i++) {
			w[i] = (struct worker){ m, i, 0 };
			assert_int_equal(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
		}
		for (int i = 0; i < NTHREADS; i++) {
			pthread_join(tid[i], NULL);
			assert_int_equal(w[i].errors, 0);
		}
		if (atomic_load(&srv.max_active) > MAP_REMOTE_CONCURRENCY)
			fail_msg("%s: %d connections at once", spec, atomic_load(&srv.max_active));
		assert_true(atomic_load(&srv.max_active) >= 2);	/* lookups did overlap */
		assert_true(atomic_load(&srv.conns) <= MAP_REMOTE_CONCURRENCY);	/* and were reused */
		map_free(&m);
		stop_inet(&srv, port);
		free(spec);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outage_warned_once),
		cmocka_unit_test(test_server_closes),
		cmocka_unit_test(test_pool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
