/*
 * FULLY_CONNECTED, int8 and int16x8 (weights zero point 0), for cores with the DSP
 * extension.  Same results as ops/fully_connected.c, bit for bit.
 *
 * Depth up to FC_MAX_DEPTH: the input row is widened (int8) or reordered (int16) once, then
 * six units per pass in assembly over the compiler's pre-widened int8 weights (p->weights16,
 * "Pre-widened weights" below), or four units per pass over the int8 weights.  Deeper int8
 * rows: two units per pass in C.
 * Weights with a zero point and deeper int16 rows go to the next kernel (tm_kernel_table.h).
 */
#include "tm_kernels.h"

/*
 * Widened-input path (depth up to FC_MAX_DEPTH): the input row is widened to int16 once, with the
 * offset added, into a stack buffer in the order SXTB16 widens a weight word (elements
 * 0, 2, 1, 3 of each group of 4); then four units per pass in assembly: per 4 elements one LDRD of
 * the input and, per unit, one weight word, two SXTB16 and two SMLAD (23 instructions per 16 MACs).
 */
#define FC_MAX_DEPTH 1024
#define FC_CHUNK_UNITS 128 /* units whose sums one call keeps on the stack */
#define FC_CHUNK_SUMS (FC_CHUNK_UNITS + 3) /* int32: fc_quads stores whole quads */

/* The widened row and the sums of the path an op of these dims takes (deeper int8 rows: none). */
int32_t tm_fully_connected_dsp_scratch_bytes(const tm_fc_params_t *p, const tm_fc_dims_t *d, uint8_t dtype) {
    const int32_t row = FC_MAX_DEPTH * (int32_t)sizeof(int16_t), sums = FC_CHUNK_SUMS * (int32_t)sizeof(int32_t);
    if (!TM_KERNEL_TAKES(fully_connected, dsp, dtype) || p->filter_offset != 0) {
        return TM_SCRATCH_NEXT;
    }
    if (dtype == TM_INT16) { /* fc_s16's int64 sums around fc_chunk_s16's int32 ones */
        return d->depth <= FC_MAX_DEPTH ? row + FC_CHUNK_UNITS * (int32_t)sizeof(int64_t) + sums : TM_SCRATCH_NEXT;
    }
    return d->depth <= FC_MAX_DEPTH ? row + sums : 0;
}

#if TM_HAVE_DSP
#include "dsp_mac.h"

/* Work of fc_quads (read and updated by the assembly: keep the field offsets). */
typedef struct {
    const int16_t *x;  /* +0  widened input */
    const int8_t *w;   /* +4  weights of the first unit of the next quad */
    int32_t d1, d2, d3; /* +8 +12 +16 offsets of the other three units' weights (repeat the last for < 4) */
    int32_t k4;        /* +20 elements in groups of 4 */
    int32_t w_step;    /* +24 from the end of a unit's groups to the next quad's first unit */
    int32_t quads;     /* +28 quads left (>= 1) */
    int32_t *acc;      /* +32 where the next quad's 4 sums go */
} fc_job_t;

__attribute__((naked)) static void fc_quads(fc_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r0, r4-r11, lr}\n"
        "ldr     r1, [r0, #4]\n"
        "ldr     r2, [r0, #8]\n"
        "ldr     r12, [r0, #12]\n"
        "ldr     lr, [r0, #16]\n"
        "3:\n"
        "ldr     r0, [sp]\n"
        "ldr     r3, [r0, #20]\n"
        "add     r3, r1, r3\n"
        "ldr     r0, [r0, #0]\n"
        "mov.w   r4, #0\n"
        "mov.w   r5, #0\n"
        "mov.w   r6, #0\n"
        "mov.w   r7, #0\n"
        "cmp     r1, r3\n"
        "beq     2f\n"
        "1:\n"
        "ldrd    r8, r9, [r0], #8\n"
        "ldr     r10, [r1, r2]\n"
        "sxtb16  r11, r10\n"
        "smlad   r5, r8, r11, r5\n"
        "sxtb16  r11, r10, ror #8\n"
        "smlad   r5, r9, r11, r5\n"
        "ldr     r10, [r1, r12]\n"
        "sxtb16  r11, r10\n"
        "smlad   r6, r8, r11, r6\n"
        "sxtb16  r11, r10, ror #8\n"
        "smlad   r6, r9, r11, r6\n"
        "ldr     r10, [r1, lr]\n"
        "sxtb16  r11, r10\n"
        "smlad   r7, r8, r11, r7\n"
        "sxtb16  r11, r10, ror #8\n"
        "smlad   r7, r9, r11, r7\n"
        "ldr     r10, [r1], #4\n"
        "sxtb16  r11, r10\n"
        "smlad   r4, r8, r11, r4\n"
        "sxtb16  r11, r10, ror #8\n"
        "smlad   r4, r9, r11, r4\n"
        "cmp     r1, r3\n"
        "bne     1b\n"
        "2:\n"
        "ldr     r3, [sp]\n"
        "ldr     r0, [r3, #32]\n"
        "stm     r0!, {r4-r7}\n"
        "str     r0, [r3, #32]\n"
        "ldr     r0, [r3, #24]\n"
        "add     r1, r1, r0\n"
        "ldr     r0, [r3, #28]\n"
        "subs    r0, r0, #1\n"
        "str     r0, [r3, #28]\n"
        "bne     3b\n"
        "pop     {r0, r4-r11, pc}\n");
}

