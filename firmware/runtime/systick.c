/* systick.c - a monotonic 64-bit tick counter from the Cortex-M SysTick timer:
 * the 24-bit down-counter runs at the core clock; its wrap interrupt counts
 * periods.  (Under QEMU -icount shift=0 one tick is 40 instructions on MPS2.)
 * The period is 50 ms: the receive loop sleeps (WFI) inside a frame between bytes,
 * and the wrap interrupt is what wakes it to notice a line gone idle (protocol.c). */
#include <stdint.h>

#include "board.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#ifndef CPU_CLOCK_HZ
#define CPU_CLOCK_HZ 25000000u
#endif
#define SYST_RELOAD (CPU_CLOCK_HZ / 20u - 1u) /* a wrap every 50 ms */
_Static_assert(SYST_RELOAD <= 0x00FFFFFFu, "SysTick is 24 bits: CPU_CLOCK_HZ must be below 335 MHz");

static volatile uint32_t wraps;

void SysTick_Handler(void) { wraps++; }

void systick_init(void) {
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* enable, interrupt, core clock */
}

uint64_t ticks_now(void) {
    /* Read wraps around the counter; retry if a wrap happened in between. */
    uint32_t before, after, count;
    do {
        before = wraps;
        count = SYST_CVR;
        after = wraps;
    } while (before != after);
    return (uint64_t)before * (SYST_RELOAD + 1u) + (SYST_RELOAD - count);
}
