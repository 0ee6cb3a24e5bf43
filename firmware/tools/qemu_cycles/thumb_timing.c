/*
 * thumb_timing.c - Thumb/Thumb-2 instruction -> Cortex-M4 timing class.
 *
 * Encodings: ARMv7-M Architecture Reference Manual, A5.2 (16-bit) and A5.3 (32-bit).
 * Pipelining of single loads and stores: Cortex-M4 TRM 3.3.2 "Load/store timings" (a load or
 * store right after a single load whose destination is not its address register costs one
 * cycle less; nothing pipelines after a store, LDRD/STRD or LDM/STM), and from the same section:
 * a load or store whose address depends on the data-processing instruction just before it
 * stalls one cycle ("there is no forwarding path").
 */
#include "thumb_timing.h"

#define TT_NAME(name) #name,
const char *const tt_class_names[TT_CLASS_COUNT] = {TT_CLASSES(TT_NAME)};
#undef TT_NAME

enum { PC = 15, SP = 13, NO_REG = -1 };
enum access_kind { ACCESS_NONE, ACCESS_LOAD, ACCESS_STORE };

/* A decoded instruction before the context (pipelining, IT block) is applied. */
typedef struct {
    tt_timing_t timing;
    enum access_kind single; /* a single load/store that takes part in pipelining */
    int rt, rn, rm;          /* its data and address registers */
    int cond_branch;         /* B<cond> or CBZ/CBNZ */
    int it_mask;             /* IT: firstcond:mask (low 8 bits of the instruction) */
} decoded_t;

static decoded_t of_class(tt_class_t cls) {
    decoded_t d = {0};
    d.timing.cls = (uint8_t)cls;
    d.timing.regs_cls = TT_CLASS_COUNT;
    d.rt = d.rn = d.rm = NO_REG;
    return d;
}

static decoded_t single_access(enum access_kind kind, int rt, int rn, int rm) {
    decoded_t d = of_class(kind == ACCESS_LOAD ? TT_load : TT_store);
    d.single = kind;
    d.rt = rt;
    d.rn = rn;
    d.rm = rm;
    d.timing.memory = 1;
    d.timing.accesses = 1;
    if (kind == ACCESS_LOAD && rt == PC) { /* a load to PC is a branch and never pipelines */
        d.timing.cls = TT_load_pc;
        d.timing.writes_pc = 1;
        d.single = ACCESS_NONE;
    }
    return d;
}

static decoded_t multiple(int is_load, int regs, int includes_pc, int rn) {
    decoded_t d = of_class(is_load ? (includes_pc ? TT_load_multiple_pc : TT_load_multiple) : TT_store_multiple);
    d.rn = rn;
    d.timing.regs_cls = is_load ? TT_load_multiple_regs : TT_store_multiple_regs;
    d.timing.regs = (uint8_t)regs;
    d.timing.memory = 1;
    d.timing.accesses = (uint8_t)regs;
    d.timing.writes_pc = (uint8_t)(is_load && includes_pc);
    return d;
}

static decoded_t branch(tt_class_t cls) {
    decoded_t d = of_class(cls);
    d.timing.writes_pc = 1;
    return d;
}

static decoded_t conditional_branch(void) {
    decoded_t d = branch(TT_branch_cond_taken);
    d.cond_branch = 1;
    return d;
}

static int popcount16(unsigned value) {
    int n = 0;
    for (value &= 0xFFFFu; value; value &= value - 1u) {
        ++n;
    }
    return n;
}

/* ---- 16-bit encodings (A5.2) -------------------------------------------- */

static decoded_t decode_special_data_16(uint16_t hw) {
    const int op = (hw >> 8) & 3;
    const int rd = ((hw >> 4) & 8) | (hw & 7);
    if (op == 3) {
        return branch(TT_branch); /* BX, BLX */
    }
    if (op != 1 && rd == PC) {
        return branch(TT_branch); /* ADD PC, Rm / MOV PC, Rm */
    }
    return of_class(TT_alu);
}

static decoded_t decode_load_store_16(uint16_t hw) {
    const int low_rt = hw & 7, low_rn = (hw >> 3) & 7;
    switch (hw >> 12) {
    case 0x4: /* LDR (literal) */
        return single_access(ACCESS_LOAD, (hw >> 8) & 7, PC, NO_REG);
    case 0x5: { /* register offset: STR STRH STRB LDRSB LDR LDRH LDRB LDRSH */
        const int op = (hw >> 9) & 7;
        return single_access(op >= 3 ? ACCESS_LOAD : ACCESS_STORE, low_rt, low_rn, (hw >> 6) & 7);
    }
    case 0x6: case 0x7: case 0x8: /* word, byte, halfword with immediate offset */
        return single_access((hw & 0x0800) ? ACCESS_LOAD : ACCESS_STORE, low_rt, low_rn, NO_REG);
    default: /* 0x9: SP-relative */
        return single_access((hw & 0x0800) ? ACCESS_LOAD : ACCESS_STORE, (hw >> 8) & 7, SP, NO_REG);
    }
}