/* Work of fc_requantize_right (read by the assembly: keep the field offsets). */
typedef struct {
    const int32_t *acc;   /* +0  sums */
    const int32_t *bias;  /* +4  per unit, or NULL */
    int8_t *out;          /* +8 */
    int32_t n;            /* +12 units (>= 1) */
    int32_t multiplier;   /* +16 */
    int32_t half;         /* +20 2^(right-1) */
    int32_t right_m1;     /* +24 */
    int32_t offset;       /* +28 output zero point */
    int32_t lo, hi;       /* +32 +36 the clamp */
} fc_rq_job_t;

/* One unit's output from its sum in r12: tm_dsp_requantize_right, + offset, clamp, store. */
#define FC_RQ_UNIT                                                                                                \
    "mov     r9, #0x40000000\n"                                                                                  \
    "mov     r10, #0\n"                                                                                          \
    "smlal   r9, r10, r12, r3\n"                                                                                 \
    "add     r11, r4, r10, asr #31\n"                                                                            \
    "adds    r9, r9, r11, lsl #31\n"                                                                             \
    "adc     r10, r10, r11, asr #1\n"                                                                            \
    "asr     r10, r10, r5\n"                                                                                     \
    "add     r10, r10, r6\n"                                                                                     \
    "cmp     r10, r7\n"                                                                                          \
    "it      lt\n"                                                                                               \
    "movlt   r10, r7\n"                                                                                          \
    "cmp     r10, r8\n"                                                                                          \
    "it      gt\n"                                                                                               \
    "movgt   r10, r8\n"                                                                                          \
    "strb    r10, [r2], #1\n"

/*
 * out[u] = clamp(requantize(acc[u] + bias[u]) + offset) for one multiplier with a right shift (the usual case):
 * tm_dsp_requantize_right's SMLAL sequence with every constant in a register, 19 instructions per unit (about 23
 * estimated M4 cycles) where the C loop spent 26 and spilled the clamp's bounds (35).
 */
__attribute__((naked)) static void fc_requantize_right(const fc_rq_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r11, lr}\n"
        "ldr     r2, [r0, #8]\n"
        "ldr     r1, [r0, #12]\n"
        "ldr     r3, [r0, #16]\n"
        "ldr     r4, [r0, #20]\n"
        "ldr     r5, [r0, #24]\n"
        "ldr     r6, [r0, #28]\n"
        "ldr     r7, [r0, #32]\n"
        "ldr     r8, [r0, #36]\n"
        "ldr     lr, [r0, #4]\n"
        "ldr     r0, [r0, #0]\n"
        "add     r1, r0, r1, lsl #2\n"
        "cmp     lr, #0\n"
        "beq     2f\n"
        "1:\n"
        "ldr     r12, [r0], #4\n"
        "ldr     r11, [lr], #4\n"
        "add     r12, r12, r11\n" FC_RQ_UNIT
        "cmp     r0, r1\n"
        "bne     1b\n"
        "pop     {r4-r11, pc}\n"
        "2:\n"
        "ldr     r12, [r0], #4\n" FC_RQ_UNIT
        "cmp     r0, r1\n"
        "bne     2b\n"
        "pop     {r4-r11, pc}\n");
}

/* Outputs of n units from their sums: the usual case above; the general loop reloads a unit's multiplier and
 * shift and tests the shift's sign per unit. */
