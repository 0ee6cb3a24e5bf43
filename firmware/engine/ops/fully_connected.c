/* FULLY_CONNECTED: int8 and int16x8, int8 weights (per-tensor or per-channel). */
#include "tm_fixedpoint.h"
#include "tm_kernels.h"

void tm_fully_connected_s8(const tm_fc_params_t *p, const tm_fc_dims_t *d, const int8_t *input,
                           const int8_t *weights, const int32_t *bias, int8_t *output) {
    const int batches = d->batches, units = d->units, depth = d->depth;
    for (int b = 0; b < batches; ++b) {
        const int8_t *in_row = input + b * depth;
        for (int u = 0; u < units; ++u) {
            const int8_t *w_row = weights + u * depth;
            int32_t acc = 0;
            for (int d = 0; d < depth; ++d) {
                acc += ((int32_t)w_row[d] + p->filter_offset) * ((int32_t)in_row[d] + p->input_offset);
            }
            acc += bias ? bias[u] : 0;
            const int q = p->n_multipliers > 1 ? u : 0;
            acc = tm_multiply_by_quantized_multiplier(acc, p->out_multiplier[q], p->out_shift[q]);
            output[b * units + u] = (int8_t)tm_clamp_i32(acc + p->output_offset, p->act_min, p->act_max);
        }
    }
}

void tm_fully_connected_s16(const tm_fc_params_t *p, const tm_fc_dims_t *d, const int16_t *input,
                            const int8_t *weights, const void *bias, int16_t *output) {
    const int batches = d->batches, units = d->units, depth = d->depth;
    for (int b = 0; b < batches; ++b) {
        const int16_t *in_row = input + b * depth;
        for (int u = 0; u < units; ++u) {
            const int8_t *w_row = weights + u * depth;
            int64_t acc = 0;
            for (int d = 0; d < depth; ++d) {
                acc += ((int64_t)w_row[d] + p->filter_offset) * (int64_t)in_row[d];
            }
            const int q = p->n_multipliers > 1 ? u : 0;
            const int32_t v = tm_requantize_s16(acc, bias, p->acc64, u, p->out_multiplier[q], p->out_shift[q]);
            output[b * units + u] = (int16_t)tm_clamp_i32(v, p->act_min, p->act_max);
        }
    }
}

tm_status_t tm_kernel_fully_connected(const tm_model_t *model, const tm_op_t *op) {
    const tm_fc_params_t *p = (const tm_fc_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *w_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    const int8_t *weights = (const int8_t *)tm_in_data(model, op, 1);
    const void *bias = tm_in_data(model, op, 2);
    void *output = tm_out_data(model, op, 0);
    if (!input || !weights || !output || !w_t || w_t->rank != 2) {
        return TM_ERR_BAD_MODEL;
    }
    const tm_fc_dims_t d = {tm_elements(out_t) / w_t->dims[0], w_t->dims[1], w_t->dims[0]};
    if (in_t->dtype == TM_INT16) {
        tm_fully_connected_s16(p, &d, (const int16_t *)input, weights, bias, (int16_t *)output);
    } else {
        tm_fully_connected_s8(p, &d, (const int8_t *)input, weights, (const int32_t *)bias, (int8_t *)output);
    }
    return TM_OK;
}