static decoded_t decode_misc_16(uint16_t hw) {
    if ((hw & 0xF500) == 0xB100) {
        return conditional_branch(); /* CBZ, CBNZ */
    }
    if ((hw & 0xFE00) == 0xB400) { /* PUSH {..., LR} */
        return multiple(0, popcount16(hw & 0xFF) + ((hw >> 8) & 1), 0, SP);
    }
    if ((hw & 0xFE00) == 0xBC00) { /* POP {..., PC} */
        return multiple(1, popcount16(hw & 0xFF) + ((hw >> 8) & 1), (hw >> 8) & 1, SP);
    }
    if ((hw & 0xFF00) == 0xBF00) {
        if (hw & 0xF) {
            decoded_t d = of_class(TT_it);
            d.it_mask = hw & 0xFF;
            return d;
        }
        return of_class(TT_alu); /* NOP, YIELD, WFE, WFI, SEV */
    }
    if ((hw & 0xFF00) == 0xBE00) {
        return of_class(TT_other); /* BKPT */
    }
    return of_class(TT_alu); /* ADD/SUB SP, SXTH/SXTB/UXTH/UXTB, REV*, CPS */
}

static decoded_t decode_16(uint16_t hw) {
    switch (hw >> 12) {
    case 0x0: case 0x1: case 0x2: case 0x3: /* shift, add, subtract, move, compare */
        return of_class(TT_alu);
    case 0x4:
        if ((hw & 0xFC00) == 0x4000) { /* data processing; MUL is opcode 1101 */
            return of_class(((hw >> 6) & 0xF) == 0xD ? TT_mul : TT_alu);
        }
        if ((hw & 0xFC00) == 0x4400) {
            return decode_special_data_16(hw);
        }
        return decode_load_store_16(hw);
    case 0x5: case 0x6: case 0x7: case 0x8: case 0x9:
        return decode_load_store_16(hw);
    case 0xA: /* ADR, ADD SP */
        return of_class(TT_alu);
    case 0xB:
        return decode_misc_16(hw);
    case 0xC: /* STM, LDM */
        return multiple((hw >> 11) & 1, popcount16(hw & 0xFF), 0, (hw >> 8) & 7);
    case 0xD: { /* B<cond>; cond 1110 is UDF, 1111 SVC */
        const int cond = (hw >> 8) & 0xF;
        return cond >= 0xE ? of_class(TT_other) : conditional_branch();
    }
    default: /* 0xE: B */
        return branch(TT_branch);
    }
}

/* ---- 32-bit encodings (A5.3) -------------------------------------------- */

static decoded_t decode_load_store_multiple_32(uint16_t hw1, uint16_t hw2) {
    const int op = (hw1 >> 7) & 3;
    if (op == 0 || op == 3) {
        return of_class(TT_other); /* SRS, RFE: not in ARMv7-M */
    }
    return multiple((hw1 >> 4) & 1, popcount16(hw2), (hw1 & 0x0010) && (hw2 & 0x8000), hw1 & 0xF);
}

static decoded_t decode_dual_exclusive_table_32(uint16_t hw1, uint16_t hw2) {
    const int op1 = (hw1 >> 7) & 3, op2 = (hw1 >> 4) & 3, rn = hw1 & 0xF;
    if (op1 >= 2 || op2 >= 2) { /* LDRD, STRD: two words, never pipelined with neighbours */
        decoded_t d = of_class((hw1 & 0x0010) ? TT_load_double : TT_store_double);
        d.timing.memory = 1;
        d.timing.accesses = 2;
        d.rn = rn;
        return d;
    }
    if (op1 == 0) { /* STREX (pipelines like a load, TRM 3.3.2), LDREX */
        return op2 == 0 ? single_access(ACCESS_LOAD, (hw2 >> 8) & 0xF, rn, NO_REG)
                        : single_access(ACCESS_LOAD, hw2 >> 12, rn, NO_REG);
    }
    const int op3 = (hw2 >> 4) & 0xF;
    if (op2 == 1 && (op3 == 0 || op3 == 1)) { /* TBB, TBH */
        decoded_t d = branch(TT_table_branch);
        d.timing.memory = 1;
        d.timing.accesses = 1;
        d.rn = rn;
        d.rm = hw2 & 0xF;
        return d;
    }
    return op2 == 0 ? single_access(ACCESS_LOAD, hw2 & 0xF, rn, NO_REG)   /* STREXB, STREXH */
                    : single_access(ACCESS_LOAD, hw2 >> 12, rn, NO_REG); /* LDREXB, LDREXH */
}

