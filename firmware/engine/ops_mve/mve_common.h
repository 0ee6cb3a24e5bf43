/*
 * mve_common.h - int8 dot products on Helium (M-profile Vector Extension,
 * Cortex-M55/M85), for ops_mve/.  16 int8 lanes per vector; the last partial
 * vector is tail-predicated (VCTP + zeroing loads), so any length works.
 *
 * The input offset (-input zero point) is not added lane by lane: the kernels
 * accumulate sum(w * x) with VMLADAVA and sum(w) with VADDVA over the same
 * (valid) taps and form sum(w * (x + offset)) = sum(w * x) + offset * sum(w),
 * which is the portable kernel's int32 accumulator exactly (all in wrapping
 * 32-bit arithmetic).  Requantization is ops_dsp's (the M55 also has the DSP
 * extension) or the portable helper.
 */
#ifndef TM_MVE_COMMON_H
#define TM_MVE_COMMON_H

#if !defined(__ARM_FEATURE_MVE)
#error "ops_mve/ needs a core with Helium (build.py adds it only for those)"
#endif

#include <arm_mve.h>
#include <stdint.h>

#include "tm_fixedpoint.h"
#include "tm_kernels.h"

/* s[0] += a.w0, s[1] += a.w1, s[2] += sum(w0), s[3] += sum(w1) over n elements. */
static inline void tm_mve_dot_1x2(const int8_t *a, const int8_t *w0, const int8_t *w1, int n, int32_t s[4]) {
    int32_t d0 = s[0], d1 = s[1], e0 = s[2], e1 = s[3];
    for (; n > 0; n -= 16) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        const int8x16_t x = vldrbq_z_s8(a, p), f0 = vldrbq_z_s8(w0, p), f1 = vldrbq_z_s8(w1, p);
        a += 16, w0 += 16, w1 += 16;
        d0 = vmladavaq_s8(d0, x, f0);
        d1 = vmladavaq_s8(d1, x, f1);
        e0 = vaddvaq_s8(e0, f0);
        e1 = vaddvaq_s8(e1, f1);
    }
    s[0] = d0, s[1] = d1, s[2] = e0, s[3] = e1;
}

/* s[0] += a.w, s[1] += sum(w) over n elements. */
static inline void tm_mve_dot_1x1(const int8_t *a, const int8_t *w, int n, int32_t s[2]) {
    int32_t d = s[0], e = s[1];
    for (; n > 0; n -= 16) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        const int8x16_t x = vldrbq_z_s8(a, p), f = vldrbq_z_s8(w, p);
        a += 16, w += 16;
        d = vmladavaq_s8(d, x, f);
        e = vaddvaq_s8(e, f);
    }
    s[0] = d, s[1] = e;
}

/* bias + dot + offset * weight_sum in wrapping int32 arithmetic (the portable accumulator). */
static inline int32_t tm_mve_acc(int32_t bias, int32_t dot, int32_t offset, int32_t weight_sum) {
    return (int32_t)((uint32_t)bias + (uint32_t)dot + (uint32_t)offset * (uint32_t)weight_sum);
}

static inline int8_t tm_mve_out_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t out_offset,
                                   int32_t act_min, int32_t act_max) {
    const int32_t v = tm_multiply_by_quantized_multiplier(acc, multiplier, shift) + out_offset;
    return (int8_t)tm_clamp_i32(v, act_min, act_max);
}

#endif /* TM_MVE_COMMON_H */
