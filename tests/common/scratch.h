/*
 * scratch: files in a unit test's temporary folder.
 *
 *   scratch_path(dir, name)         "dir/name", malloc'd
 *   scratch_write(dir, name, text)  writes text to dir/name (mode 0644 by umask);
 *                                   any failure aborts the test program with a message
 */
#ifndef MXGATE_TESTS_SCRATCH_H
#define MXGATE_TESTS_SCRATCH_H

char   *scratch_path(const char *dir, const char *name);
void	scratch_write(const char *dir, const char *name, const char *text);

#endif
