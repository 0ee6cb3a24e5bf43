/*
 * FULLY_CONNECTED, int8 (weights zero point 0), on Helium: four units per pass
 * over the input row (two assembly loops of two units: per 16-byte load two
 * VMLADAVA and the two VADDVA sums of the weights for the input offset,
 * mve_common.h), the four results requantized together.  Same results as ops/fully_connected.c,
 * bit for bit; int16x8 goes to the next kernel (tm_kernel_table.h).
 */
#include "mve_common.h"

/* No buffer; what it does not take goes to the next kernel, which may hold some. */
int32_t tm_fully_connected_mve_scratch_bytes(const tm_fc_params_t *p, const tm_fc_dims_t *d, uint8_t dtype) {
    (void)d;
    return TM_KERNEL_TAKES(fully_connected, mve, dtype) && p->filter_offset == 0 ? 0 : TM_SCRATCH_NEXT;
}

#if TM_HAVE_MVE

static void fc_row(const tm_fc_params_t *p, const int8_t *in_row, const int8_t *weights, const int32_t *bias,
                   int units, int depth, int8_t *out_row) {
    const int per_channel = p->n_multipliers > 1;
    const tm_mve_quant_t per_tensor = tm_mve_quant(vdupq_n_s32(p->out_multiplier[0]), vdupq_n_s32(p->out_shift[0]));
    for (int u = 0; u < units; u += 4) {
        const int lanes = units - u < 4 ? units - u : 4;
        const int8_t *w[4];
        tm_mve_rows4(weights, u, units, depth, w);
        int32x4_t sums;
        const int32x4_t dot = tm_mve_dot_sums_1x4(in_row, w, depth, &sums);
        const int32x4_t b = bias ? vldrwq_z_s32(bias + u, vctp32q((uint32_t)lanes)) : vdupq_n_s32(0);
        const int32x4_t acc = vmlaq_n_s32(vaddq_s32(b, dot), sums, p->input_offset);
        const tm_mve_quant_t q =
            per_channel ? tm_mve_quant_at(p->out_multiplier + u, p->out_shift + u, lanes) : per_tensor;
        tm_mve_store_s8(out_row + u, acc, q, p->output_offset, p->act_min, p->act_max, lanes);
    }
}

tm_status_t tm_kernel_fully_connected_mve(const tm_model_t *model, const tm_op_t *op) {
    const tm_fc_params_t *p = (const tm_fc_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *w_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *weights = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (!in_t || !TM_KERNEL_TAKES(fully_connected, mve, in_t->dtype) || p->filter_offset != 0 || !input || !weights ||
        !output || !w_t || w_t->rank != 2) {
        return tm_next_fully_connected_mve(model, op);
    }
    const int units = w_t->dims[0], depth = w_t->dims[1];
    const int batches = tm_elements(out_t) / units;
    for (int b = 0; b < batches; ++b) {
        fc_row(p, input + b * depth, weights, bias, units, depth, output + b * units);
    }
    return TM_OK;
}

#endif /* TM_HAVE_MVE */
