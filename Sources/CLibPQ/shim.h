#ifndef SQUALL_CLIBPQ_SHIM_H
#define SQUALL_CLIBPQ_SHIM_H
// libpq's headers live in the `postgresql` include folder, which pkg-config adds to the search path.
#include <libpq-fe.h>
#endif
