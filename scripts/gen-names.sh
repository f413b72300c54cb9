#!/bin/sh
# Turn the committed list of Postfix parameter names (one per line, sorted) into a C array.
#
#   gen-names.sh NAMES.txt [DEFAULTS.txt]
#
# DEFAULTS.txt holds "name = default" lines (postconf -d output).  When given, a second
# array postfix_param_defaults[] runs parallel to postfix_param_names[]: the default text
# of each name, or NULL for names without a recorded default (host-dependent ones that
# mxgate computes itself).
set -eu
echo '/* Generated from src/conf/postfix-3.7.11-params.txt by scripts/gen-names.sh. */'
echo '#include <stddef.h>'
echo 'const char *const postfix_param_names[] = {'
LC_ALL=C sort -u "$1" | sed -n 's/^\([A-Za-z0-9_-]*\)$/    "\1",/p'
echo '};'
echo 'const size_t postfix_param_count = sizeof(postfix_param_names) / sizeof(postfix_param_names[0]);'
if [ $# -ge 2 ]; then
	echo 'const char *const postfix_param_defaults[] = {'
	# Escape \ " and ? (no trigraph surprises) for a C string literal.
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' "$2" > "${TMPDIR:-/tmp}/gen-names.$$"
	LC_ALL=C sort -u "$1" | grep -E '^[A-Za-z0-9_-]+$' | LC_ALL=C awk -v defs="${TMPDIR:-/tmp}/gen-names.$$" '
	BEGIN {
		while ((getline line < defs) > 0) {
			i = index(line, " =")
			if (i == 0)
				continue
			name = substr(line, 1, i - 1)
			val = substr(line, i + 2)
			sub(/^ /, "", val)
			def[name] = val
			have[name] = 1
		}
	}
	{
		if ($0 in have)
			printf "    \"%s\",\n", def[$0]
		else
			printf "    NULL,\n"
	}'
	rm -f "${TMPDIR:-/tmp}/gen-names.$$"
	echo '};'
fi
