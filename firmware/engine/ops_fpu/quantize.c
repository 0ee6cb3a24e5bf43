/*
 * QUANTIZE float32 -> int8/int16 and DEQUANTIZE int8/int16 -> float32 on a single-precision
 * FPU (tm_kernel_table.h; other types go to the next kernel).  Same results as ops/quantize.c and
 * ops/dequantize.c, bit for bit:
 *  - QUANTIZE: q = x / scale is the same float division; for |q| < 2^20 its integer part t
 *    (VCVT truncates) and fraction q - t are exact in float, so rounding half away from zero
 *    is t + (fraction >= 0.5); larger |q| (and NaN, as the portable kernel) saturate.
 *    int8 outputs first take x * (1 / scale) in place of the division (quantize_s8_run, 14 cycles
 *    less): within the int8 range (|q| < 1024; beyond it both saturate) the product and the quotient
 *    differ by less than 2^-12 (three roundings of 2^-24 relative), so where q' + 0.5 lies more than
 *    2^-10 from an integer both round to the same one; the rare element nearer a tie, and NaN or
 *    infinity, stops the run and takes the division above.
 *  - DEQUANTIZE: (q - zero point) has at most 17 significant bits and scale 24, so their
 *    product is exact in double and the portable (float)(double * double) is the correctly
 *    rounded product, which is what the float multiply gives.
 */
#include "tm_kernels.h"

#if TM_HAVE_FPU

static inline int32_t quantize_one(float x, float scale, int32_t zero_point, int32_t lo, int32_t hi) {
    const float q = x / scale;
    const float magnitude = q < 0 ? -q : q;
    if (!(magnitude < 1048576.0f)) { /* |rounded| >= 2^20 exceeds int16 with any zero point; NaN */
        return q < 0 ? lo : hi;
    }
    const int32_t whole = (int32_t)magnitude;
    const int32_t rounded = whole + (magnitude - (float)whole >= 0.5f);
    const int32_t v = (q < 0 ? -rounded : rounded) + zero_point;
    return v < lo ? lo : (v > hi ? hi : v);
}

/* One element's check in quantize_s8_run: X the input, Q T F scratch; branches to SLOW when the element needs the
 * division, else leaves the truncation t in T. */
#define QUANTIZE_CHECK(X, Q, T, F, SLOW)          \
    "vmul.f32 " Q ", " X ", s8\n"                 \
    "vabs.f32 " Q ", " Q "\n"                     \
    "vadd.f32 " Q ", " Q ", s9\n"                 \
    "vcvt.s32.f32 " T ", " Q "\n"                 \
    "vcvt.f32.s32 " F ", " T "\n"                 \
    "vsub.f32 " F ", " Q ", " F "\n"              \
    "vsub.f32 " F ", " F ", s9\n"                 \
    "vabs.f32 " F ", " F "\n"                     \
    "vcmp.f32 " F ", s10\n"                       \
    "vmrs    APSR_nzcv, fpscr\n"                  \
    "bpl     " SLOW "\n"

/* The output of one element into R: +-t (T) with the sign of x (X; via S) + the zero point (r12), SSAT #8. */
#define QUANTIZE_OUT(R, S, T, X)                  \
    "vmov    " R ", " T "\n"                      \
    "vmov    " S ", " X "\n"                      \
    "eor     " R ", " R ", " S ", asr #31\n"      \
    "sub     " R ", " R ", " S ", asr #31\n"      \
    "add     " R ", " R ", r12\n"                 \
    "ssat    " R ", #8, " R "\n"

/*
 * int8 outputs of x up to end (an even number of elements) while each takes the product's rounding (see above);
 * returns where it stopped (end, or the element that needs the division).  Per element: q' = x * inv,
 * m = |q'| + 0.5, t = trunc(m); the run goes on while |m - t - 0.5| < 0.5 - 2^-10 (false for NaN); the output is
 * SSAT #8 of +-t + zero point with the sign of x (the scale is positive).  Two elements per pass, one VLDM, one
 * STRH.
 */
__attribute__((naked)) static const float *quantize_s8_run(const float *x __attribute__((unused)),
                                                          int8_t *y __attribute__((unused)),
                                                          const float *end __attribute__((unused)),
                                                          const float *consts __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r7}\n"
        "vldmia  r3, {s8-s10}\n" /* inv, 0.5, 0.5 - 2^-10 */
        "ldr     r12, [r3, #12]\n" /* the zero point */
        "cmp     r0, r2\n"
        "beq     2f\n"
        "1:\n"
        "vldmia  r0!, {s0-s1}\n"
        QUANTIZE_CHECK("s0", "s2", "s3", "s4", "3f")
        QUANTIZE_CHECK("s1", "s5", "s6", "s7", "4f")
        QUANTIZE_OUT("r4", "r5", "s3", "s0")
        QUANTIZE_OUT("r6", "r7", "s6", "s1")
        "bfi     r4, r6, #8, #8\n"
        "strh    r4, [r1], #2\n"
        "cmp     r0, r2\n"
        "bne     1b\n"
        "2:\n"
        "pop     {r4-r7}\n"
        "bx      lr\n"
        "3:\n" /* the first of the pair needs the division */
        "sub     r0, r0, #8\n"
        "pop     {r4-r7}\n"
        "bx      lr\n"
        "4:\n" /* the second does: the first's output, then stop at the second */
        QUANTIZE_OUT("r4", "r5", "s3", "s0")
        "strb    r4, [r1]\n"
        "sub     r0, r0, #4\n"
        "pop     {r4-r7}\n"
        "bx      lr\n");
}

