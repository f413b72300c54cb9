#!/bin/sh
# `make run`: start mxgate in the foreground on the bundled example configuration,
# listening on 127.0.0.1:2525 and delivering into ./var/mail.  MXGATE names the binary
# (default ./build/mxgate; make passes $(BUILD)/mxgate).
set -eu
top=$(pwd)
mkdir -p var/mail var/spool
if [ "$(id -u)" = 0 ]; then
	# Root binds, then drops to mail_owner (mxgate), which must own the mailboxes.
	uid=$(id -u mxgate); gid=$(id -g mxgate)
	chown mxgate:mxgate var/mail var/spool
	if ! su -s /bin/sh mxgate -c "test -w '$top/var/mail'" 2>/dev/null; then
		echo "run: the user mxgate cannot reach $top/var/mail (a parent directory is closed);" >&2
		echo "run: clone the repository somewhere world-readable, or run 'make run' as an ordinary user" >&2
		exit 1
	fi
else
	uid=$(id -u); gid=$(id -g)
fi
echo "mxgate: listening on 127.0.0.1:2525, delivering into $top/var/mail (Ctrl-C stops)"
echo "try:    swaks --server 127.0.0.1:2525 --to alice@example.test"
exec "${MXGATE:-./build/mxgate}" run -c "$top/etc/example" \
	-o virtual_mailbox_base="$top/var/mail" -o mxgate_spool_directory="$top/var/spool" \
	-o mxgate_control_socket="$top/var/control" \
	-o virtual_uid_maps="static:$uid" -o virtual_gid_maps="static:$gid"
