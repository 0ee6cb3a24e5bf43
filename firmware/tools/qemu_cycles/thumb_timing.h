/*
 * thumb_timing.h - sorts Thumb/Thumb-2 (ARMv7E-M) instructions into the timing classes of the
 * Cortex-M4 instruction timing table.  Cycles are not decided here: the host applies a CPU's
 * table (boards/cpus/<cpu>.toml) to the counts; this only decides which row an instruction is.
 */
#ifndef SLINGSHOT_THUMB_TIMING_H
#define SLINGSHOT_THUMB_TIMING_H

#include <stdint.h>

/* One counter per class; X(name) keeps the enum and the names the plugin prints in step. */
#define TT_CLASSES(X)                                                                          \
    X(alu)                   /* data processing, moves, shifts, extends, bit fields, hints */ \
    X(dsp)                   /* SMLAD, SMUAD, SXTB16, SSAT16, QADD, SADD16, SMLA<x><y>, ... */ \
    X(mul)                   /* MUL, MLA, MLS, SMULL, UMULL, SMLAL, UMLAL */                   \
    X(div)                   /* SDIV, UDIV */                                                  \
    X(load)                  /* LDR, LDRB, LDRH, LDRSB, LDRSH, LDREX, STREX */                 \
    X(load_pipelined)        /* the same right after a single load it does not depend on */   \
    X(store)                 /* STR, STRB, STRH */                                             \
    X(store_pipelined)       /* the same right after a single load */                         \
    X(load_pc)               /* LDR PC, [...] */                                               \
    X(load_double)           /* LDRD */                                                        \
    X(store_double)          /* STRD */                                                        \
    X(load_multiple)         /* LDM, POP without PC */                                         \
    X(load_multiple_pc)      /* LDM, POP with PC */                                            \
    X(load_multiple_regs)    /* registers loaded by the two above */                           \
    X(store_multiple)        /* STM, PUSH */                                                   \
    X(store_multiple_regs)   /* registers stored by STM, PUSH */                               \
    X(branch)                /* B, BL, BX, BLX, MOV PC, ADD PC */                              \
    X(branch_cond_taken)     /* B<cond>, CBZ, CBNZ taken */                                    \
    X(branch_cond_not_taken) /* B<cond>, CBZ, CBNZ not taken */                                \
    X(table_branch)          /* TBB, TBH */                                                    \
    X(cond_skipped)          /* a PC write in an IT block whose condition failed */            \
    X(it)                    /* IT */                                                          \
    X(barrier)               /* DMB, DSB, ISB */                                               \
    X(fp)                    /* VADD, VSUB, VMUL, VABS, VNEG, VCVT, VCMP, VMOV, VMRS, VMSR */  \
    X(fp_mac)                /* VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS */          \
    X(fp_div)                /* VDIV, VSQRT */                                                 \
    X(fp_load)               /* VLDR */                                                        \
    X(fp_store)              /* VSTR */                                                        \
    X(fp_load_multiple)      /* VLDM, VPOP */                                                  \
    X(fp_load_multiple_regs) /* words they load */                                             \
    X(fp_store_multiple)     /* VSTM, VPUSH */                                                 \
    X(fp_store_multiple_regs) /* words they store */                                           \
    X(other)                 /* SVC, BKPT, UDF and anything not decoded */                     \
    X(address_dependency_penalty) /* not an instruction: loads/stores whose address register  \
                                     the data-processing instruction just before wrote */

#define TT_ENUM(name) TT_##name,
typedef enum { TT_CLASSES(TT_ENUM) TT_CLASS_COUNT } tt_class_t;
#undef TT_ENUM

extern const char *const tt_class_names[TT_CLASS_COUNT];

/* What the decoder remembers from the instructions before the current one. */
typedef struct {
    int8_t last_load_rt;  /* destination of the previous instruction if it was a single load, else -1 */
    uint16_t last_data_writes; /* registers the previous instruction wrote if it was data processing */
    uint8_t it_remaining; /* instructions still to come in the current IT block */
    uint8_t it_always;    /* that IT block's condition is AL */
} tt_context_t;

typedef struct {
    uint8_t cls;          /* tt_class_t of the instruction when it executes (a taken branch if conditional) */
    uint8_t regs_cls;     /* the *_regs class counting its registers, or TT_CLASS_COUNT */
    uint8_t regs;         /* registers (words for VLDM/VSTM) transferred */
    uint8_t writes_pc;    /* ends a straight-line run: any branch */
    uint8_t conditional;  /* taken or not is only known when it runs (B<cond>, CBZ/CBNZ, PC write in IT) */
    uint8_t not_taken_cls;/* class when a conditional one is not taken */
    uint8_t memory;       /* reads or writes data memory */
    uint8_t accesses;     /* data accesses per execution when known (LDM: its registers), else 0 */
    uint8_t in_it_block;  /* conditional on an IT block: it may not access memory when it runs */
    uint8_t address_stall;/* a load/store whose address the instruction before computed: one cycle more */
} tt_timing_t;

void tt_context_reset(tt_context_t *context);
/* Classify the instruction hw1[:hw2] (hw2 unused for 16-bit ones) and advance the context past it. */
tt_timing_t tt_classify(uint16_t hw1, uint16_t hw2, int is_32bit, tt_context_t *context);
int tt_is_32bit(uint16_t hw1);

#endif
