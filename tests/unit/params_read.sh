#!/bin/sh
# params_read.sh: every row of src/conf/params.def is read by some code, so that no parameter
# is accepted, printed by `mxgate conf` and then silently ignored (DESIGN.md: "never silent").
#
# A row NAME counts as read when one of these holds:
#   1. P_NAME appears in the code (comments stripped) of a .c or .h file under src/ outside
#      src/conf/.  src/conf/ is the table and its generic machinery (parsing, expansion, type
#      and value checks, `mxgate conf`): a row that is only validated there is not used.
#   2. the default text (in params.def) of a row that is itself read refers to it as $NAME,
#      ${NAME...} or $(NAME), e.g. stress in smtpd_timeout's ${stress?{10}:{300}}s: expanding
#      that default reads it.
#   3. the computed default of a row that is itself read looks it up by name: in
#      src/conf/conf.c's conf_compute(), a conf_exp_name(ctx->ex, "NAME", ...) under
#      "case COMP_ROW:" (mynetworks is computed from mynetworks_style, inet_interfaces and
#      inet_protocols).
# Rules 2 and 3 are applied until nothing more is found, so a reference only counts from a
# row that is read.
#
# Two explicit lists hold rows that are read by no code today.  The test fails when a row
# outside them is unread, and also when a row inside them IS read (then remove it from the
# list: a list that is out of date hides the next unread row).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
CC=${CC:-cc}

# Rows known to be read by no code yet: none.  Put a row here only with the reason, and remove
# it with the change that reads it.
known_unread=""
# Rows that exist only so that $NAME expands in main.cf values, and `mxgate conf` prints it,
# with mxgate's own value: no code needs it.  config_directory: mxgate reads DIR/main.cf from
# -c DIR (as Postfix does from its -c or MAIL_CONFIG, whatever main.cf says).
# smtpd_tls_eecdh_grade, tls_eecdh_strong_curve, tls_eecdh_ultra_curve: Postfix 3.6 and later
# ignore them too (tls_eecdh_auto_curves decides, postconf(5)); they stay so that a main.cf
# that sets them is accepted as Postfix accepts it, and `mxgate conf` prints them.
expansion_only="config_directory smtpd_tls_eecdh_grade tls_eecdh_strong_curve tls_eecdh_ultra_curve"

work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT INT TERM

# rows: "name<TAB>default" (the table has no quote inside a default)
awk '/^PARAM\(/ {
	line = $0
	sub(/^PARAM\([ \t]*/, "", line)
	name = line; sub(/[ \t]*,.*/, "", name)
	def = line; sub(/^[^"]*"/, "", def); sub(/".*/, "", def)
	printf "%s\t%s\n", name, def
}' src/conf/params.def > "$work/rows"
nrows=$(grep -c '^PARAM(' src/conf/params.def)
[ "$(wc -l < "$work/rows")" -eq "$nrows" ] && [ "$nrows" -gt 0 ] || {
	echo "FAIL: cannot parse the $nrows rows of src/conf/params.def"; exit 1; }

# rule 1: P_name in code outside src/conf/, without comments (gcc keeps the directives as
# written and expands nothing with -fpreprocessed)
: > "$work/direct"
for f in $(find src -name '*.[ch]' ! -path 'src/conf/*' | sort); do
	if ! "$CC" -x c -fpreprocessed -dD -E -P "$f" > "$work/code" 2> "$work/cc.err"; then
		echo "FAIL: $CC cannot strip the comments of $f:"; cat "$work/cc.err"; exit 1
	fi
	grep -ow 'P_[A-Za-z0-9_]*' "$work/code" | sed 's/^P_//' >> "$work/direct"
done
sort -u -o "$work/direct" "$work/direct"
[ -s "$work/direct" ] || { echo "FAIL: no P_ name found in src/ outside src/conf/"; exit 1; }

# rules 2 and 3 as edges "from<TAB>to"
awk -F '\t' '{
	d = $2
	while (match(d, /\$[{(]?[A-Za-z0-9_]+/)) {
		ref = substr(d, RSTART, RLENGTH); sub(/^\$[{(]?/, "", ref)
		printf "%s\t%s\n", $1, ref
		d = substr(d, RSTART + RLENGTH)
	}
}' "$work/rows" > "$work/edges"
"$CC" -x c -fpreprocessed -dD -E -P src/conf/conf.c 2> /dev/null | awk '
	/^conf_compute\(/ { inside = 1 }
	inside && /^}/ { inside = 0 }
	inside && match($0, /case COMP_[A-Z0-9_]+:/) {
		row = tolower(substr($0, RSTART + 10, RLENGTH - 11))
	}
	inside && row != "" {
		s = $0
		while (match(s, /conf_exp_name\(ctx->ex, "[a-z0-9_]+"/)) {
			ref = substr(s, RSTART, RLENGTH); sub(/^[^"]*"/, "", ref); sub(/"$/, "", ref)
			printf "%s\t%s\n", row, ref
			s = substr(s, RSTART + RLENGTH)
		}
	}' >> "$work/edges"
grep -q '^mynetworks	mynetworks_style$' "$work/edges" || {
	echo "FAIL: conf_compute() in src/conf/conf.c no longer reads as this test expects"; exit 1; }

# the fixed point: read = direct, then whatever a read row refers to
cut -f1 "$work/rows" | sort > "$work/names"
comm -12 "$work/names" "$work/direct" > "$work/read"
while :; do
	awk -F '\t' 'NR == FNR { r[$1] = 1; next } ($1 in r) { print $2 }' "$work/read" "$work/edges" \
		| cat - "$work/read" | sort -u | comm -12 "$work/names" - > "$work/read.new"
	cmp -s "$work/read" "$work/read.new" && break
	mv "$work/read.new" "$work/read"
done

status=0
for name in $(cat "$work/names"); do
	listed=""
	for k in $known_unread; do [ "$k" = "$name" ] && listed="known_unread"; done
	for k in $expansion_only; do [ "$k" = "$name" ] && listed="expansion_only"; done
	if grep -qx "$name" "$work/read"; then
		if [ -n "$listed" ]; then
			echo "FAIL: $name is in this test's $listed list but is read now: remove it from the list"
			status=1
		fi
	elif [ -z "$listed" ]; then
		echo "FAIL: params.def row $name is read by no code (no P_$name in src/ outside src/conf/, no reference from a read row's default)"
		status=1
	fi
done
for k in $known_unread $expansion_only; do
	grep -qx "$k" "$work/names" || { echo "FAIL: $k is listed in this test but is no params.def row"; status=1; }
done
[ $status -eq 0 ] && echo "ok: $(wc -l < "$work/read") of $nrows rows are read; unread by plan: $known_unread $expansion_only"
exit $status
