/* FULLY_CONNECTED, int8 activations and weights, int32 bias; per-tensor or per-channel. */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

tm_status_t tm_kernel_fully_connected(const tm_model_t *model, const tm_op_t *op) {
    const tm_fc_params_t *p = (const tm_fc_params_t *)op->params;
    const tm_tensor_t *w_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *weights = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!input || !weights || !output || w_t->rank != 2) {
        return TM_ERR_BAD_MODEL;
    }
    const int units = w_t->dims[0], depth = w_t->dims[1];
    const int batches = tm_elements(out_t) / units;

    for (int b = 0; b < batches; ++b) {
        const int8_t *in_row = input + b * depth;
        for (int u = 0; u < units; ++u) {
            const int8_t *w_row = weights + u * depth;
            int32_t acc = 0;
            for (int d = 0; d < depth; ++d) {
                acc += ((int32_t)w_row[d] + p->filter_offset) * ((int32_t)in_row[d] + p->input_offset);
            }
            if (bias) {
                acc += bias[u];
            }
            const int q = p->n_multipliers > 1 ? u : 0;
            acc = tm_multiply_by_quantized_multiplier(acc, p->out_multiplier[q], p->out_shift[q]);
            acc = tm_clamp_i32(acc + p->output_offset, p->act_min, p->act_max);
            output[b * units + u] = (int8_t)acc;
        }
    }
    return TM_OK;
}
