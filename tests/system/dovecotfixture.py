"""dovecotfixture: a real Dovecot LMTP server (Debian's dovecot-core + dovecot-lmtpd) for tests.

    d = Dovecot(users={"alice@virt.test": {}, "bob@virt.test": {"quota": "1B"}}, inet=True)
    d.start()                     # raises DovecotError when it does not come up
    d.socket                      # the LMTP unix socket (mode 0666) under d.dir
    d.port                        # the LMTP TCP port on 127.0.0.1 (inet=True)
    d.messages("alice@virt.test") # [bytes of each file in new/ and cur/]
    d.log()                       # Dovecot's own log
    d.stop()                      # SIGTERM, wait; a test's cleanup should call it

Each instance has its own temporary folder (base_dir, state, mail, log) and its own ports,
so tests can run side by side.  Mail is stored as Maildir under DIR/mail/<domain>/<user>/
owned by "nobody" (Dovecot's mail_uid).  users: address -> options; options "quota"
gives that user a quota (Dovecot's quota plugin, quota_rule *:storage=VALUE, and a full
mailbox answers after the final dot: 552 5.2.2, or 452 4.2.2 with quota_tempfail=True).
An address that is not in users gets Dovecot's "550 5.1.1 ... User doesn't exist" at RCPT.

Runs as root (Dovecot changes to mail_uid itself).  Nothing is left running after stop().
"""

import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DOVECOT = "/usr/sbin/dovecot"


class DovecotError(Exception):
    pass


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Dovecot:
    def __init__(self, users=None, inet=False, quota_tempfail=False, extra_conf=""):
        self.users = dict(users or {"alice@virt.test": {}})
        self.dir = tempfile.mkdtemp(prefix="mxgate-dovecot-")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "lmtp")
        self.port = _free_port() if inet else None
        self.proc = None
        self.uid = pwd.getpwnam("nobody").pw_uid
        self.gid = grp.getgrnam("nogroup").gr_gid
        self.maildir_root = os.path.join(self.dir, "mail")
        os.mkdir(self.maildir_root, 0o755)
        os.chown(self.maildir_root, self.uid, self.gid)
        self.logfile = os.path.join(self.dir, "dovecot.log")
        users_file = os.path.join(self.dir, "users")
        with open(users_file, "w") as f:
            for addr, opts in self.users.items():
                extra = ""
                if opts.get("quota"):
                    extra = "userdb_quota_rule=*:storage=%s" % opts["quota"]
                f.write("%s::%d:%d::%s::%s\n" % (addr, self.uid, self.gid,
                                                 self.home(addr), extra))
        os.chmod(users_file, 0o644)
        any_quota = any(o.get("quota") for o in self.users.values())
        inet_listener = ""
        if inet:
            inet_listener = ("  inet_listener lmtp {\n    address = 127.0.0.1\n"
                             "    port = %d\n  }\n" % self.port)
        plugins = ""
        if any_quota:
            plugins = ("mail_plugins = $mail_plugins quota\n"
                       "quota_full_tempfail = %s\n"
                       "plugin {\n  quota = maildir:User quota\n}\n"
                       % ("yes" if quota_tempfail else "no"))
        conf = """\
protocols = lmtp
base_dir = {d}/run
state_dir = {d}/state
log_path = {log}
info_log_path = {log}
ssl = no
listen = 127.0.0.1
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:~/Maildir
auth_username_format = %Lu
passdb {{
  driver = passwd-file
  args = {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
service lmtp {{
  unix_listener {sock} {{
    mode = 0666
  }}
{inet}}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
lmtp_rcpt_check_quota = no
{plugins}{extra}
""".format(d=self.dir, log=self.logfile, users=users_file, sock=self.socket,
           inet=inet_listener, plugins=plugins, extra=extra_conf)
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def home(self, addr):
        user, _, domain = addr.partition("@")
        return os.path.join(self.maildir_root, domain or "_", user)

    def start(self, timeout=10.0):
        os.makedirs(os.path.join(self.dir, "run"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        out = open(os.path.join(self.dir, "stdout"), "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        out.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise DovecotError("dovecot exited %s: %s %s" % (self.proc.returncode,
                                                                 self._read("stdout"),
                                                                 self.log()))
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise DovecotError("dovecot did not answer on %s: %s" % (self.socket, self.log()))

    def _answers(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.socket)
                if not s.recv(512).startswith(b"220"):
                    return False
            if self.port:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    pass
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _read(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log(self):
        return self._read("dovecot.log")

    def messages(self, addr):
        """The bytes of every message in addr's INBOX (new/ and cur/), oldest name first."""
        out = []
        md = os.path.join(self.home(addr), "Maildir")
        for sub in ("new", "cur"):
            p = os.path.join(md, sub)
            if os.path.isdir(p):
                for name in sorted(os.listdir(p)):
                    with open(os.path.join(p, name), "rb") as f:
                        out.append(f.read())
        return out
