/*
 * FULLY_CONNECTED, int8 (weights zero point 0), on Helium: two units per pass
 * over the input row, 16 MACs per VMLADAVA (see mve_common.h).  Same results
 * as ops/fully_connected.c, bit for bit; int16x8 goes to the DSP or portable kernel.
 */
#include "mve_common.h"

#if defined(TM_OPT_DSP)
#define TM_FC_FALLBACK tm_kernel_fully_connected_dsp
#else
#define TM_FC_FALLBACK tm_kernel_fully_connected
#endif

tm_status_t tm_kernel_fully_connected_mve(const tm_model_t *model, const tm_op_t *op) {
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
        return TM_FC_FALLBACK(model, op);
    }
    const int units = w_t->dims[0], depth = w_t->dims[1];
    const int batches = tm_elements(out_t) / units;
    const int per_channel = p->n_multipliers > 1;
    for (int b = 0; b < batches; ++b) {
        const int8_t *in_row = input + b * depth;
        int8_t *out_row = output + b * units;
        for (int u = 0; u < units; u += 2) {
            const int8_t *w0 = weights + u * depth;
            const int two = u + 1 < units;
            int32_t s[4] = {0, 0, 0, 0};
            if (two) {
                tm_mve_dot_1x2(in_row, w0, w0 + depth, depth, s);
            } else {
                int32_t t[2] = {0, 0};
                tm_mve_dot_1x1(in_row, w0, depth, t);
                s[0] = t[0], s[2] = t[1];
            }
            for (int k = 0; k <= two; ++k) {
                const int q = per_channel ? u + k : 0;
                const int32_t acc = tm_mve_acc(bias ? bias[u + k] : 0, s[k], p->input_offset, s[2 + k]);
                out_row[u + k] = tm_mve_out_s8(acc, p->out_multiplier[q], p->out_shift[q], p->output_offset,
                                               p->act_min, p->act_max);
            }
        }
    }
    return TM_OK;
}
