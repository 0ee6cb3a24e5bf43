/* CONCATENATION along one axis: for each outer index, copy each input's slab. */
#include <string.h>

#include "tm_kernels.h"

int32_t tm_concatenation_place(const tm_concat_params_t *p, const tm_shape_t *out, int element_size,
                               const tm_shape_t *in, const void *input, void *output, int32_t position) {
    int32_t outer = 1, inner = 1;
    for (int d = 0; d < p->axis; ++d) {
        outer *= out->dims[d];
    }
    for (int d = p->axis + 1; d < out->rank; ++d) {
        inner *= out->dims[d];
    }
    const int32_t out_slab = out->dims[p->axis] * inner * element_size;
    const int32_t in_slab = in->dims[p->axis] * inner * element_size;
    for (int32_t o = 0; o < outer; ++o) {
        memcpy((uint8_t *)output + (size_t)o * out_slab + position, (const uint8_t *)input + (size_t)o * in_slab,
               (size_t)in_slab);
    }
    return position + in_slab;
}

tm_status_t tm_kernel_concatenation(const tm_model_t *model, const tm_op_t *op) {
    const tm_concat_params_t *p = (const tm_concat_params_t *)op->params;
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!output || p->axis < 0 || p->axis >= out_t->rank) {
        return TM_ERR_BAD_MODEL;
    }
    const int size = tm_dtype_size(out_t->dtype);
    const tm_shape_t out = tm_shape_of(out_t);
    int32_t position = 0; /* byte offset of the current input inside one output slab */
    for (int i = 0; i < op->n_inputs; ++i) {
        const tm_tensor_t *in_t = tm_in_tensor(model, op, i);
        const void *input = tm_in_data(model, op, i);
        if (!in_t || !input || in_t->rank != out_t->rank) {
            return TM_ERR_BAD_MODEL;
        }
        const tm_shape_t in = tm_shape_of(in_t);
        position = tm_concatenation_place(p, &out, size, &in, input, output, position);
    }
    return TM_OK;
}
