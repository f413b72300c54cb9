#ifndef MXGATE_VERSION_H
#define MXGATE_VERSION_H
#define MXGATE_VERSION "0.1.0"
#endif
