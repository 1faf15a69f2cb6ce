/* Built when the CUDA backend is not compiled in (no nvcc, or MG_CUDA=0). */
#include "backend.h"

#ifndef MG_HAVE_CUDA
const mg_backend *mg_cuda_backend(void) {
    mg_error(MG_ERR_UNSUPPORTED,
             "device 'cuda': this medground build has no CUDA backend (nvcc was not found or "
             "MG_CUDA=0 at build time)");
    return NULL;
}
#endif
