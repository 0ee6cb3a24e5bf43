/* PAD / PADV2 for int8 and int16: copy the input into the output's interior,
 * fill the rest with the pad value. */
#include <string.h>

#include "tm_kernels.h"

static void fill(void *out, uint8_t dtype, int32_t count, int32_t value) {
    if (dtype == TM_INT16) {
        for (int32_t i = 0; i < count; ++i) {
            ((int16_t *)out)[i] = (int16_t)value;
        }
    } else {
        memset(out, (int8_t)value, (size_t)count);
    }
}

tm_status_t tm_kernel_pad(const tm_model_t *model, const tm_op_t *op) {
    const tm_pad_params_t *p = (const tm_pad_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const uint8_t *input = (const uint8_t *)tm_in_data(model, op, 0);
    uint8_t *output = (uint8_t *)tm_out_data(model, op, 0);
    if (!input || !output || in_t->rank != out_t->rank || (out_t->dtype != TM_INT8 && out_t->dtype != TM_INT16)) {
        return TM_ERR_BAD_MODEL;
    }
    const int size = tm_dtype_size(out_t->dtype);
    const int rank = out_t->rank;
    fill(output, out_t->dtype, tm_elements(out_t), p->pad_value);
    /* Copy input rows (innermost dim contiguous) to their padded position. */
    const int32_t row = in_t->dims[rank - 1];
    const int32_t rows = row > 0 ? tm_elements(in_t) / row : 0;
    int32_t index[TM_MAX_RANK] = {0};
    for (int32_t r = 0; r < rows; ++r) {
        int32_t out_offset = 0;
        for (int d = 0; d < rank; ++d) {
            out_offset = out_offset * out_t->dims[d] + index[d] + p->before[d];
        }
        memcpy(output + (size_t)out_offset * size, input + (size_t)r * row * size, (size_t)row * size);
        for (int d = rank - 2; d >= 0; --d) { /* next row index, innermost dim excluded */
            if (++index[d] < in_t->dims[d]) {
                break;
            }
            index[d] = 0;
        }
    }
    return TM_OK;
}