static void fc_outputs(const tm_fc_params_t *p, const int32_t *acc, const int32_t *bias, int u0, int n,
                       int8_t *out) {
    const int32_t offset = p->output_offset, lo = p->act_min, hi = p->act_max;
    if (p->n_multipliers == 1 && p->out_shift[0] < 0 && n > 0) {
        const tm_dsp_rq_t q = tm_dsp_rq_of(p->out_multiplier[0], p->out_shift[0]);
        const fc_rq_job_t job = {acc, bias ? bias + u0 : NULL, out, n, q.multiplier, q.half, q.right_m1,
                                 offset, lo, hi};
        fc_requantize_right(&job);
        return;
    }
    const int per_channel = p->n_multipliers > 1;
    for (int u = 0; u < n; ++u) {
        const int q = per_channel ? u0 + u : 0;
        const int32_t s = acc[u] + (bias ? bias[u0 + u] : 0);
        out[u] = tm_dsp_out_s8(s, p->out_multiplier[q], p->out_shift[q], offset, lo, hi);
    }
}

/*
 * Pre-widened weights (p->weights16, from the compiler where TM_FC_WEIGHTS16 is set,
 * host/compiler/ops/fully_connected.py): no SXTB16 on the weights.  The stream holds the units in groups of
 * six (hextets) and then, only where sixes alone would pad, of four (quads; fc16_groups); per group each
 * unit's doubled bias (int32), then per 4 elements of depth each unit's 4 weights, doubled, as two int16
 * pairs that SMLAD multiplies with the input's natural pairs.  Padded units have zero weights and bias, the
 * depth is padded to 4 with zero weights (and the input row with zeros).  The compiler builds the stream
 * only when |bias| + depth * 255 * 128 < 2^30, so the sums, 2 * (sum + bias), fit int32 exactly.
 *
 * Six units per pass is the most the M4's 14 registers hold with the weights loaded in three LDM of 4 per
 * 4 elements: 6 sums, 2 input words, 4 weight words, the two pointers, and no end register: the depth is
 * fully unrolled (a run of FC16_RUN_BODIES bodies the call jumps into, repeated for deeper rows).  Per 4
 * elements one LDRD of the input, three LDM of 4 weight words and 12 SMLAD: 30 estimated M4 cycles per 24
 * MACs (1.25 per MAC; four units per pass took 43.5 per 32).  The sums start from the stream's doubled
 * biases, and the requantization follows with them in registers (the wide CONV_2D path's form,
 * conv_2d_wide.c: SRDHM(acc, M) = SMMULR(2 acc, M), the sign taken from the sum,
 * SMMLAR(2 acc, M, c - [acc < 0]) then ASR by r and SSAT #8, c = 2^(r-1) + o 2^r), 4 instructions an output
 * where the loop over stored sums took 19; ops it does not cover (per-channel multipliers, a left shift, a
 * clamp narrower than int8, ...) store the sums and take fc_outputs.
 */
#if TM_FC_WEIGHTS16 /* builds without the compiler's stream (Helium; a board short of flash) leave this out */
#define FC16_HEXTET 6
#define FC16_QUAD 4
#define FC16_RUN_BODIES 32 /* 4 elements each: 128 elements, 2 KiB of code */
#define FC16_CHUNK_HEXTETS (FC_CHUNK_UNITS / FC16_HEXTET) /* whose sums fit acc */
#define FC16_STR(x) #x
#define FC16_XSTR(x) FC16_STR(x)

/* fc16_groups in host/compiler/ops/fully_connected.py. */
static void fc16_groups(int units, int *hextets, int *quads) {
    const int even = units + (units & 1), rest = even % FC16_HEXTET;
    *quads = even == 2 ? 1 : (rest == 2 ? 2 : (rest == 4 ? 1 : 0));
    *hextets = even == 2 ? 0 : (even - FC16_QUAD * *quads) / FC16_HEXTET;
}

