/* startup.c - Cortex-M vector table and reset: copy .data from its load
 * address (flash) to RAM, zero .bss and the zero-initialized sections of the
 * board's extra memory regions (the linker's zero table, see sections.ld),
 * point VTOR at the vector table, enable the FPU when there is one, start
 * SysTick, run main.  Faults report an error frame on the UART (see
 * protocol.c) and stop.  The external interrupt vectors all lead to the
 * UART receive handler (the only interrupt the firmware enables, board.h). */
#include <stdint.h>

#include "board.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
/* Pairs of (start, end) addresses, one per extra memory region (generated regions.ld). */
extern const uint32_t __zero_table_start[], __zero_table_end[];
extern int main(void);
extern void SysTick_Handler(void);
void systick_init(void);
void protocol_report_fault(uint32_t ipsr);

#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

#define N_EXTERNAL_IRQS 96 /* covers the UART IRQs of every board (STM32F405 USART6 is 71) */
#define N_VECTORS (16 + N_EXTERNAL_IRQS)
#define IRQ_X8 uart_rx_isr, uart_rx_isr, uart_rx_isr, uart_rx_isr, uart_rx_isr, uart_rx_isr, uart_rx_isr, uart_rx_isr

static void (*const vectors[N_VECTORS])(void);

void Reset_Handler(void) {
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    for (const uint32_t *entry = __zero_table_start; entry < __zero_table_end; entry += 2) {
        for (uint32_t *dst = (uint32_t *)entry[0]; dst < (uint32_t *)entry[1];) {
            *dst++ = 0;
        }
    }
    /* The table is at the start of flash (0x08000000 on STM32, 0 on MPS2). */
    SCB_VTOR = (uint32_t)(uintptr_t)vectors;
#if defined(__ARM_FP)
    SCB_CPACR |= (0xFu << 20); /* CP10, CP11 full access */
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    systick_init();
    main();
    for (;;) {
    }
}

static void Fault_Handler(void) {
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    protocol_report_fault(ipsr);
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) static void (*const vectors[N_VECTORS])(void) = {
    (void (*)(void))(&_estack),
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVC */
    Fault_Handler, /* DebugMon */
    0,
    Fault_Handler, /* PendSV */
    SysTick_Handler,
    IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8, IRQ_X8,
};
