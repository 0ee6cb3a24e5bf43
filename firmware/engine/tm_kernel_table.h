/*
 * tm_kernel_table.h - the one place that decides which kernel runs each op (docs/engine.md,
 * "Adding an op" and "Adding an optimized kernel").
 *
 * As in TFLite Micro, every op has one registration: the engine's op table calls
 * tm_kernel_<name>(model, op), the portable kernel of ops/<name>.c, unless an optimized
 * folder ops_<feature>/ provides tm_kernel_<name>_<feature> with the same signature and the
 * build has that feature.  Each row below names the op, the signature of its kernels'
 * scratch-size functions (tm_<name>_<feature>_scratch_bytes, defined by the kernels that hold
 * buffers; the compiler computes the same, host/compiler/scratch.py) and, per feature, the types
 * of op (the type of input 0) its optimized kernel takes; 0 = no kernel.  A build runs the kernel of
 * the most specific feature it has whose column is not 0 (MVE, then DSP, then FPU), else the
 * portable one.  An optimized kernel hands every op it does not take (another type, a shape it
 * does not cover) to tm_next_<name>_<feature>(model, op): the next kernel down this same row.
 *
 * The features come from the compiler's own target macros (-mcpu, "+nodsp" / "+nomve"), so the
 * build adds no flag and names no board; -DTM_KERNELS_PORTABLE=1 (TM_KERNELS=portable in the
 * environment of host/engine/build.py) builds the portable kernels only, for comparisons.
 * host/compiler/kernel_table.py reads the table for the compiler's scratch sizes.
 */
#ifndef TM_KERNEL_TABLE_H
#define TM_KERNEL_TABLE_H

#include "tm_engine.h"

#if !defined(TM_KERNELS_PORTABLE) && defined(__ARM_FEATURE_MVE)
#define TM_HAVE_MVE 1 /* Helium: ops_mve/ (Cortex-M55, M85) */
#else
#define TM_HAVE_MVE 0
#endif
#if !defined(TM_KERNELS_PORTABLE) && defined(__ARM_FEATURE_DSP)
#define TM_HAVE_DSP 1 /* the DSP extension: ops_dsp/ (Cortex-M4, M7, M33, M35P, M55, M85) */
#else
#define TM_HAVE_DSP 0
#endif
#if !defined(TM_KERNELS_PORTABLE) && defined(__ARM_FP) && (__ARM_FP & 4)
#define TM_HAVE_FPU 1 /* a single-precision FPU: ops_fpu/ */
#else
#define TM_HAVE_FPU 0
#endif

/* FULLY_CONNECTED int8 weights pre-widened to int16 by the compiler (twice their flash) for the DSP
 * kernel; the build sets it to 0 where the copy would not fit the board's memory (host/engine/build.py). */
#ifndef TM_FC_WEIGHTS16
#define TM_FC_WEIGHTS16 (TM_HAVE_DSP && !TM_HAVE_MVE)
#endif
/* The same for CONV_2D's wide path (ops_dsp/conv_2d_wide.c). */
#ifndef TM_CONV_WEIGHTS16
#define TM_CONV_WEIGHTS16 (TM_HAVE_DSP && !TM_HAVE_MVE)
#endif
/* CONV_2D 3x3 stride-1 filters transformed for the DSP kernel's Winograd paths (ops_dsp/conv_2d_winograd.c,
 * conv_2d_winograd16.c); a build whose model holds none sets the macro to 0, leaving the path's code out
 * (host/engine/build.py, DATA_ONLY_PATHS). */
#ifndef TM_CONV_WINOGRAD
#define TM_CONV_WINOGRAD (TM_HAVE_DSP && !TM_HAVE_MVE)
#endif
#ifndef TM_CONV_WINOGRAD16 /* int16x8's (ops_dsp/conv_2d_winograd16.c) */
#define TM_CONV_WINOGRAD16 (TM_HAVE_DSP && !TM_HAVE_MVE)
#endif
/* The requantization words of the DSP kernels' register-blocked paths, per channel (tm_dsp_wide_rq). */
#ifndef TM_CONV_WIDE_RQ
#define TM_CONV_WIDE_RQ (TM_HAVE_DSP && !TM_HAVE_MVE)
#endif

/* Types of op a kernel takes (bits of tm_dtype_t, of input 0). */
#define TM_I8 (1u << TM_INT8)
#define TM_I16 (1u << TM_INT16)
#define TM_F32 (1u << TM_FLOAT32)

/* Scratch-size signatures by op family (the dims structs are tm_kernels.h's, which expands the rows). */
#define TM_SCRATCH_CONV const tm_conv_params_t *p, const tm_conv_dims_t *d, uint8_t dtype
#define TM_SCRATCH_FC const tm_fc_params_t *p, const tm_fc_dims_t *d, uint8_t dtype
#define TM_SCRATCH_ELEMENTWISE const tm_shape_t *in1, const tm_shape_t *in2, const tm_shape_t *out, uint8_t dtype
#define TM_SCRATCH_NONE void

