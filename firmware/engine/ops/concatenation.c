/* CONCATENATION along one axis: for each outer index, copy each input's slab. */
#include <string.h>

#include "tm_kernels.h"

tm_status_t tm_kernel_concatenation(const tm_model_t *model, const tm_op_t *op) {
    const tm_concat_params_t *p = (const tm_concat_params_t *)op->params;
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    uint8_t *output = (uint8_t *)tm_out_data(model, op, 0);
    if (!output || p->axis < 0 || p->axis >= out_t->rank) {
        return TM_ERR_BAD_MODEL;
    }
    const int size = tm_dtype_size(out_t->dtype);
    int32_t outer = 1, inner = 1;
    for (int d = 0; d < p->axis; ++d) {
        outer *= out_t->dims[d];
    }
    for (int d = p->axis + 1; d < out_t->rank; ++d) {
        inner *= out_t->dims[d];
    }
    const int32_t out_slab = out_t->dims[p->axis] * inner * size;
    int32_t position = 0; /* byte offset of the current input inside one output slab */
    for (int i = 0; i < op->n_inputs; ++i) {
        const tm_tensor_t *in_t = tm_in_tensor(model, op, i);
        const uint8_t *input = (const uint8_t *)tm_in_data(model, op, i);
        if (!in_t || !input || in_t->rank != out_t->rank) {
            return TM_ERR_BAD_MODEL;
        }
        const int32_t in_slab = in_t->dims[p->axis] * inner * size;
        for (int32_t o = 0; o < outer; ++o) {
            memcpy(output + (size_t)o * out_slab + position, input + (size_t)o * in_slab, (size_t)in_slab);
        }
        position += in_slab;
    }
    return TM_OK;
}
