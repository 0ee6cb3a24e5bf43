/* RESHAPE: the bytes do not change; the planner usually aliases output to input. */
#include <string.h>

#include "tm_kernels.h"

void tm_reshape(const void *input, void *output, uint32_t bytes) {
    if (input != output) {
        memmove(output, input, bytes);
    }
}

tm_status_t tm_kernel_reshape(const tm_model_t *model, const tm_op_t *op) {
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!input || !output) {
        return TM_ERR_BAD_MODEL;
    }
    tm_reshape(input, output, tm_out_tensor(model, op, 0)->bytes);
    return TM_OK;
}
