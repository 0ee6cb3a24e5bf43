/* PAD / PADV2 for int8 and int16: copy the input into the output's interior,
 * fill the rest with the pad value. */
#include <string.h>

#include "tm_kernels.h"

static void fill(void *out, int element_size, int32_t count, int32_t value) {
    if (element_size == 2) {
        for (int32_t i = 0; i < count; ++i) {
            ((int16_t *)out)[i] = (int16_t)value;
        }
    } else {
        memset(out, (int8_t)value, (size_t)count);
    }
}

void tm_pad(const tm_pad_params_t *p, const tm_shape_t *in, const tm_shape_t *out, int element_size,
            const void *input, void *output) {
    const uint8_t *src = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    const int rank = out->rank;
    fill(dst, element_size, tm_shape_elements(out), p->pad_value);
    /* Copy input rows (innermost dim contiguous) to their padded position. */
    const int32_t row = in->dims[rank - 1];
    const int32_t rows = row > 0 ? tm_shape_elements(in) / row : 0;
    int32_t index[TM_MAX_RANK] = {0};
    for (int32_t r = 0; r < rows; ++r) {
        int32_t out_offset = 0;
        for (int d = 0; d < rank; ++d) {
            out_offset = out_offset * out->dims[d] + index[d] + p->before[d];
        }
        memcpy(dst + (size_t)out_offset * element_size, src + (size_t)r * row * element_size,
               (size_t)row * element_size);
        for (int d = rank - 2; d >= 0; --d) { /* next row index, innermost dim excluded */
            if (++index[d] < in->dims[d]) {
                break;
            }
            index[d] = 0;
        }
    }
}

tm_status_t tm_kernel_pad(const tm_model_t *model, const tm_op_t *op) {
    const tm_pad_params_t *p = (const tm_pad_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!input || !output || in_t->rank != out_t->rank || (out_t->dtype != TM_INT8 && out_t->dtype != TM_INT16)) {
        return TM_ERR_BAD_MODEL;
    }
    const tm_shape_t in = tm_shape_of(in_t), out = tm_shape_of(out_t);
    tm_pad(p, &in, &out, tm_dtype_size(out_t->dtype), input, output);
    return TM_OK;
}
