/*
 * FULLY_CONNECTED, int8 (weights zero point 0), for cores with the DSP
 * extension.  Same results as ops/fully_connected.c, bit for bit.
 *
 * Two weight rows (units) per pass over the input row: each widened input
 * quadruple feeds two SMLADs pairs.  int16x8 and weights with a zero point go
 * to the portable kernel.
 */
#include "dsp_mac.h"

tm_status_t tm_kernel_fully_connected_dsp(const tm_model_t *model, const tm_op_t *op) {
    const tm_fc_params_t *p = (const tm_fc_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *w_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *weights = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!in_t || in_t->dtype != TM_INT8 || p->filter_offset != 0 || !input || !weights || !output || !w_t ||
        w_t->rank != 2) {
        return tm_kernel_fully_connected(model, op);
    }
    const int units = w_t->dims[0], depth = w_t->dims[1];
    const int batches = tm_elements(out_t) / units;
    const int per_channel = p->n_multipliers > 1;
    for (int b = 0; b < batches; ++b) {
        const int8_t *in_row = input + b * depth;
        int8_t *out_row = output + b * units;
        int u = 0;
        for (; u + 1 < units; u += 2) {
            const int8_t *w0 = weights + u * depth;
            int32_t s[2] = {bias ? bias[u] : 0, bias ? bias[u + 1] : 0};
            tm_mac_1x2(in_row, w0, w0 + depth, depth, p->input_offset, s);
            const int q0 = per_channel ? u : 0, q1 = per_channel ? u + 1 : 0;
            out_row[u] = tm_dsp_out_s8(s[0], p->out_multiplier[q0], p->out_shift[q0], p->output_offset, p->act_min,
                                       p->act_max);
            out_row[u + 1] = tm_dsp_out_s8(s[1], p->out_multiplier[q1], p->out_shift[q1], p->output_offset,
                                           p->act_min, p->act_max);
        }
        if (u < units) {
            const int32_t s = tm_mac_1x1(in_row, weights + u * depth, depth, p->input_offset, bias ? bias[u] : 0);
            const int q = per_channel ? u : 0;
            out_row[u] = tm_dsp_out_s8(s, p->out_multiplier[q], p->out_shift[q], p->output_offset, p->act_min,
                                       p->act_max);
        }
    }
    return TM_OK;
}