/* int8 outputs by quantize_s8_run, the elements it stops at (and an odd last one) by the division. */
static void quantize_s8(const float *x, int8_t *y, int32_t n, float scale, int32_t zp) {
    const float inv = 1.0f / scale;
    const union { float f; int32_t i; } consts[4] = {{.f = inv}, {.f = 0.5f}, {.f = 0.5f - 0.0009765625f}, {.i = zp}};
    int32_t i = 0;
    if (scale > 0 && inv >= 1.17549435e-38f && inv < 3.4e38f) { /* a positive scale whose reciprocal is normal */
        while (i < n) {
            i += (int32_t)(quantize_s8_run(x + i, y + i, x + i + ((n - i) & ~1), &consts[0].f) - (x + i));
            if (i < n) {
                y[i] = (int8_t)quantize_one(x[i], scale, zp, INT8_MIN, INT8_MAX);
                ++i;
            }
        }
        return;
    }
    for (; i < n; ++i) {
        y[i] = (int8_t)quantize_one(x[i], scale, zp, INT8_MIN, INT8_MAX);
    }
}

tm_status_t tm_kernel_quantize_fpu(const tm_model_t *model, const tm_op_t *op) {
    const tm_quantize_params_t *p = (const tm_quantize_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const float *x = (const float *)tm_in_data(model, op, 0);
    void *output = tm_out_data(model, op, 0);
    if (!in_t || !TM_KERNEL_TAKES(quantize, fpu, in_t->dtype) || !x || !output ||
        (out_t->dtype != TM_INT8 && out_t->dtype != TM_INT16)) {
        return tm_next_quantize_fpu(model, op);
    }
    const float scale = p->scale;
    const int32_t zp = p->zero_point, n = tm_elements(out_t);
    if (out_t->dtype == TM_INT8) {
        quantize_s8(x, (int8_t *)output, n, scale, zp);
    } else {
        int16_t *y = (int16_t *)output;
        for (int32_t i = 0; i < n; ++i) {
            y[i] = (int16_t)quantize_one(x[i], scale, zp, INT16_MIN, INT16_MAX);
        }
    }
    return TM_OK;
}

/* y = (q - zero point) * scale for the int8 q up to end (a multiple of 4 elements), 4 per pass: four LDRSB, four
 * SUB, four VMOV, four VCVT, four VMUL and one VSTM (the C loop's 14 cycles an element become 7). */
__attribute__((naked)) static void dequantize_s8_run(const int8_t *q __attribute__((unused)),
                                                     float *y __attribute__((unused)),
                                                     const int8_t *end __attribute__((unused)),
                                                     const int32_t *consts __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r7}\n"
        "ldr     r12, [r3]\n"      /* the zero point */
        "vldr    s8, [r3, #4]\n"   /* the scale */
        "cmp     r0, r2\n"
        "beq     2f\n"
        "1:\n"
        "ldrsb   r4, [r0], #1\n"
        "ldrsb   r5, [r0], #1\n"
        "ldrsb   r6, [r0], #1\n"
        "ldrsb   r7, [r0], #1\n"
        "sub     r4, r4, r12\n"
        "sub     r5, r5, r12\n"
        "sub     r6, r6, r12\n"
        "sub     r7, r7, r12\n"
        "vmov    s0, r4\n"
        "vmov    s1, r5\n"
        "vmov    s2, r6\n"
        "vmov    s3, r7\n"
        "vcvt.f32.s32 s0, s0\n"
        "vcvt.f32.s32 s1, s1\n"
        "vcvt.f32.s32 s2, s2\n"
        "vcvt.f32.s32 s3, s3\n"
        "vmul.f32 s0, s0, s8\n"
        "vmul.f32 s1, s1, s8\n"
        "vmul.f32 s2, s2, s8\n"
        "vmul.f32 s3, s3, s8\n"
        "vstmia  r1!, {s0-s3}\n"
        "cmp     r0, r2\n"
        "bne     1b\n"
        "2:\n"
        "pop     {r4-r7}\n"
        "bx      lr\n");
}

tm_status_t tm_kernel_dequantize_fpu(const tm_model_t *model, const tm_op_t *op) {
    const tm_quantize_params_t *p = (const tm_quantize_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const void *input = tm_in_data(model, op, 0);
    float *y = (float *)tm_out_data(model, op, 0);
    if (!in_t || !input || !y || out_t->dtype != TM_FLOAT32 || !TM_KERNEL_TAKES(dequantize, fpu, in_t->dtype)) {
        return tm_next_dequantize_fpu(model, op);
    }
    const float scale = p->scale;
    const int32_t zp = p->zero_point, n = tm_elements(out_t);
    if (in_t->dtype == TM_INT8) {
        const int8_t *q = (const int8_t *)input;
        const union { float f; int32_t i; } consts[2] = {{.i = zp}, {.f = scale}};
        dequantize_s8_run(q, y, q + (n & ~3), &consts[0].i);
        for (int32_t i = n & ~3; i < n; ++i) {
            y[i] = (float)(q[i] - zp) * scale;
        }
    } else {
        const int16_t *q = (const int16_t *)input;
        for (int32_t i = 0; i < n; ++i) {
            y[i] = (float)(q[i] - zp) * scale;
        }
    }
    return TM_OK;
}

#endif /* TM_HAVE_FPU */
