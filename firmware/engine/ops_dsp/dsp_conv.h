/* dsp_conv.h - the paths of the DSP CONV_2D kernel (conv_2d_gemm.c, conv_2d_wide.c) and what the depthwise
 * kernel shares with them.  Plain C (no DSP instructions): the scratch-size functions compile for any target. */
#ifndef TM_DSP_CONV_H
#define TM_DSP_CONV_H

#include "tm_kernels.h"

/* Taps per output pixel (f_h * f_w * in_c) the column buffer holds: two pixels of int16 on the stack
 * while a CONV_2D runs (its bytes and the rest: tm_dsp_conv_2d_gemm_scratch_bytes). */
#define TM_DSP_GEMM_MAX_TAPS 1024

int tm_dsp_conv_2d_gemm_fits(int taps);

/* Scratch of the im2col path over in_c input channels, int8 or int16x8 (conv_2d_gemm.c). */
int32_t tm_dsp_conv_2d_gemm_scratch_bytes(int32_t in_c, uint8_t dtype);

/* Per-channel requantization table (multiplier, right shift - 1, rounding constant) of the assembly
 * requantization: 0 when a shift is not a right shift, 1 plain, 2 with the output offset folded into the
 * rounding constant for a full int8 activation range (conv_2d_gemm.c). */
int tm_dsp_rq_table(const int32_t *multiplier, const int32_t *shift, int n, int32_t out_offset, int32_t act_min,
                    int32_t act_max, int32_t *table);

/* int8 CONV_2D (not grouped: filter depth == input depth), NHWC, OHWI filter. */
void tm_dsp_conv_2d_gemm(const tm_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                         int8_t *output, const int32_t in_dims[4], const int32_t f_dims[4], const int32_t out_dims[4]);

/* int8 CONV_2D over weights widened once per op (conv_2d_wide.c): returns 0, having done nothing, for
 * the cases it does not cover (odd out_c, more than 256 taps, fused activations narrower than int8, ...). */
int tm_dsp_conv_2d_wide(const tm_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                        int8_t *output, const int32_t in_dims[4], const int32_t f_dims[4], const int32_t out_dims[4]);

/* Scratch of the widened-weight path when the op's dims and activation range let it run (it may still
 * decline for a channel's requantization, see tm_dsp_wide_rq), else 0 (conv_2d_wide.c). */
int32_t tm_dsp_conv_2d_wide_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d);

/* int8 CONV_2D, 3x3, stride 1, in Winograd F(2x2, 3x3) over the filter the compiler transformed (p->winograd,
 * conv_2d_winograd.c): returns 0, having done nothing, without p->winograd or for dims it does not take. */
int tm_dsp_conv_2d_winograd(const tm_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                            int8_t *output, const int32_t in_dims[4], const int32_t f_dims[4],
                            const int32_t out_dims[4]);

/* Whether the Winograd path takes an op of these dims (3x3, stride and dilation 1, in_c a multiple of 4 up to
 * 128, even out_c, at least 2x2 outputs): the compiler transforms the filter of exactly these
 * (host/compiler/ops/conv.py); and its scratch, or 0. */
int tm_dsp_winograd_takes(const tm_conv_params_t *p, const tm_conv_dims_t *d);
int32_t tm_dsp_conv_2d_winograd_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d);

/* int16x8 CONV_2D, 3x3, stride 1, over a non-negative input, in Winograd F(2, 3) along the rows over the filter
 * the compiler transformed (p->winograd, conv_2d_winograd16.c): returns 0, having done nothing, without
 * p->winograd, for dims it does not take or an input with a negative value. */
int tm_dsp_conv_2d_winograd16(const tm_conv_params_t *p, const int16_t *input, const int8_t *filter,
                              const void *bias, int16_t *output, const int32_t in_dims[4], const int32_t f_dims[4],
                              const int32_t out_dims[4]);

/* Whether that path takes an op of these dims (3x3, stride and dilation 1, input offset 0, in_c a multiple of 4
 * up to 128, even out_c, at least 2 output columns): the compiler transforms the filter of these only where the
 * input is a ReLU's and the sums fit (host/compiler/ops/conv.py); and its scratch, or 0. */
