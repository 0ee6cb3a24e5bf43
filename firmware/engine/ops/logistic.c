/* LOGISTIC, int8 -> int8 with output scale 1/256 and zero point -128. */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

tm_status_t tm_kernel_logistic(const tm_model_t *model, const tm_op_t *op) {
    const tm_logistic_params_t *p = (const tm_logistic_params_t *)op->params;
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!input || !output || out_t->dtype != TM_INT8) {
        return TM_ERR_BAD_MODEL;
    }
    const int32_t n = tm_elements(out_t);
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = INT8_MIN;
        } else if (x >= p->input_range_radius) {
            output[i] = INT8_MAX;
        } else {
            const int32_t x_q4 = tm_multiply_by_quantized_multiplier(x, p->input_multiplier, p->input_left_shift);
            const int32_t y_q0 = tm_logistic_q4(x_q4);
            /* Q0.31 -> Q0.8 (scale 1/256), then the -128 zero point. */
            const int32_t y = tm_rounding_divide_by_pot(y_q0, 31 - 8) + INT8_MIN;
            output[i] = (int8_t)tm_clamp_i32(y, INT8_MIN, INT8_MAX);
        }
    }
    return TM_OK;
}
