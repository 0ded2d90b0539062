/* The fixed-order row-dot product (rowdot_body.h) for float and double,
 * alone and on the thread team. */
#include <stddef.h>
#include <stdint.h>
#include "fastbp.h"
#include "rowdot.h"
#include "team.h"

#define RD_TEAM_MIN_MACS (1 << 17)  /* below it, fbp_rowdot_team runs on its caller alone */
#define RD_TEAM_ROWS 256            /* rows per tile on the team */
#define RD_TEAM_TILES 4             /* tiles at least, when the rows give fewer */

#define REAL float
#define FN(name) name##_f
#define RD_DOUBLE 0
#include "rowdot_body.h"
#undef REAL
#undef FN
#undef RD_DOUBLE

#define REAL double
#define FN(name) name##_d
#define RD_DOUBLE 1
#include "rowdot_body.h"
