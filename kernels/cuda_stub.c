/* cuda_stub.c - the cuda backend's entry points in a build without nvcc. */
#include "backend.h"

#include <string.h>

sdm_status sdm_cuda_backend_init(sdm_backend *be, int device)
{
    memset(be, 0, sizeof(*be));
    return sdm_backend_fail(be, SDM_ERR_UNSUPPORTED,
                            "this build has no cuda backend (nvcc was not found), device %d",
                            device);
}

int sdm_cuda_device_count(void)
{
    return 0;
}
