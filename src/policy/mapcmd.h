/*
 * mapcmd: the "map" verb (mxgate map -q KEY TYPE:NAME...), postmap(1) -q's
 * answers and exit codes for mxgate's tables.  See mapcmd.c.
 */
#ifndef MXGATE_POLICY_MAPCMD_H
#define MXGATE_POLICY_MAPCMD_H

/* argv[0] is "map".  Returns the exit status; a table error exits(1). */
int map_cmd(int argc, char **argv);

#endif