/* Work of fc16_hextets (read and updated by the assembly: keep the field offsets). */
typedef struct {
    const int16_t *x;   /* +0  widened input, padded to the depth in groups of 4 */
    const int16_t *w;   /* +4  the next group's stream (updated) */
    int32_t first;      /* +8  bodies of the first run (1 .. FC16_RUN_BODIES) */
    int32_t runs;       /* +12 full runs after it */
    int32_t hextets;    /* +16 hextets left (>= 1) */
    void *out;          /* +20 int8 outputs, or int32 sums when store_sums (updated) */
    int32_t multiplier; /* +24 M */
    int32_t c;          /* +28 2^(r-1) + o 2^r */
    int32_t right;      /* +32 r */
    int32_t store_sums; /* +36 */
    int32_t runs_left;  /* +40 the assembly's */
    uint32_t entry;     /* +44 the assembly's: where the first run is entered */
} fc16_job_t;

/* Two units' 4 weights of 4 elements (one LDM of 4 words into r10-r12 lr) times the input pairs in r8 r9, into
 * the sums S0 and S1.  Every instruction a 32-bit one. */
#define FC16_UNIT_PAIR(S0, S1)                                                                                    \
    "ldmia.w r1!, {r10, r11, r12, lr}\n"                                                                        \
    "smlad   " S0 ", r8, r10, " S0 "\n"                                                                         \
    "smlad   " S0 ", r9, r11, " S0 "\n"                                                                         \
    "smlad   " S1 ", r8, r12, " S1 "\n"                                                                         \
    "smlad   " S1 ", r9, lr, " S1 "\n"

/* 4 elements of depth for 6 units, sums r2-r7: 64 bytes, which the jump into the run counts on. */
#define FC16_BODY                                                                                                 \
    "ldrd    r8, r9, [r0], #8\n" FC16_UNIT_PAIR("r2", "r3") FC16_UNIT_PAIR("r4", "r5") FC16_UNIT_PAIR("r6", "r7")

/* The output of the doubled sum A: M in r9, c in r10, r in r11 (scratch r12). */
#define FC16_RQ(A)                            \
    "sub     r12, r10, " A ", lsr #31\n"      \
    "smmlar  " A ", " A ", r9, r12\n"         \
    "asr     " A ", " A ", r11\n"             \
    "ssat    " A ", #8, " A "\n"

__attribute__((naked)) static void fc16_hextets(fc16_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r0, r4-r11, lr}\n"
        "ldr     r1, [r0, #4]\n"
        "ldr     r8, [r0, #8]\n"
        "adr.w   r9, 8f\n"
        "sub     r9, r9, r8, lsl #6\n"
        "orr     r9, r9, #1\n"
        "str     r9, [r0, #44]\n" /* the entry into the run for the first bodies */
        "mov     lr, r0\n"
        "1:\n"
        "ldr     r8, [lr, #12]\n"
        "ldr     r9, [lr, #44]\n"
        "ldr     r0, [lr, #0]\n"
        "str     r8, [lr, #40]\n"
        "ldmia   r1!, {r2-r7}\n"
        "bx      r9\n"
        "7:\n"
        ".rept " FC16_XSTR(FC16_RUN_BODIES) "\n" FC16_BODY ".endr\n"
        "8:\n"
        "ldr     lr, [sp]\n"
        "ldr     r8, [lr, #40]\n"
        "subs    r8, r8, #1\n"
        "bpl     5f\n"
        "ldr     r8, [lr, #36]\n"
        "cmp     r8, #0\n"
        "bne     3f\n"
        "add     r8, lr, #20\n"
        "ldm     r8, {r8-r11}\n" /* out, M, c, r */
        FC16_RQ("r2") FC16_RQ("r3") FC16_RQ("r4") FC16_RQ("r5") FC16_RQ("r6") FC16_RQ("r7")
        "bfi     r2, r3, #8, #8\n" /* three halfword stores (unaligned for an odd row: the M4 allows STRH so) */
        "bfi     r4, r5, #8, #8\n"
        "bfi     r6, r7, #8, #8\n"
        "strh    r2, [r8], #2\n"
        "strh    r4, [r8], #2\n"
        "strh    r6, [r8], #2\n"
        "4:\n"
        "str     r8, [lr, #20]\n"
        "ldr     r8, [lr, #16]\n"
        "subs    r8, r8, #1\n"
        "str     r8, [lr, #16]\n"
        "bne     1b\n"
        "str     r1, [lr, #4]\n"
        "pop     {r0, r4-r11, pc}\n"
        "3:\n" /* the sums stored */
        "ldr     r8, [lr, #20]\n"
        "stmia   r8!, {r2-r7}\n"
        "b       4b\n"
        "5:\n" /* another run of the depth */
        "str     r8, [lr, #40]\n"
        "b       7b\n");
}

