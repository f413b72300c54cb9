"""ldapfixture: a throw-away OpenLDAP server (Debian's slapd) for table tests.

    ld = LdapServer()          # slapd.conf and an mdb database in a fresh temp folder
    ld.start()                 # ldap://127.0.0.1:ld.port and ldapi:// (ld.ldapi_url)
    ld.add(LDIF)               # ldapadd as the root DN; raises on error
    ld.stop()                  # SIGTERM, waits until slapd is gone
    ld.start()                 # the same directory again
    ld.cleanup()               # stop and remove the folder

The suffix is dc=example,dc=test.  Schemas: core, cosine, inetorgperson, nis, and a
small mail schema as Postfix's LDAP_README uses (mailacceptinggeneralid, maildrop,
and the object class mailRecipient that may carry them).  Binds: anonymous (v2 and v3),
the root DN (ld.rootdn / ld.rootpw) and any entry with a userPassword.

slapd runs as the user openldap when there is one (the folder is chown'ed to it).
A missing slapd or ldapadd raises AssertionError: the test fails, it never skips.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import harness

SUFFIX = "dc=example,dc=test"
START_TIMEOUT = 20

# Attribute and class names as in Postfix's LDAP_README; OIDs under OpenLDAP's
# experimental arc (1.3.6.1.4.1.4203.666), fine for a test directory.
MAIL_SCHEMA = """
attributetype ( 1.3.6.1.4.1.4203.666.11.1.1 NAME 'mailacceptinggeneralid'
    EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.4203.666.11.1.2 NAME 'maildrop'
    EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.4203.666.11.1.3 NAME 'mailHostName'
    EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.4203.666.11.1.4 NAME 'memberURL'
    EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.4203.666.11.2.1 NAME 'mailRecipient' SUP top AUXILIARY
    MAY ( mailacceptinggeneralid $ maildrop $ mailHostName $ memberURL $ mail ) )
"""

BASE_LDIF = """dn: %(s)s
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,%(s)s
objectClass: organizationalUnit
ou: people

dn: ou=groups,%(s)s
objectClass: organizationalUnit
ou: groups
""" % {"s": SUFFIX}


def _need(tool):
    for p in (shutil.which(tool), "/usr/sbin/" + tool):
        if p and os.access(p, os.X_OK):
            return p
    raise AssertionError("%s is not installed (scripts/deps.sh --test: slapd, ldap-utils)" % tool)


class LdapServer:
    rootdn = "cn=admin," + SUFFIX
    rootpw = "adminpw"
    suffix = SUFFIX

    def __init__(self):
        self.slapd = _need("slapd")
        self.ldapadd = _need("ldapadd")
        self.dir = tempfile.mkdtemp(prefix="mxgate-ldap-")
        os.chmod(self.dir, 0o755)
        self.port = harness.free_port()
        self.sock = os.path.join(self.dir, "ldapi")
        self.url = "ldap://127.0.0.1:%d" % self.port
        self.ldapi_url = "ldapi://" + urllib.parse.quote(self.sock, safe="")
        self.pidfile = os.path.join(self.dir, "slapd.pid")
        self.log = os.path.join(self.dir, "slapd.log")
        self.proc = None
        self._loaded = False
        os.mkdir(os.path.join(self.dir, "db"), 0o700)
        with open(os.path.join(self.dir, "mail.schema"), "w") as f:
            f.write(MAIL_SCHEMA)
        schemas = "".join("include /etc/ldap/schema/%s.schema\n" % n
                          for n in ("core", "cosine", "inetorgperson", "nis"))
        with open(os.path.join(self.dir, "slapd.conf"), "w") as f:
            f.write(schemas +
                    "include %(d)s/mail.schema\n"
                    "pidfile %(d)s/slapd.pid\n"
                    "argsfile %(d)s/slapd.args\n"
                    "modulepath /usr/lib/ldap\n"
                    "moduleload back_mdb\n"
                    "allow bind_v2\n"
                    "database mdb\n"
                    "maxsize 33554432\n"
                    "suffix \"%(s)s\"\n"
                    "rootdn \"%(r)s\"\n"
                    "rootpw %(p)s\n"
                    "directory %(d)s/db\n"
                    "index objectClass eq\n"
                    "access to attrs=userPassword by self write by anonymous auth by * none\n"
                    "access to * by * read\n"
                    % {"d": self.dir, "s": SUFFIX, "r": self.rootdn, "p": self.rootpw})
        try:
            self.pw = pwd.getpwnam("openldap") if os.geteuid() == 0 else None
        except KeyError:
            self.pw = None
        if self.pw:
            harness.chown_tree(self.dir, self.pw.pw_uid, self.pw.pw_gid)

    def start(self):
        argv = [self.slapd, "-d", "0", "-f", os.path.join(self.dir, "slapd.conf"),
                "-h", "%s/ %s" % (self.url, self.ldapi_url)]
        if self.pw:
            argv += ["-u", self.pw.pw_name, "-g", "openldap"]
        log = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=self.dir)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not harness.port_listening(self.port):
            if self.proc.poll() is not None:
                raise AssertionError("slapd exited with %s:\n%s"
                                     % (self.proc.returncode, open(self.log).read()[-3000:]))
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("slapd not listening within %ds" % START_TIMEOUT)
            time.sleep(0.05)
        if not self._loaded:
            self.add(BASE_LDIF)
            self._loaded = True
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def add(self, ldif):
        r = subprocess.run([self.ldapadd, "-x", "-H", self.url, "-D", self.rootdn,
                            "-w", self.rootpw], input=ldif, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise AssertionError("ldapadd failed (%d): %s\n%s" % (r.returncode, r.stderr, ldif))

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
