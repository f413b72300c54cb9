"""pgfixture: a throw-away PostgreSQL server (Debian's postgresql package) for table tests.

    pg = PgServer()            # initdb in a fresh temp folder, as the user "postgres"
    pg.start()                 # unix socket in pg.dir, TCP on 127.0.0.1:pg.port
    pg.sql("CREATE TABLE ...") # psql as the superuser, on the socket; raises on error
    pg.stop()                  # fast shutdown (clients see their connections closed)
    pg.start()                 # the same cluster again
    pg.cleanup()               # stop and remove the folder

The server trusts connections on its socket and asks TCP clients for a password
(scram-sha-256): pg.user / pg.password own pg.dbname, so a .cf file can test both
"hosts = unix:DIR" and "hosts = inet:127.0.0.1:PORT" with "user" and "password".

PostgreSQL refuses to run as root, so initdb and the server run as "postgres" (or
"nobody" when there is no such user) through runuser; the folder is theirs.  A missing
binary raises AssertionError: the test fails, it never skips.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import harness

START_TIMEOUT = 30


def _bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    for d in reversed(dirs):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    raise AssertionError("PostgreSQL is not installed (scripts/deps.sh --test: postgresql)")


def _run_user():
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise AssertionError("no user postgres or nobody to run PostgreSQL as")


class PgServer:
    user = "mx"
    password = "s3cret'pw"
    dbname = "mail"

    def __init__(self):
        self.bindir = _bindir()
        self.pw = _run_user()
        self.dir = tempfile.mkdtemp(prefix="mxgate-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = harness.free_port()
        self.running = False
        self._created = False
        os.chown(self.dir, self.pw.pw_uid, self.pw.pw_gid)
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write("super\n")
        os.chown(pwfile, self.pw.pw_uid, self.pw.pw_gid)
        self._as_pg([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                     "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                     "--locale=C", "--pwfile=" + pwfile])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 16MB\nmax_connections = 40\n" % (self.port, self.dir))

    def _as_pg(self, argv, check=True, **kw):
        if not shutil.which("runuser") and os.geteuid() == 0:
            raise AssertionError("runuser is missing (util-linux)")
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.pw.pw_name, "--"] + argv
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.dir, **kw)
        if check and r.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (" ".join(argv), r.returncode,
                                                           r.stdout, r.stderr))
        return r

    @property
    def socket_dir(self):
        return self.dir

    def start(self):
        self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log,
                     "-w", "-t", str(START_TIMEOUT), "start"])
        self.running = True
        if not self._created:
            self.sql("CREATE ROLE %s LOGIN PASSWORD '%s'"
                     % (self.user, self.password.replace("'", "''")))
            self.sql("CREATE DATABASE %s OWNER %s" % (self.dbname, self.user))
            self._created = True
            # Tables the tests create as the superuser are readable by the table's user.
            self.sql("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %s"
                     % self.user)
        return self

    def stop(self):
        if self.running:
            self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast",
                         "-w", "-t", str(START_TIMEOUT), "stop"])
            self.running = False

    def sql(self, text, db=None):
        """Run SQL through psql on the socket as the superuser (ON_ERROR_STOP)."""
        r = self._as_pg([os.path.join(self.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                         "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                         "-d", db or (self.dbname if self._created else "postgres"),
                         "-c", text], check=False)
        if r.returncode != 0:
            raise AssertionError("psql: %s: %s" % (text, r.stderr))
        return r.stdout

    def wait_port_closed(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and harness.port_listening(self.port):
            time.sleep(0.05)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