/* Work of fc16_quads (read and updated by the assembly: keep the field offsets). */
typedef struct {
    const int16_t *x;  /* +0  widened input, padded to the depth in groups of 4 */
    const int16_t *w;  /* +4  the first quad's stream */
    int32_t row_bytes; /* +8  bytes of the padded input row (8 per group of 4) */
    int32_t quads;     /* +12 quads left (>= 1) */
    int32_t *acc;      /* +16 where the next quad's 4 sums go */
} fc16_quad_job_t;

/* 4 elements of depth for 4 units, sums r4-r7. */
#define FC16_QUAD_BODY "ldrd    r8, r9, [r0], #8\n" FC16_UNIT_PAIR("r4", "r5") FC16_UNIT_PAIR("r6", "r7")

/* The quads after the hextets (at most 2 per op): two bodies per pass, entered at the second for an odd count. */
__attribute__((naked)) static void fc16_quads(fc16_quad_job_t *job __attribute__((unused))) {
    __asm__ volatile(
        "push    {r0, r4-r11, lr}\n"
        "ldr     r1, [r0, #4]\n"
        "1:\n"
        "ldr     r3, [sp]\n"
        "ldr     r0, [r3, #0]\n"
        "ldr     r2, [r3, #8]\n"
        "tst     r2, #8\n"
        "add     r2, r0, r2\n"
        "ldmia   r1!, {r4-r7}\n"
        "bne     3f\n"
        "2:\n" FC16_QUAD_BODY
        "3:\n" FC16_QUAD_BODY
        "cmp     r0, r2\n"
        "bne     2b\n"
        "ldr     r3, [sp]\n"
        "ldr     r0, [r3, #16]\n"
        "stmia   r0!, {r4-r7}\n"
        "str     r0, [r3, #16]\n"
        "ldr     r0, [r3, #12]\n"
        "subs    r0, r0, #1\n"
        "str     r0, [r3, #12]\n"
        "bne     1b\n"
        "pop     {r0, r4-r11, pc}\n");
}

/* The words from x up to end (a multiple of 4 bytes) + the offset pair off2 into dst in natural order, (x0, x1),
 * (x2, x3) per word: 8 elements per pass (two LDR, which may be unaligned; four SXTAB16, two PKHBT, two PKHTB,
 * one STM), the first pass 4 when the words are odd. */
__attribute__((naked)) static void widen_natural_run(const int8_t *x __attribute__((unused)),
                                                     uint32_t *dst __attribute__((unused)),
                                                     const int8_t *end __attribute__((unused)),
                                                     int32_t off2 __attribute__((unused))) {
    __asm__ volatile(
        "push    {r4-r9, lr}\n"
        "sub     r12, r2, r0\n"
        "tst     r12, #4\n"
        "beq     2f\n"
        "ldr     r4, [r0], #4\n"
        "sxtab16 r12, r3, r4\n"
        "sxtab16 lr, r3, r4, ror #8\n"
        "pkhbt   r6, r12, lr, lsl #16\n"
        "pkhtb   r7, lr, r12, asr #16\n"
        "stmia   r1!, {r6, r7}\n"
        "2:\n"
        "cmp     r0, r2\n"
        "beq     3f\n"
        "1:\n"
        "ldr     r4, [r0], #4\n"
        "ldr     r5, [r0], #4\n"
        "sxtab16 r12, r3, r4\n"
        "sxtab16 lr, r3, r4, ror #8\n"
        "pkhbt   r6, r12, lr, lsl #16\n"
        "pkhtb   r7, lr, r12, asr #16\n"
        "sxtab16 r12, r3, r5\n"
        "sxtab16 lr, r3, r5, ror #8\n"
        "pkhbt   r8, r12, lr, lsl #16\n"
        "pkhtb   r9, lr, r12, asr #16\n"
        "stmia   r1!, {r6-r9}\n"
        "cmp     r0, r2\n"
        "bne     1b\n"
        "3:\n"
        "pop     {r4-r9, pc}\n");
}

/* x (depth int8) + offset into buf in natural order, zeros up to the depth rounded up to 4. */
static void widen_input_natural(const int8_t *x, int depth, int32_t offset, int16_t *buf) {
    const int k4 = depth & ~3, padded = (depth + 3) & ~3;
    widen_natural_run(x, (uint32_t *)(void *)buf, x + k4, tm_pack_offset(offset));
    for (int i = k4; i < depth; ++i) {
        buf[i] = (int16_t)(x[i] + offset);
    }
    for (int i = depth; i < padded; ++i) {
        buf[i] = 0;
    }
}

