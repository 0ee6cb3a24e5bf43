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
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26) /* SysTick's exception pending */
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
    /* Read wraps around the counter; retry if the handler counted a wrap in between.  A wrap it has not counted
     * yet (its exception still pending: QEMU takes interrupts between translation blocks, a core some cycles
     * late) leaves the counter reloaded but wraps one short, a period (50 ms) early: a pending SysTick with the
     * counter in the upper half of its period is that wrap, counted here.  (Pending with the counter in the lower
     * half: the wrap came after the counter was read, which still holds the old period's count.) */
    uint32_t before, after, count, pending;
    do {
        before = wraps;
        count = SYST_CVR;
        pending = SCB_ICSR & ICSR_PENDSTSET;
        after = wraps;
    } while (before != after);
    if (pending && count > SYST_RELOAD / 2u) {
        ++before;
    }
    return (uint64_t)before * (SYST_RELOAD + 1u) + (SYST_RELOAD - count);
}
