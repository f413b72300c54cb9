"""dbfixture: private database servers and files for the SQL table tests.

    MariaDB     a mariadbd of its own: mariadb-install-db into a temporary
                datadir, a socket in that folder and a free port on
                127.0.0.1, started by start() (it waits until a client gets
                in), stopped by stop(), paused and resumed (SIGSTOP/SIGCONT)
                to play a server that accepts and then never answers.  Run
                as root, the server runs as the unprivileged "mysql" user
                (mariadbd refuses root).  sql(text) runs statements as the
                database's root over the socket.  Grants are on: the tables
                log in as a user with a password (add_user()).
    load_postfix_admin(db)
                a schema like Postfix Admin's (domain, mailbox, alias,
                alias_domain) and rows that exercise quoting, several rows
                and several columns, empty and NULL values.
    sqlite_postfix_admin(path)
                the same rows in an SQLite file (Python's sqlite3 module).

The servers come from Debian (mariadb-server, scripts/deps.sh --test); a
missing binary raises AssertionError, so a test that cannot run fails.
"""

import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time

import harness

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

INSTALL_DB = ("mariadb-install-db", "mysql_install_db")
SERVER = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
CLIENT = ("mariadb", "mysql")


def _find(candidates):
    for c in candidates:
        p = c if os.path.isabs(c) else shutil.which(c)
        if p and os.access(p, os.X_OK):
            return p
    raise AssertionError("%s is not installed (scripts/deps.sh --test: mariadb-server)"
                         % candidates[0])