static decoded_t decode_branch_misc_32(uint16_t hw1, uint16_t hw2) {
    const int op1 = (hw2 >> 12) & 7;
    if ((op1 & 5) == 1) {
        return branch(TT_branch); /* B.W */
    }
    if ((op1 & 5) == 5) {
        return branch(TT_branch); /* BL */
    }
    if ((op1 & 5) == 4) {
        return of_class(TT_other); /* BLX (immediate): not in ARMv7-M */
    }
    if (((hw1 >> 7) & 7) != 7) {
        return conditional_branch(); /* B<cond>.W */
    }
    const int op = (hw1 >> 4) & 0x7F;
    if (op == 0x3B) { /* misc control: CLREX, DSB, DMB, ISB */
        const int option = (hw2 >> 4) & 0xF;
        return of_class(option >= 4 && option <= 6 ? TT_barrier : TT_alu);
    }
    if (op == 0x7F && op1 == 2) {
        return of_class(TT_other); /* UDF.W */
    }
    return of_class(TT_alu); /* MSR, MRS, hints */
}

static decoded_t decode_data_immediate_32(uint16_t hw1, uint16_t hw2) {
    const int plain_binary = (hw1 & 0x0200) != 0;
    const int op = (hw1 >> 4) & 0x1F;
    const int saturate = op == 0x12 || op == 0x1A; /* SSAT, USAT, and their 16-bit-lane forms */
    if (plain_binary && saturate && (hw2 & 0x70C0) == 0) {
        return of_class(TT_dsp); /* SSAT16, USAT16 */
    }
    return of_class(TT_alu);
}

static decoded_t decode_load_store_single_32(uint16_t hw1, uint16_t hw2) {
    const int is_load = (hw1 & 0x0010) != 0, size = (hw1 >> 5) & 3, rn = hw1 & 0xF, rt = hw2 >> 12;
    const int register_offset = !(hw1 & 0x0080) && rn != PC && (hw2 & 0x0FC0) == 0;
    const int rm = register_offset ? (hw2 & 0xF) : NO_REG;
    if (size == 3) {
        return of_class(TT_other);
    }
    if (is_load && rt == PC && size != 2) {
        return of_class(TT_alu); /* PLD, PLI: hints, no data access */
    }
    return single_access(is_load ? ACCESS_LOAD : ACCESS_STORE, rt, rn, rm);
}

static decoded_t decode_data_register_32(uint16_t hw1, uint16_t hw2) {
    const int op1 = (hw1 >> 4) & 0xF, op2 = (hw2 >> 4) & 0xF;
    if (op1 < 8) {
        if (op2 == 0) {
            return of_class(TT_alu); /* LSL, LSR, ASR, ROR (register) */
        }
        return of_class(op1 == 2 || op1 == 3 ? TT_dsp : TT_alu); /* SXTB16/UXTB16 (+A) are DSP */
    }
    if ((op2 & 0xC) != 8) {
        return of_class(TT_dsp); /* parallel add/subtract */
    }
    return of_class((op1 & 3) == 0 || (op1 & 3) == 2 ? TT_dsp : TT_alu); /* QADD.., SEL | REV.., CLZ */
}

static decoded_t decode_multiply_32(uint16_t hw1) {
    return of_class(((hw1 >> 4) & 7) == 0 ? TT_mul : TT_dsp); /* MUL, MLA, MLS | SMLAD, SMULBB, ... */
}

static decoded_t decode_long_multiply_divide_32(uint16_t hw2) {
    const int op2 = (hw2 >> 4) & 0xF;
    if (op2 == 0xF) {
        return of_class(TT_div);
    }
    return of_class(op2 == 0 ? TT_mul : TT_dsp); /* SMULL.. UMLAL | SMLALxy, SMLALD, SMLSLD, UMAAL */
}