/* clang-format off */
/*  op (TM_OP_*)          name                 scratch signature       MVE      DSP             FPU */
#define TM_KERNEL_TABLE(X)                                                                                      \
    X(CONV_2D,            conv_2d,             TM_SCRATCH_CONV,        TM_I8 | TM_I16, TM_I8 | TM_I16, 0)              \
    X(DEPTHWISE_CONV_2D,  depthwise_conv_2d,   TM_SCRATCH_CONV,        TM_I8,   TM_I8,          0)              \
    X(FULLY_CONNECTED,    fully_connected,     TM_SCRATCH_FC,          TM_I8,   TM_I8 | TM_I16, 0)              \
    X(MAX_POOL_2D,        max_pool_2d,         TM_SCRATCH_NONE,        TM_I8,   TM_I8,          0)              \
    X(AVERAGE_POOL_2D,    average_pool_2d,     TM_SCRATCH_NONE,        TM_I8,   TM_I8,          0)              \
    X(RESHAPE,            reshape,             TM_SCRATCH_NONE,        0,       0,              0)              \
    X(SOFTMAX,            softmax,             TM_SCRATCH_NONE,        0,       0,              0)              \
    X(ADD,                add,                 TM_SCRATCH_ELEMENTWISE, TM_I8 | TM_I16, TM_I8 | TM_I16, 0)              \
    X(QUANTIZE,           quantize,            TM_SCRATCH_NONE,        0,       0,              TM_F32)         \
    X(DEQUANTIZE,         dequantize,          TM_SCRATCH_NONE,        0,       0,              TM_I8 | TM_I16) \
    X(MUL,                mul,                 TM_SCRATCH_NONE,        0,       0,              0)              \
    X(PAD,                pad,                 TM_SCRATCH_NONE,        0,       0,              0)              \
    X(LOGISTIC,           logistic,            TM_SCRATCH_NONE,        0,       0,              0)              \
    X(MEAN,               mean,                TM_SCRATCH_NONE,        0,       0,              0)              \
    X(CONCATENATION,      concatenation,       TM_SCRATCH_NONE,        0,       0,              0)
/* clang-format on */

/* ---- what the table generates (nothing below names an op) ---------------------------------- */

typedef tm_status_t (*tm_kernel_fn)(const tm_model_t *model, const tm_op_t *op);

/* Does the <feature> kernel of row <name> take an op of type `dtype` (a tm_dtype_t)?  The column is an
 * enum constant, so this folds in the compiler's front end into the one or two comparisons a
 * hand-written test would make (a constant `dtype` folds to 0 or 1), and the kernels compile to the
 * code they had before the table. */
#define TM_KERNEL_TAKES(name, feature, dtype) TM_TAKES(tm_types_##name##_##feature, dtype)
#define TM_TAKES(types, dtype)                                                                   \
    ((((types) & TM_I8) && (dtype) == TM_INT8) || (((types) & TM_I16) && (dtype) == TM_INT16) || \
     (((types) & TM_F32) && (dtype) == TM_FLOAT32))

/* The kernel a build runs for a row, and the one below each feature's (constant conditions: the
 * kernels of absent features are never referenced, only declared). */
#define TM_PICK_FROM_FPU(name, fpu) ((TM_HAVE_FPU && (fpu)) ? tm_kernel_##name##_fpu : tm_kernel_##name)
#define TM_PICK_FROM_DSP(name, dsp, fpu) \
    ((TM_HAVE_DSP && (dsp)) ? tm_kernel_##name##_dsp : TM_PICK_FROM_FPU(name, fpu))
#define TM_PICK_FROM_MVE(name, mve, dsp, fpu) \
    ((TM_HAVE_MVE && (mve)) ? tm_kernel_##name##_mve : TM_PICK_FROM_DSP(name, dsp, fpu))
#define TM_SELECTED_KERNEL(name, mve, dsp, fpu) TM_PICK_FROM_MVE(name, mve, dsp, fpu)

/* Per row: the portable and optimized kernels' prototypes, their scratch sizes' prototypes
 * (defined by the kernels that hold scratch), and for each feature the column tm_types_<name>_<feature>
 * (for TM_KERNEL_TAKES) and tm_next_<name>_<feature>(model, op). */
#define TM_DECLARE_ROW(KIND, name, scratch, mve, dsp, fpu)                                                \
    tm_status_t tm_kernel_##name(const tm_model_t *model, const tm_op_t *op);                             \
    tm_status_t tm_kernel_##name##_mve(const tm_model_t *model, const tm_op_t *op);                       \
    tm_status_t tm_kernel_##name##_dsp(const tm_model_t *model, const tm_op_t *op);                       \
    tm_status_t tm_kernel_##name##_fpu(const tm_model_t *model, const tm_op_t *op);                       \
    int32_t tm_##name##_mve_scratch_bytes(scratch);                                                       \
    int32_t tm_##name##_dsp_scratch_bytes(scratch);                                                       \
    int32_t tm_##name##_fpu_scratch_bytes(scratch);                                                       \
    enum { tm_types_##name##_mve = (mve), tm_types_##name##_dsp = (dsp), tm_types_##name##_fpu = (fpu) }; \
    static inline tm_status_t tm_next_##name##_mve(const tm_model_t *model, const tm_op_t *op) {          \
        return TM_PICK_FROM_DSP(name, dsp, fpu)(model, op);                                               \
    }                                                                                                     \
    static inline tm_status_t tm_next_##name##_dsp(const tm_model_t *model, const tm_op_t *op) {          \
        return TM_PICK_FROM_FPU(name, fpu)(model, op);                                                    \
    }                                                                                                     \
    static inline tm_status_t tm_next_##name##_fpu(const tm_model_t *model, const tm_op_t *op) {          \
        return tm_kernel_##name(model, op);                                                               \
    }

#endif /* TM_KERNEL_TABLE_H */
