/*
 * map_socket: the table types "socketmap" and "tcp" (a server answers).
 * map_socket.c's header states what they do; policy/map_type.h is the
 * contract they implement.
 */
#ifndef MXGATE_POLICY_MAP_SOCKET_H
#define MXGATE_POLICY_MAP_SOCKET_H

#include "policy/map_type.h"

extern const struct map_type map_type_socketmap;
extern const struct map_type map_type_tcp;

#endif