/* Whether the op's requantization takes the SMMLAR form (one multiplier M >= 0, a right shift r of 1 to 24,
 * |o 2^r| < 2^27, the clamp all of int8; the sums' bound is the compiler's), with its constants put in job. */
static int fc16_requantization(const tm_fc_params_t *p, fc16_job_t *job) {
    const int32_t m = p->out_multiplier[0], right = -p->out_shift[0], o = p->output_offset;
    if (!(p->n_multipliers == 1 && m >= 0 && right >= 1 && right <= 24 && p->act_min == -128 && p->act_max == 127 &&
          o > -(1 << (27 - right)) && o < (1 << (27 - right)))) {
        return 0;
    }
    job->multiplier = m, job->right = right;
    job->c = (int32_t)(1u << (right - 1)) + (int32_t)((uint32_t)o << right);
    return 1;
}

/* Outputs of n units from their doubled sums (bias included): the SMMLAR form (in C: a quad's or a padded
 * hextet's few units) or, for the other ops, the halved sums through fc_outputs. */
static void fc16_outputs(const tm_fc_params_t *p, const fc16_job_t *rq, int smmlar, int32_t *acc, int u0, int n,
                         int8_t *out) {
    if (smmlar) {
        for (int u = 0; u < n; ++u) {
            const int32_t c = rq->c - (int32_t)((uint32_t)acc[u] >> 31);
            const int64_t t = (int64_t)acc[u] * rq->multiplier + (int64_t)((uint64_t)(int64_t)c << 32) + 0x80000000LL;
            const int32_t v = (int32_t)(t >> 32) >> rq->right;
            out[u] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
        }
        return;
    }
    for (int u = 0; u < n; ++u) {
        acc[u] >>= 1; /* exact: the weights and the bias were doubled */
    }
    fc_outputs(p, acc, NULL, u0, n, out);
}

static void fc_widened16(const tm_fc_params_t *p, const int8_t *input, int8_t *output, int batches, int units,
                         int depth) {
    int16_t buf[FC_MAX_DEPTH] __attribute__((aligned(8)));
    int32_t acc[FC_CHUNK_SUMS];
    const int padded = (depth + 3) & ~3, bodies = padded / 4;
    const int runs = (bodies - 1) / FC16_RUN_BODIES;
    int hextets, quads;
    fc16_groups(units, &hextets, &quads);
    fc16_job_t job = {buf, NULL, bodies - runs * FC16_RUN_BODIES, runs, 0, NULL, 0, 0, 0, 0, 0, 0};
    const int smmlar = fc16_requantization(p, &job);
    /* with no quads, an odd unit count pads the last hextet: its sums go through acc, so no byte past the row */
    const int padded_hextet = (units & 1) && quads == 0;
    for (int b = 0; b < batches; ++b) {
        int8_t *out = output + b * units;
        widen_input_natural(input + b * depth, depth, p->input_offset, buf);
        job.w = p->weights16;
        for (int h0 = 0; h0 < hextets;) {
            const int store = !smmlar || (padded_hextet && h0 == hextets - 1);
            const int left = hextets - h0;
            const int n = store ? tm_min_i32(left, FC16_CHUNK_HEXTETS) : left - padded_hextet;
            const int u0 = FC16_HEXTET * h0, count = tm_min_i32(units - u0, FC16_HEXTET * n);
            job.hextets = n, job.store_sums = store;
            job.out = store ? (void *)acc : (void *)(out + u0);
            fc16_hextets(&job);
            if (store) {
                fc16_outputs(p, &job, smmlar, acc, u0, count, out + u0);
            }
            h0 += n;
        }
        if (quads > 0) {
            const int u0 = FC16_HEXTET * hextets;
            fc16_quad_job_t qjob = {buf, job.w, padded * (int32_t)sizeof(int16_t), quads, acc};
            fc16_quads(&qjob);
            fc16_outputs(p, &job, smmlar, acc, u0, tm_min_i32(units - u0, FC16_QUAD * quads), out + u0);
        }
    }
}
#endif /* TM_FC_WEIGHTS16 */