def sql_quote(s):
    """A MariaDB string literal for s."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MariaDB:
    def __init__(self, prefix="mxgate-mariadb-"):
        self.install_db = _find(INSTALL_DB)
        self.server = _find(SERVER)
        self.client = _find(CLIENT)
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, 0o755)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.errlog = os.path.join(self.dir, "error.log")
        self.port = harness.free_port()
        self.proc = None
        self.paused = False
        self.user = None
        if os.geteuid() == 0:
            self.user = "mysql"
            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                raise AssertionError("user mysql is missing (is mariadb-server installed?)")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        argv = [self.install_db, "--no-defaults", "--datadir=" + self.datadir,
                "--auth-root-authentication-method=normal", "--skip-test-db"]
        if self.user:
            argv.append("--user=" + self.user)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s%s" % (argv[0], r.returncode, r.stdout, r.stderr))

    def command(self):
        argv = [self.server, "--no-defaults", "--datadir=" + self.datadir,
                "--socket=" + self.socket, "--port=%d" % self.port,
                "--bind-address=127.0.0.1", "--pid-file=" + os.path.join(self.dir, "mysqld.pid"),
                "--log-error=" + self.errlog, "--skip-log-bin", "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M", "--max-connections=40"]
        if self.user:
            argv.append("--user=" + self.user)
        return argv

    def start(self):
        if self.proc is not None:
            raise AssertionError("mariadbd is running already")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise AssertionError("mariadbd exited (%s) before it was ready:\n%s"
                                     % (rc, self.error_log()[-3000:]))
            if os.path.exists(self.socket):
                r = self._client(["-e", "SELECT 1"], check=False)
                if r.returncode == 0:
                    return self
            time.sleep(0.1)
        self.stop()
        raise AssertionError("mariadbd not ready within %gs:\n%s"
                             % (START_TIMEOUT, self.error_log()[-3000:]))

    def stop(self):
        """SIGTERM and wait (SIGKILL after STOP_TIMEOUT).  The datadir stays: start() again
        brings the same databases back."""
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pause(self):
        """SIGSTOP: the kernel still accepts connections, nobody answers them."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def error_log(self):
        try:
            with open(self.errlog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _client(self, args, stdin=None, check=True):
        argv = [self.client, "--no-defaults", "--socket=" + self.socket, "--user=root",
                "--batch", "--skip-column-names"] + args
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("mariadb client failed (%d): %s" % (r.returncode, r.stderr))
        return r

    def sql(self, text, db=None):
        """Run statements as the server's root; returns their output (tab-separated rows)."""
        return self._client(["--database=" + db] if db else [], stdin=text).stdout

    def add_user(self, user, password, db):
        """A user that logs in with a password, over the socket and over TCP, and may read db."""
        stmts = []
        for host in ("localhost", "127.0.0.1"):
            who = "%s@%s" % (sql_quote(user), sql_quote(host))
            stmts.append("CREATE USER %s IDENTIFIED BY %s;" % (who, sql_quote(password)))
            stmts.append("GRANT SELECT ON `%s`.* TO %s;" % (db, who))
        self.sql("\n".join(stmts))


# Postfix Admin's tables, trimmed to the columns the maps read.
PFA_SCHEMA = """
CREATE TABLE domain (
    domain VARCHAR(255) NOT NULL PRIMARY KEY,
    description VARCHAR(255) NOT NULL DEFAULT '',
    transport VARCHAR(255) DEFAULT NULL,
    backupmx TINYINT NOT NULL DEFAULT 0,
    active TINYINT NOT NULL DEFAULT 1
);
CREATE TABLE mailbox (
    username VARCHAR(255) NOT NULL PRIMARY KEY,
    password VARCHAR(255) NOT NULL DEFAULT '',
    name VARCHAR(255) NOT NULL DEFAULT '',
    maildir VARCHAR(255) NOT NULL DEFAULT '',
    local_part VARCHAR(255) NOT NULL,
    domain VARCHAR(255) NOT NULL,
    active TINYINT NOT NULL DEFAULT 1
);
CREATE TABLE alias (
    address VARCHAR(255) NOT NULL,
    goto TEXT,
    domain VARCHAR(255) NOT NULL,
    active TINYINT NOT NULL DEFAULT 1
);
CREATE TABLE alias_domain (
    alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
    target_domain VARCHAR(255) NOT NULL,
    active TINYINT NOT NULL DEFAULT 1
);
"""

PFA_DOMAINS = [("example.test", "smtp:[mx.example.test]"), ("mail.example.test", None),
               ("other.test", "lmtp:unix:private/dovecot"), ("old.test", None)]
PFA_INACTIVE_DOMAINS = {"old.test"}
# username, local_part, domain, maildir
PFA_MAILBOXES = [
    ("alice@example.test", "alice", "example.test", "example.test/alice/"),
    ("bob@example.test", "bob", "example.test", "example.test/bob/"),
    ("o'brien@example.test", "o'brien", "example.test", "example.test/obrien/"),
    ("back\\slash@example.test", "back\\slash", "example.test", "example.test/bs/"),
    ("100%@example.test", "100%", "example.test", "example.test/pct/"),
    ("carol@mail.example.test", "carol", "mail.example.test", "mail.example.test/carol/"),
    ("dave@other.test", "dave", "other.test", ""),       # empty maildir: an empty result
    ("gone@old.test", "gone", "old.test", "old.test/gone/"),
]
PFA_INACTIVE_MAILBOXES = {"gone@old.test"}
# address, goto (NULL: None); several rows for one address are several results
PFA_ALIASES = [
    ("postmaster@example.test", "alice@example.test"),
    ("team@example.test", "alice@example.test,bob@example.test"),
    ("list@example.test", "alice@example.test"),
    ("list@example.test", "bob@example.test"),
    ("list@example.test", "carol@mail.example.test"),
    ("@other.test", "dave@other.test"),
    ("null@example.test", None),
    ("empty@example.test", ""),
    ("quote'd@example.test", "it's@example.test"),
    ("pct%s@example.test", "100%@example.test"),
    ("under_score@example.test", "bob@example.test"),
    ("big@example.test", "a@x.test"), ("big@example.test", "b@x.test"),
    ("big@example.test", "c@x.test"), ("big@example.test", "d@x.test"),
    ("nodomain@example.test", "localonly"),
]
PFA_ALIAS_DOMAINS = [("alias.test", "example.test")]


def _domain_of(addr):
    return addr.rsplit("@", 1)[1] if "@" in addr else ""


def _rows():
    """(table, columns, rows) for every table, in insertion order."""
    return [
        ("domain", ("domain", "description", "transport", "active"),
         [(d, "the %s domain" % d, t, 0 if d in PFA_INACTIVE_DOMAINS else 1)
          for d, t in PFA_DOMAINS]),
        ("mailbox", ("username", "name", "maildir", "local_part", "domain", "active"),
         [(u, lp.title(), md, lp, d, 0 if u in PFA_INACTIVE_MAILBOXES else 1)
          for u, lp, d, md in PFA_MAILBOXES]),
        ("alias", ("address", "goto", "domain", "active"),
         [(a, g, _domain_of(a), 1) for a, g in PFA_ALIASES]),
        ("alias_domain", ("alias_domain", "target_domain", "active"),
         [(a, t, 1) for a, t in PFA_ALIAS_DOMAINS]),
    ]


def _mysql_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    return sql_quote(v)


def load_postfix_admin(db, dbname="postfixadmin"):
    """Create dbname on a running MariaDB with the Postfix Admin tables and rows."""
    stmts = ["CREATE DATABASE `%s` CHARACTER SET utf8mb4;" % dbname, "USE `%s`;" % dbname,
             PFA_SCHEMA]
    for table, cols, rows in _rows():
        for row in rows:
            stmts.append("INSERT INTO %s (%s) VALUES (%s);"
                         % (table, ", ".join(cols), ", ".join(_mysql_literal(v) for v in row)))
    db.sql("\n".join(stmts))
    return dbname


def sqlite_postfix_admin(path):
    """The same tables and rows in a new SQLite file at path."""
    con = sqlite3.connect(path)
    try:
        con.executescript(PFA_SCHEMA)
        for table, cols, rows in _rows():
            con.executemany("INSERT INTO %s (%s) VALUES (%s)"
                            % (table, ", ".join(cols), ", ".join("?" * len(cols))), rows)
        con.commit()
    finally:
        con.close()
    os.chmod(path, 0o644)
    return path