static decoded_t decode_fp_data_32(uint16_t hw1, uint16_t hw2) {
    switch (hw1 & 0xB0) {
    case 0x00: case 0x10: case 0x90: case 0xA0:
        return of_class(TT_fp_mac); /* VMLA, VMLS, VNMLA, VNMLS, VFNMA, VFNMS, VFMA, VFMS */
    case 0x80:
        return of_class(TT_fp_div); /* VDIV */
    case 0xB0:
        if ((hw1 & 0xF) == 1 && ((hw2 >> 6) & 3) == 3) {
            return of_class(TT_fp_div); /* VSQRT */
        }
        return of_class(TT_fp);
    default:
        return of_class(TT_fp); /* VMUL, VNMUL, VADD, VSUB */
    }
}

static decoded_t decode_coprocessor_32(uint16_t hw1, uint16_t hw2) {
    if (((hw2 >> 9) & 7) != 5) {
        return of_class(TT_other); /* only coprocessors 10 and 11 (the FPU) exist */
    }
    if ((hw1 & 0x0E00) == 0x0C00) { /* extension register load/store, 64-bit transfers */
        if ((hw1 & 0x01E0) == 0x0040) {
            return of_class(TT_fp); /* VMOV between two core registers and S/D registers */
        }
        const int is_load = (hw1 & 0x0010) != 0;
        decoded_t d;
        if ((hw1 & 0x0120) == 0x0100) { /* P = 1, W = 0: VLDR, VSTR */
            d = of_class(is_load ? TT_fp_load : TT_fp_store);
        } else {
            d = of_class(is_load ? TT_fp_load_multiple : TT_fp_store_multiple);
            d.timing.regs_cls = is_load ? TT_fp_load_multiple_regs : TT_fp_store_multiple_regs;
            d.timing.regs = (uint8_t)(hw2 & 0xFF);
        }
        d.timing.memory = 1;
        return d;
    }
    if ((hw1 & 0x0F00) == 0x0E00) {
        return (hw2 & 0x0010) ? of_class(TT_fp) : decode_fp_data_32(hw1, hw2); /* VMOV/VMRS/VMSR | data */
    }
    return of_class(TT_other);
}

static decoded_t decode_32(uint16_t hw1, uint16_t hw2) {
    if ((hw1 & 0xEC00) == 0xEC00) {
        return decode_coprocessor_32(hw1, hw2);
    }
    if ((hw1 & 0xFE40) == 0xE800) {
        return decode_load_store_multiple_32(hw1, hw2);
    }
    if ((hw1 & 0xFE40) == 0xE840) {
        return decode_dual_exclusive_table_32(hw1, hw2);
    }
    if ((hw1 & 0xFE00) == 0xEA00) {
        return of_class(TT_alu); /* data processing, shifted register */
    }
    if ((hw1 & 0xF800) == 0xF000) {
        return (hw2 & 0x8000) ? decode_branch_misc_32(hw1, hw2) : decode_data_immediate_32(hw1, hw2);
    }
    if ((hw1 & 0xFE00) == 0xF800) {
        return decode_load_store_single_32(hw1, hw2);
    }
    if ((hw1 & 0xFF00) == 0xFA00) {
        return decode_data_register_32(hw1, hw2);
    }
    if ((hw1 & 0xFF80) == 0xFB00) {
        return decode_multiply_32(hw1);
    }
    if ((hw1 & 0xFF80) == 0xFB80) {
        return decode_long_multiply_divide_32(hw2);
    }
    return of_class(TT_other);
}

/* ---- registers data-processing instructions write --------------------------- */

static uint16_t reg_bit(int reg) { return reg == PC ? 0 : (uint16_t)(1u << reg); } /* PC: a branch */

static uint16_t data_writes_16(uint16_t hw) {
    const int top5 = hw >> 11;
    if (top5 <= 0x03 || top5 == 0x04 || top5 == 0x06 || top5 == 0x07) {
        return top5 <= 0x03 ? reg_bit(hw & 7) : reg_bit((hw >> 8) & 7); /* shifts, ADD/SUB, MOV/ADD/SUB #imm8 */
    }
    if ((hw & 0xFC00) == 0x4000) { /* data processing; TST, CMP, CMN write no register */
        const int opcode = (hw >> 6) & 0xF;
        return opcode == 0x8 || opcode == 0xA || opcode == 0xB ? 0 : reg_bit(hw & 7);
    }
    if ((hw & 0xFC00) == 0x4400) { /* ADD, MOV (high registers); CMP writes none */
        return ((hw >> 8) & 3) == 1 ? 0 : reg_bit(((hw >> 4) & 8) | (hw & 7));
    }
    if (top5 == 0x14 || top5 == 0x15) {
        return reg_bit((hw >> 8) & 7); /* ADR, ADD Rd, SP, #imm */
    }
    if ((hw & 0xFF00) == 0xB000) {
        return reg_bit(SP); /* ADD/SUB SP, SP, #imm */
    }
    if ((hw & 0xFF00) == 0xB200 || (hw & 0xFF00) == 0xBA00) {
        return reg_bit(hw & 7); /* SXTH, SXTB, UXTH, UXTB, REV, REV16, REVSH */
    }
    return 0;
}