/* x (depth int8) + offset into buf: groups of 4 in SXTB16 order, the depth % 4 last in natural order. */
static void widen_input(const int8_t *x, int depth, int32_t offset, int16_t *buf) {
    const int32_t off2 = tm_pack_offset(offset);
    const int k4 = depth & ~3;
    uint32_t *dst = (uint32_t *)(void *)buf;
    for (int i = 0; i < k4; i += 4, dst += 2) {
        const uint32_t v = tm_ld32(x + i);
        dst[0] = (uint32_t)__sxtab16(off2, v);
        dst[1] = (uint32_t)tm_sxtab16_ror8(off2, v);
    }
    for (int i = k4; i < depth; ++i) {
        buf[i] = (int16_t)(x[i] + offset);
    }
}

/* Sums of units [u0, u0 + n) into acc (n <= FC_CHUNK_UNITS). */
static void fc_chunk(const int16_t *buf, const int8_t *weights, int depth, int u0, int n, int32_t *acc) {
    const int k4 = depth & ~3, quads = n / 4, rest = n % 4;
    fc_job_t job = {buf, weights + u0 * depth, depth, 2 * depth, 3 * depth, k4, 4 * depth - k4, quads, acc};
    if (quads > 0) {
        fc_quads(&job);
    }
    if (rest > 0) { /* 1-3 units: the missing ones repeat the last */
        const int last = (rest - 1) * depth;
        job.w = weights + (u0 + 4 * quads) * depth;
        job.d1 = depth < last ? depth : last, job.d2 = 2 * depth < last ? 2 * depth : last, job.d3 = last;
        job.quads = 1;
        fc_quads(&job);
    }
    for (int u = 0; u < n && k4 < depth; ++u) {
        const int8_t *w = weights + (u0 + u) * depth;
        for (int i = k4; i < depth; ++i) {
            acc[u] += buf[i] * w[i];
        }
    }
}

static void fc_widened(const tm_fc_params_t *p, const int8_t *input, const int8_t *weights, const int32_t *bias,
                       int8_t *output, int batches, int units, int depth) {
    int16_t buf[FC_MAX_DEPTH] __attribute__((aligned(8)));
    int32_t acc[FC_CHUNK_SUMS];
    for (int b = 0; b < batches; ++b) {
        widen_input(input + b * depth, depth, p->input_offset, buf);
        for (int u0 = 0; u0 < units; u0 += FC_CHUNK_UNITS) {
            const int n = units - u0 < FC_CHUNK_UNITS ? units - u0 : FC_CHUNK_UNITS;
            fc_chunk(buf, weights, depth, u0, n, acc);
            fc_outputs(p, acc, bias, u0, n, output + b * units + u0);
        }
    }
}

/*
 * int16x8: the int16 input row is only reordered into the buffer (SMLAD takes int16 as it is); sums of
 * parts of up to FC_S16_PART elements are exact in int32 (|int16 * int8| <= 2^22, 511 * 2^22 < 2^31)
 * and are added in int64, so both TFLM accumulators (64-bit, and 32-bit which wraps) are reproduced.
 */
#define FC_S16_PART 508

static void reorder_input_s16(const int16_t *x, int depth, int16_t *buf) {
    const int k4 = depth & ~3;
    uint32_t *dst = (uint32_t *)(void *)buf;
    for (int i = 0; i < k4; i += 4, dst += 2) {
        const uint32_t a = tm_ld32(x + i), b = tm_ld32(x + i + 2); /* (x0, x1), (x2, x3) */
        dst[0] = (a & 0xFFFFu) | (b << 16);                         /* (x0, x2) */
        dst[1] = (a >> 16) | (b & 0xFFFF0000u);                     /* (x1, x3) */
    }
    for (int i = k4; i < depth; ++i) {
        buf[i] = x[i];
    }
}

