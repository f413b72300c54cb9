#!/bin/sh
# Turn the committed list of Postfix parameter names (one per line, sorted) into a C array.
set -eu
echo '/* Generated from src/conf/postfix-3.7.11-params.txt by scripts/gen-names.sh. */'
echo '#include <stddef.h>'
echo 'const char *const postfix_param_names[] = {'
LC_ALL=C sort -u "$1" | sed -n 's/^\([a-z0-9_]*\)$/    "\1",/p'
echo '};'
echo 'const size_t postfix_param_count = sizeof(postfix_param_names) / sizeof(postfix_param_names[0]);'
