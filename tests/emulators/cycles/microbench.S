/* microbench.S - micro-benchmarks whose Cortex-M4 cycles are counted by hand from the TRM
 * (Table 3-1 and 3.3.2 "Load/store timings"); tests/emulators/test_cycles.py runs them under QEMU with
 * the cycle plugin and compares.  A window is the call of one bench_* function: the BL
 * (1+P), the body and the return.  Every hand count is written as constant + k*P beside the
 * code and repeated in the test.  Only bench_address_dependency computes an address register
 * right before the load or store that uses it (a one-cycle stall, TRM 3.3.2). */
    .syntax unified
    .cpu cortex-m4
    .thumb

    .section .vectors, "a"
    .word 0x20010000                /* initial SP */
    .word reset                     /* reset handler (Thumb: bit 0 set by .thumb_func) */

    .text
    .thumb_func
    .global reset
reset:
    bl      run_all                 /* the plugin watches every data access of this pass */
    bl      run_all                 /* and counts the accesses it learned inline in this one */
done:
    wfi
    b       done

    .thumb_func
run_all:
    push    {r4-r11, lr}
    ldr     r0, =data
    ldr     r1, =flash_word
    str     r1, [r0, #24]           /* data[6]: a pointer into flash for bench_load_run */
    bl      bench_load_run
    ldr     r0, =data
    bl      bench_smlad_loop
    bl      bench_taken_loop
    bl      bench_branch_kinds
    ldr     r0, =data
    bl      bench_load_multiple
    bl      bench_divide
    bl      bench_multiply_it
    ldr     r0, =data
    bl      bench_unaligned
    ldr     r0, =data
    bl      bench_page_edge
    ldr     r0, =data
    bl      bench_address_dependency
    pop     {r4-r11, pc}

/* 14 + 2P: BL 1+P, 2 (first load) + 1 + 1 + 1 (pipelined loads) + 1 (store after a load)
 * + 2 (store after a store) + 2 (load after a store) + 2 (load whose address was just
 * loaded), BX 1+P.  Data: 5 reads and 2 writes in RAM, 1 read in flash. */
    .thumb_func
bench_load_run:
    ldr     r1, [r0]
    ldr     r2, [r0, #4]
    ldrb    r3, [r0, #8]
    ldrh.w  r12, [r0, #12]
    str     r1, [r0, #16]
    str     r2, [r0, #20]
    ldr     r1, [r0, #24]
    ldr     r2, [r1]
    bx      lr

/* 403 + 51P: BL 1+P, MOVS 1, 50 x (LDR 2 + LDR 1 + SMLAD 1 + SMLAD 1 + SXTB16 1 + SUBS 1),
 * BNE taken 49 x (1+P) and not taken 1, BX 1+P. */
    .thumb_func
bench_smlad_loop:
    movs    r3, #50
1:  ldr     r1, [r0]
    ldr     r2, [r0, #4]
    smlad   r4, r1, r2, r4
    smlad   r5, r2, r1, r5
    sxtb16  r6, r1
    subs    r3, #1
    bne     1b
    bx      lr

/* 203 + 101P: BL 1+P, MOVS 1, 100 x SUBS 1, BNE 99 x (1+P) + 1, BX 1+P. */
    .thumb_func
bench_taken_loop:
    movs    r3, #100
1:  subs    r3, #1
    bne     1b
    bx      lr

/* 6 + 4P: BL 1+P, MOVS 1, CBZ taken 1+P, CBNZ not taken 1, B.W 1+P, BX 1+P. */
    .thumb_func
bench_branch_kinds:
    movs    r1, #0
    cbz     r1, 1f
    nop
1:  cbnz    r1, 2f
    b.w     2f
    nop
2:  bx      lr

/* 32 + 2P: BL 1+P, PUSH {r4-r7, lr} 1+5, LDM 7 registers 1+7, LDRD 3, STRD 3,
 * STM 4 registers 1+4, POP {r4-r7, pc} 1+5+P. */
    .thumb_func
bench_load_multiple:
    push    {r4-r7, lr}
    ldm     r0, {r1-r7}
    ldrd    r2, r3, [r0, #8]
    strd    r2, r3, [r0, #32]
    stm     r0, {r2-r5}
    pop     {r4-r7, pc}

/* 4 + 2P + 3 x (2..12): BL 1+P, MOVS 1, MOV.W 1, UDIV, SDIV, UDIV, BX 1+P. */
    .thumb_func
bench_divide:
    movs    r1, #7
    mov.w   r2, #1000
    udiv    r3, r2, r1
    sdiv    r3, r2, r1
    udiv    r3, r1, r2
    bx      lr

/* 17 + 4P: BL 1+P, MOVS 1, MULS 1, MLA 1, SMULL 1, SMLAL 1, CMP 1, ITE 1, MOVEQ 1, MOVNE 1,
 * TBB 2+P, ADR 1, NOP 1, LDR PC 2+P, BX 1+P.  Data: 2 reads in flash (the table, the word). */
    .thumb_func
bench_multiply_it:
    movs    r6, #1
    muls    r1, r2, r1
    mla     r3, r1, r2, r3
    smull   r4, r5, r1, r2
    smlal   r4, r5, r1, r2
    cmp     r1, r2
    ite     eq
    moveq   r3, #1
    movne   r3, #2
    tbb     [pc, r6]
table:
    .byte   0, (3f - table) / 2
    nop                             /* case 0: not taken */
3:  adr     r2, target
    nop                             /* keeps the LDR's address register one instruction old */
    ldr     pc, [r2]
    .align  2
target:
    .word   4f + 1
4:  bx      lr

/* 10 + 2P: BL 1+P, LDR byte-aligned word 2 + 2, LDRH byte-aligned halfword 1 + 1
 * (pipelined), LDR halfword-aligned word 1 + 1 (pipelined), BX 1+P. */
    .thumb_func
bench_unaligned:
    ldr     r1, [r0, #1]
    ldrh    r2, [r0, #3]
    ldr     r3, [r0, #6]
    bx      lr

/* 15 + 2P: BL 1+P, ADDS 1, LDR 2 + 1 (its address was computed just before), ADD.W 1,
 * LDR 2, STR 1 (pipelined; its address was computed two instructions before), MOVS 1,
 * LDRD 3 + 1 (its base was just moved), BX 1+P. */
    .thumb_func
bench_address_dependency:
    adds    r1, r0, #4
    ldr     r2, [r1]
    add.w   r3, r0, #8
    ldr     r2, [r0, #12]
    str     r2, [r3]
    movs    r1, r0
    ldrd    r2, r3, [r1]
    bx      lr

    .align  2
flash_word:
    .word   0x12345678

/* 8 + 2P: BL 1+P, MOVS 1, LDR.W 2, LDR 1, LDR 1, LDR 1, BX 1+P.  It straddles the end of a
 * 1 KiB page, where QEMU ends its translation block: the first load of the next block is still
 * pipelined behind the last one of this block.  Before the last 16-bit instruction of a page,
 * QEMU reads that instruction's halfword to see whether it crosses the page (and reports it as
 * part of the instruction before, which must still decode as a 16-bit LDR). */
    .balign 1024
    .space  1014                    /* the bench starts 10 bytes before a page boundary */
    .thumb_func
bench_page_edge:
    movs    r1, #1
    ldr.w   r3, [r0]
    ldr     r2, [r0, #4]
    ldr     r1, [r0, #8]
    ldr     r3, [r0, #12]           /* first instruction of the next page */
    bx      lr

    .bss
    .align  3
data:
    .space  64