static uint16_t data_writes_32(uint16_t hw1, uint16_t hw2) {
    const int rd = (hw2 >> 8) & 0xF;
    if ((hw1 & 0xFE00) == 0xEA00 || ((hw1 & 0xF800) == 0xF000 && !(hw2 & 0x8000))) {
        return reg_bit(rd); /* Rd = 15 is TST, TEQ, CMP, CMN: no register */
    }
    if ((hw1 & 0xFFE0) == 0xF3E0 && (hw2 & 0x8000)) {
        return reg_bit(rd); /* MRS */
    }
    if ((hw1 & 0xFF00) == 0xFA00 || (hw1 & 0xFF80) == 0xFB00) {
        return reg_bit(rd);
    }
    if ((hw1 & 0xFF80) == 0xFB80) { /* SDIV, UDIV: Rd; long multiplies: RdLo and RdHi */
        return ((hw2 >> 4) & 0xF) == 0xF ? reg_bit(rd) : (uint16_t)(reg_bit(rd) | reg_bit(hw2 >> 12));
    }
    return 0;
}

static int is_data_processing(uint8_t cls) {
    return cls == TT_alu || cls == TT_dsp || cls == TT_mul || cls == TT_div;
}

/* ---- context: pipelining, address dependencies and IT blocks --------------- */

int tt_is_32bit(uint16_t hw1) { return (hw1 >> 11) >= 0x1D; }

void tt_context_reset(tt_context_t *context) {
    context->last_load_rt = NO_REG;
    context->last_data_writes = 0;
    context->it_remaining = 0;
    context->it_always = 0;
}

static int it_block_length(int mask) {
    int length = 4;
    for (int low = mask & 0xF; !(low & 1); low >>= 1) {
        --length;
    }
    return length;
}

static void apply_pipelining(decoded_t *d, const tt_context_t *context) {
    const int after_load = context->last_load_rt != NO_REG;
    if (d->single == ACCESS_NONE || !after_load) {
        return;
    }
    if (context->last_load_rt == d->rn || context->last_load_rt == d->rm) {
        return; /* the address needs the value just loaded */
    }
    d->timing.cls = d->single == ACCESS_LOAD ? TT_load_pipelined : TT_store_pipelined;
}

static int uses(int reg, uint16_t registers) { return reg != NO_REG && (registers & reg_bit(reg)); }

static void apply_address_dependency(decoded_t *d, const tt_context_t *context) {
    if (d->timing.memory && (uses(d->rn, context->last_data_writes) || uses(d->rm, context->last_data_writes))) {
        d->timing.address_stall = 1;
    }
}

static void apply_condition(decoded_t *d, const tt_context_t *context) {
    const int in_it_block = context->it_remaining > 0 && !context->it_always;
    d->timing.in_it_block = (uint8_t)in_it_block;
    if (d->cond_branch) {
        d->timing.conditional = 1;
        d->timing.not_taken_cls = TT_branch_cond_not_taken;
    } else if (in_it_block && d->timing.writes_pc) {
        d->timing.conditional = 1;
        d->timing.not_taken_cls = TT_cond_skipped;
    }
}

tt_timing_t tt_classify(uint16_t hw1, uint16_t hw2, int is_32bit, tt_context_t *context) {
    decoded_t d = is_32bit ? decode_32(hw1, hw2) : decode_16(hw1);
    apply_pipelining(&d, context);
    apply_address_dependency(&d, context);
    apply_condition(&d, context);
    if (context->it_remaining > 0) {
        --context->it_remaining;
    }
    if (d.it_mask) {
        context->it_remaining = (uint8_t)it_block_length(d.it_mask);
        context->it_always = (uint8_t)((d.it_mask >> 4) == 0xE);
    }
    context->last_load_rt = (int8_t)(d.single == ACCESS_LOAD ? d.rt : NO_REG);
    context->last_data_writes = 0;
    if (is_data_processing(d.timing.cls)) {
        context->last_data_writes = is_32bit ? data_writes_32(hw1, hw2) : data_writes_16(hw1);
    }
    return d.timing;
}
