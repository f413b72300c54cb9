#!/bin/sh
# Install what mxgate needs from Debian, and create its unprivileged user.
# Does nothing, and needs no root, when everything is already there.
#   scripts/deps.sh          build and run: compiler, libraries, the mxgate user, and swaks
#                            (the README's first message to `make run`)
#   scripts/deps.sh --test   also what the tests use: strace, Postfix (reference server,
#                            smtp-source/smtp-sink), MariaDB and SQLite (the SQL tables'
#                            servers), python3, clang (fuzz targets), rbldnsd and unbound
#                            (the DNS lists' server and the test domains' name server, both
#                            started by the tests in their own namespace), postgrey and
#                            postfix-policyd-spf-python (policy servers that the tests start
#                            themselves), redis-server (anvil on Redis, started by its tests),
#                            rspamd and opendkim (milters that the tests start themselves),
#                            dovecot-lmtpd (the LMTP server of the LMTP tests), spamassassin and
#                            libpython3.11-testsuite (their sample messages: the stored-bytes corpus)
set -eu
pkgs="gcc make pkg-config libevent-dev libssl-dev libcdb-dev libdb5.3-dev liblmdb-dev libpcre2-dev libpq-dev libldap2-dev libmariadb-dev libsqlite3-dev libhiredis-dev libcmocka-dev swaks"
if [ "${1:-}" = "--test" ]; then
	pkgs="$pkgs python3 strace postfix postfix-cdb postfix-lmdb postfix-pcre postfix-pgsql postfix-ldap postgresql slapd ldap-utils postfix-mysql postfix-sqlite mariadb-server sqlite3 tinycdb clang libclang-rt-14-dev rbldnsd unbound postgrey postfix-policyd-spf-python redis-server rspamd opendkim opendkim-tools dovecot-core dovecot-lmtpd spamassassin libpython3.11-testsuite"
fi
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
need_user=0
getent passwd mxgate >/dev/null 2>&1 || need_user=1
if [ -z "$missing" ] && [ "$need_user" = 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing:${missing:- }$( [ $need_user = 1 ] && echo ' (and the user mxgate)')" >&2
	echo "deps: run 'sudo make deps' (or 'sudo sh scripts/deps.sh ${1:-}') once" >&2
	exit 1
fi
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	# Postfix is only the tests' reference server: no questions, no system instance.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	# slapd is only the ldap tests' server (each test starts its own): no system directory.
	echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
	# rbldnsd is only the DNS tests' server (each test starts its own): its package enables a
	# socket unit on port 53 of every address, which the machine does not need.
	case " $missing " in *" rbldnsd "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now rbldnsd.socket rbldnsd.service >/dev/null 2>&1 || true
		fi ;;
	esac
	# unbound likewise (the tests run their own, with their own configuration): no system
	# resolver on port 53, and none rewriting /etc/resolv.conf through resolvconf.
	case " $missing " in *" unbound "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
			systemctl mask unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
		else
			service unbound stop >/dev/null 2>&1 || true
			update-rc.d unbound disable >/dev/null 2>&1 || true
		fi ;;
	esac
	# postgrey is only the policy tests' server (each test starts its own on a free port).
	case " $missing " in *" postgrey "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now postgrey.service >/dev/null 2>&1 || true
		else
			service postgrey stop >/dev/null 2>&1 || true
		fi
		update-rc.d postgrey disable >/dev/null 2>&1 || true ;;
	esac
	# redis-server is only the anvil-on-Redis tests' server (each test starts its own).
	case " $missing " in *" redis-server "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now redis-server.service >/dev/null 2>&1 || true
		else
			service redis-server stop >/dev/null 2>&1 || true
		fi
		update-rc.d redis-server disable >/dev/null 2>&1 || true ;;
	esac
	# rspamd and opendkim (the milter tests' filters), dovecot (the LMTP tests' server) and
	# spamd: each test starts its own, with its own configuration in a temporary folder.
	for ps in rspamd:rspamd opendkim:opendkim dovecot-core:dovecot spamassassin:spamd; do
		pkg=${ps%%:*} svc=${ps#*:}
		case " $missing " in *" $pkg "*)
			if [ -d /run/systemd/system ]; then
				systemctl disable --now $svc.service >/dev/null 2>&1 || true
			else
				service $svc stop >/dev/null 2>&1 || true
			fi
			update-rc.d $svc disable >/dev/null 2>&1 || true ;;
		esac
	done
fi
if [ "$need_user" = 1 ]; then
	echo "deps: creating the system user mxgate (mail_owner)"
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mxgate
fi