int tm_dsp_winograd16_takes(const tm_conv_params_t *p, const tm_conv_dims_t *d);
int32_t tm_dsp_conv_2d_winograd16_scratch_bytes(const tm_conv_params_t *p, const tm_conv_dims_t *d);

/*
 * The requantization table of channels [oc0, oc0 + n) of an int16x8 op that fits (int64 bias or none:
 * tm_dsp_s16_channels_fit), 4 words per channel: the bias, then where every channel's total shift right =
 * 15 - shift is 16..31 (the usual case) TFLite's 16-bit multiplier times 2^(32 - right) (tm_requantize_s16_at,
 * dsp_common.h), else the multiplier, 2^(right - 1) and right.  Returns which form the table has (1: the first).
 * conv_2d_gemm.c.
 */
int tm_dsp_s16_table(const tm_conv_params_t *p, const int64_t *bias, int oc0, int n, int32_t *table);

/* Requantization of channel oc by the wide kernels (conv_2d_wide.c, depthwise_conv_2d.c), which
 * compute SMMULR(2 acc, M), add c and the sign, shift right by r and saturate: the table words M, c, r
 * into t (when not 0); returns 0 when the channel cannot be done so.  Its k weights are w[i * w_stride].
 * With p->wide_rq (the compiler's words for every channel) it only reads them. */
#define TM_DSP_WIDE_UNSUPPORTED 0
int tm_dsp_wide_rq_compute(const tm_conv_params_t *p, const int8_t *w, int k, int w_stride, const int32_t *bias,
                           int oc, int32_t *t);

static inline int tm_dsp_wide_rq(const tm_conv_params_t *p, const int8_t *w, int k, int w_stride,
                                 const int32_t *bias, int oc, int32_t *t) {
    if (!p->wide_rq) {
        return tm_dsp_wide_rq_compute(p, w, k, w_stride, bias, oc, t);
    }
    const int32_t *q = p->wide_rq + 3 * oc; /* the compiler's words: read where they are asked for, no call */
    if (q[2] == 0) {
        return TM_DSP_WIDE_UNSUPPORTED;
    }
    if (t) {
        t[0] = q[0], t[1] = q[1], t[2] = q[2];
    }
    return 1; /* supported (the callers tell only that from TM_DSP_WIDE_UNSUPPORTED) */
}

/* int8 DEPTHWISE_CONV_2D with a 3x3 filter, over int16 channel planes (depthwise_conv_2d_planar.c), for one
 * batch: returns 0, having done nothing, when it does not take the op (stride, activation range, sizes).
 * Its plane fits what tm_depthwise_conv_2d_dsp_scratch_bytes reserves. */
int tm_dsp_depthwise_planar(const tm_conv_params_t *p, const int8_t *in_b, const int8_t *filter, const int32_t *bias,
                            int8_t *out_b, int in_h, int in_w, int ch, int out_h, int out_w);

/*
 * One group of 4 taps of the widened-weight loops (conv_2d_wide.c, and conv_2d_gemm.c for int16x8): one LDM of
 * the two pixels' taps (r7, r8 pixel 0 lo, hi; r9, r10 pixel 1) from r0, one LDM of the two channels' widened
 * weights (r2, r11 channel 0; r12, lr channel 1) from r1, 8 SMLAD into r3 (pixel 0 channel 0), r4 (pixel 0
 * channel 1), r5 (pixel 1 channel 0), r6 (pixel 1 channel 1): 10 instructions, 40 bytes, per 16 MACs.
 */
#define TM_DSP_WIDE_GROUP_BYTES 40
#define TM_DSP_WIDE_GROUP_ASM            \
    "ldmia.w r0!, {r7-r10}\n"            \
    "ldmia.w r1!, {r2, r11, r12, lr}\n"  \
    "smlad   r3, r7, r2, r3\n"           \
    "smlad   r3, r8, r11, r3\n"          \
    "smlad   r5, r9, r2, r5\n"           \
    "smlad   r5, r10, r11, r5\n"         \
    "smlad   r4, r7, r12, r4\n"          \
    "smlad   r4, r8, lr, r4\n"           \
    "smlad   r6, r9, r12, r6\n"          \
    "smlad   r6, r10, lr, r6\n"

