/* DEQUANTIZE: int8/int16 -> float32, (float)(double(scale) * (q - zero point)). */
#include "tm_kernels.h"

tm_status_t tm_dequantize(const tm_quantize_params_t *p, int32_t count, uint8_t in_dtype, const void *input,
                          float *output) {
    if (in_dtype != TM_INT8 && in_dtype != TM_INT16) {
        return TM_ERR_BAD_MODEL;
    }
    const double scale = (double)p->scale;
    for (int32_t i = 0; i < count; ++i) {
        const int32_t q = in_dtype == TM_INT16 ? ((const int16_t *)input)[i] : ((const int8_t *)input)[i];
        output[i] = (float)(scale * (double)(q - p->zero_point));
    }
    return TM_OK;
}

tm_status_t tm_kernel_dequantize(const tm_model_t *model, const tm_op_t *op) {
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    float *output = (float *)tm_out_data(model, op, 0);
    if (!input || !output || out_t->dtype != TM_FLOAT32) {
        return TM_ERR_BAD_MODEL;
    }
    return tm_dequantize((const tm_quantize_params_t *)op->params, tm_elements(out_t),
                         tm_in_tensor(model, op, 0)->dtype, input, output);
}