/* int64 sums of units [u0, u0 + n) (n <= FC_CHUNK_UNITS), part by part. */
static void fc_chunk_s16(const int16_t *buf, const int8_t *weights, int depth, int u0, int n, int64_t *sum) {
    int32_t acc[FC_CHUNK_SUMS];
    const int k4 = depth & ~3, quads = n / 4, rest = n % 4, last = (rest - 1) * depth;
    for (int u = 0; u < n; ++u) {
        sum[u] = 0;
    }
    for (int t0 = 0; t0 == 0 || t0 < k4; t0 += FC_S16_PART) {
        const int part = k4 - t0 < FC_S16_PART ? k4 - t0 : FC_S16_PART;
        fc_job_t job = {buf + t0, weights + u0 * depth + t0, depth, 2 * depth, 3 * depth, part, 4 * depth - part,
                        quads, acc};
        if (quads > 0) {
            fc_quads(&job);
        }
        if (rest > 0) {
            job.w = weights + (u0 + 4 * quads) * depth + t0;
            job.d1 = depth < last ? depth : last, job.d2 = 2 * depth < last ? 2 * depth : last, job.d3 = last;
            job.quads = 1;
            fc_quads(&job);
        }
        for (int u = 0; u < n; ++u) {
            sum[u] += acc[u];
        }
    }
    for (int u = 0; u < n && k4 < depth; ++u) {
        const int8_t *w = weights + (u0 + u) * depth;
        for (int i = k4; i < depth; ++i) {
            sum[u] += buf[i] * w[i];
        }
    }
}

static void fc_s16(const tm_fc_params_t *p, const int16_t *input, const int8_t *weights, const void *bias,
                   int16_t *output, int batches, int units, int depth) {
    int16_t buf[FC_MAX_DEPTH] __attribute__((aligned(8)));
    int64_t sum[FC_CHUNK_UNITS];
    const int per_channel = p->n_multipliers > 1;
    for (int b = 0; b < batches; ++b) {
        reorder_input_s16(input + b * depth, depth, buf);
        for (int u0 = 0; u0 < units; u0 += FC_CHUNK_UNITS) {
            const int n = units - u0 < FC_CHUNK_UNITS ? units - u0 : FC_CHUNK_UNITS;
            fc_chunk_s16(buf, weights, depth, u0, n, sum);
            for (int u = 0; u < n; ++u) {
                const int q = per_channel ? u0 + u : 0;
                int32_t v = tm_requantize_s16(sum[u], bias, p->acc64, u0 + u, p->out_multiplier[q], p->out_shift[q]);
                v = v < p->act_min ? p->act_min : v;
                output[b * units + u0 + u] = (int16_t)(v > p->act_max ? p->act_max : v);
            }
        }
    }
}

tm_status_t tm_kernel_fully_connected_dsp(const tm_model_t *model, const tm_op_t *op) {
    const tm_fc_params_t *p = (const tm_fc_params_t *)op->params;
    const tm_tensor_t *in_t = tm_in_tensor(model, op, 0);
    const tm_tensor_t *w_t = tm_in_tensor(model, op, 1);
    const tm_tensor_t *out_t = tm_out_tensor(model, op, 0);
    const int8_t *input = (const int8_t *)tm_in_data(model, op, 0);
    const int8_t *weights = (const int8_t *)tm_in_data(model, op, 1);
    const int32_t *bias = (const int32_t *)tm_in_data(model, op, 2);
    int8_t *output = (int8_t *)tm_out_data(model, op, 0);
    if (in_t && in_t->dtype == TM_INT16 && TM_KERNEL_TAKES(fully_connected, dsp, TM_INT16) &&
        out_t->dtype == TM_INT16 && w_t && w_t->dtype == TM_INT8 &&
        w_t->rank == 2 && p->filter_offset == 0 && input && weights && output && w_t->dims[1] <= FC_MAX_DEPTH) {
        fc_s16(p, (const int16_t *)(const void *)input, weights, tm_in_data(model, op, 2), (int16_t *)(void *)output,
               tm_elements(out_t) / w_t->dims[0], w_t->dims[0], w_t->dims[1]);
        return TM_OK;
    }
    if (!in_t || in_t->dtype != TM_INT8 || !TM_KERNEL_TAKES(fully_connected, dsp, TM_INT8) || p->filter_offset != 0 ||
        !input || !weights || !output || !w_t || w_t->rank != 2) {
        return tm_next_fully_connected_dsp(model, op);
    }
    const int units = w_t->dims[0], depth = w_t->dims[1];
    const int batches = tm_elements(out_t) / units;
#if TM_FC_WEIGHTS16
    if (p->weights16 && depth <= FC_MAX_DEPTH) {
        fc_widened16(p, input, output, batches, units, depth);
        return TM_OK;
    }
#endif
    if (depth <= FC_MAX_DEPTH) {
        fc_widened(p, input, weights, bias, output, batches, units, depth);
        return TM_OK;
    }
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

#endif /* TM_HAVE_DSP */
