/* CPU backend op table. Ops are filled in by the files of this directory;
 * a NULL entry reports MG_ERR_UNSUPPORTED through dispatch.c. */
#include "../backend.h"

const mg_backend mg_cpu_backend = {
    .name = "cpu",
};