/*
 * The products loop of the Winograd paths (conv_2d_winograd.c's wino_pair, conv_2d_winograd16.c's wino16_sums),
 * whose job starts with V (+0) and U (+4): the frame (the job at [sp]), 4 sums zeroed, a jump through the control
 * word that starts each position of V into a run of GROUPS groups (TM_DSP_WIDE_GROUP_ASM, 40 bytes each: r0 V,
 * r1 U, r3-r6 sums) at the op's group count; the run's end, label END, pushes the 4 sums and jumps through the next
 * control word; the last one (tm_dsp_wino_controls) leads to label EXIT, after which the caller's code goes on
 * with the positions' sums pushed (the first the highest) and the job at [sp + 16 * positions].
 */
#define TM_DSP_WINO_ZERO_SUMS "movs    r3, #0\n" "movs    r4, #0\n" "movs    r5, #0\n" "movs    r6, #0\n"
#define TM_DSP_WINO_SUMS_ASM(GROUPS, END, EXIT) \
    "push    {r4-r11, lr}\n"                    \
    "sub     sp, sp, #8\n"                      \
    "str     r0, [sp]\n"                        \
    "ldr     r1, [r0, #4]\n"                    \
    "ldr     r0, [r0, #0]\n"                    \
    TM_DSP_WINO_ZERO_SUMS                       \
    "ldr     pc, [r0], #4\n"                    \
    ".rept " GROUPS "\n"                        \
    TM_DSP_WIDE_GROUP_ASM                       \
    ".endr\n"                                   \
    ".global " END "\n"                         \
    END ":\n"                                   \
    "push    {r3-r6}\n"                         \
    TM_DSP_WINO_ZERO_SUMS                       \
    "ldr     pc, [r0], #4\n"                    \
    ".global " EXIT "\n"                        \
    EXIT ":\n"

/* The control words of a Winograd path's V (TM_DSP_WINO_SUMS_ASM): `positions` of them, stride words apart, each
 * jumping into the run at the op's group count (its end, run_end, less 40 bytes a group), then one to run_exit. */
static inline void tm_dsp_wino_controls(int32_t *v, int positions, int32_t stride, const char *run_end,
                                        const char *run_exit, int groups) {
    for (int pos = 0; pos < positions; ++pos) {
        v[pos * stride] = (int32_t)(((uintptr_t)run_end - 40u * (uint32_t)groups) | 1u);
    }
    v[positions * stride] = (int32_t)((uintptr_t)run_exit | 1u);
}

/* int16x8 (input offset 0): SMLAD takes the int16 activations as they are.  int32 sums are exact up to
 * TM_DSP_S16_EXACT_TAPS taps (|int16 * int8| <= 2^22, 511 * 2^22 < 2^31): longer dot products are
 * summed in parts, in int64 (TFLM's 64-bit accumulator; the 32-bit one wraps the same). */
#define TM_DSP_S16_EXACT_TAPS 511

/* Whether every channel of an int16x8 CONV_2D with an int64 bias (or none; OHWI filter of k taps per channel)
 * has |bias| + 32768 * sum |w| < 2^31 (its int32 sums, and sum + bias, are exact; p->acc32_fits when the compiler
 * found it), a non-negative multiplier
 * and a total shift 15 - shift within [right_min, right_max]: the int32 routes of the DSP (conv_2d_gemm.c)
 * and Helium (ops_mve/conv_2d.c) kernels.  Defined where the core has the DSP extension. */
int tm_dsp_s16_channels_fit(const tm_conv_params_t *p, const int8_t *filter, int k, const int64_t *bias, int out_c,
                            int right_min, int right_max);

void tm_dsp_conv_2d_gemm_s16(const tm_conv_params_t *p, const int16_t *input, const int8_t *filter, const void *bias,
                             int16_t *output, const int32_t in_dims[4], const int32_t f_dims[4],
                             const int32_t out_dims[4]);

#endif /* TM_DSP_CONV_H */
