/* uart_cmsdk.c - Arm CMSDK APB UART (MPS2/MPS3 boards).  The base address,
 * UART clock and baud rate come from the board file as -D defines.  QEMU
 * only transmits with CTRL.TXEN set.
 *
 * Receive: the RX interrupt moves bytes into a ring (board.h).  The IRQ
 * number follows from the UART's address on the QEMU/FPGA machines
 * (hw/arm/mps2.c: AN385/AN386/AN500 UART0..4 RX = 0, 2, 4, 18, 20;
 * hw/arm/mps2-tz.c: AN547 UART0..3 RX = 34, 36, 38, 40) or from
 * -DUART_RX_IRQ=n; -DUART_RX_IRQ=-1 (or an unknown address) polls. */
#include <stdint.h>

#include "board.h"

#ifndef UART_BASE
#error "UART_BASE must be defined by the board file"
#endif
#ifndef UART_CLOCK_HZ
#define UART_CLOCK_HZ CPU_CLOCK_HZ
#endif
#ifndef UART_BAUD
#define UART_BAUD 115200u
#endif

#ifndef UART_RX_IRQ
#if UART_BASE == 0x40004000u
#define UART_RX_IRQ 0
#elif UART_BASE == 0x40005000u
#define UART_RX_IRQ 2
#elif UART_BASE == 0x40006000u
#define UART_RX_IRQ 4
#elif UART_BASE == 0x40007000u
#define UART_RX_IRQ 18
#elif UART_BASE == 0x40009000u
#define UART_RX_IRQ 20
#elif UART_BASE == 0x49303000u || UART_BASE == 0x59303000u
#define UART_RX_IRQ 34
#elif UART_BASE == 0x49304000u || UART_BASE == 0x59304000u
#define UART_RX_IRQ 36
#elif UART_BASE == 0x49305000u || UART_BASE == 0x59305000u
#define UART_RX_IRQ 38
#elif UART_BASE == 0x49306000u || UART_BASE == 0x59306000u
#define UART_RX_IRQ 40
#else
#define UART_RX_IRQ (-1)
#endif
#endif

#define UART_DATA (*(volatile uint32_t *)(UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART_BASE + 0x08u))
#define UART_INTCLEAR (*(volatile uint32_t *)(UART_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART_BASE + 0x10u))
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INT_EN 0x8u
#define INT_RX 0x2u

#define NVIC_ISER(n) (*(volatile uint32_t *)(0xE000E100u + 4u * (uint32_t)(n)))
#define NVIC_ICER(n) (*(volatile uint32_t *)(0xE000E180u + 4u * (uint32_t)(n)))

#if UART_RX_IRQ >= 0
#define RING_MASK (UART_RX_RING_BYTES - 1u)
_Static_assert((UART_RX_RING_BYTES & RING_MASK) == 0, "UART_RX_RING_BYTES must be a power of two");
/* With the protocol buffers (.bss.tm_io): a board file may place them in an extra region. */
static volatile uint8_t ring[UART_RX_RING_BYTES] __attribute__((section(".bss.tm_io")));
static volatile uint32_t ring_head, ring_tail; /* written by the ISR / by the reader */

void uart_rx_isr(void) {
    UART_INTCLEAR = INT_RX; /* first: a byte arriving from here on raises it again */
    /* A full ring leaves the byte in the UART: QEMU holds the next ones back, the reader polls it. */
    while ((UART_STATE & STATE_RX_FULL) && ring_head - ring_tail < UART_RX_RING_BYTES) {
        ring[ring_head & RING_MASK] = (uint8_t)UART_DATA;
        ring_head++;
    }
}

void uart_rx_hold(int hold) {
    if (hold) {
        NVIC_ICER(UART_RX_IRQ / 32) = 1u << (UART_RX_IRQ % 32);
    } else {
        NVIC_ISER(UART_RX_IRQ / 32) = 1u << (UART_RX_IRQ % 32);
    }
    __asm volatile("dsb\n\tisb" ::: "memory");
}

void uart_wait_rx(void) {
    __asm volatile("cpsid i" ::: "memory");
    if (ring_head == ring_tail && !(UART_STATE & STATE_RX_FULL)) {
        __asm volatile("wfi" ::: "memory"); /* a pending interrupt ends it even with PRIMASK set */
    }
    __asm volatile("cpsie i" ::: "memory");
}

uint32_t uart_rx_buffer_bytes(void) { return UART_RX_RING_BYTES; }

int uart_try_read(uint8_t *byte) {
    int got = 1;
    __asm volatile("cpsid i" ::: "memory"); /* the ISR must not read the UART between our check and read */
    if (ring_head != ring_tail) {
        *byte = ring[ring_tail & RING_MASK];
        ring_tail++;
    } else if (UART_STATE & STATE_RX_FULL) { /* a byte the ISR left behind (the ring was full) */
        *byte = (uint8_t)UART_DATA;
    } else {
        got = 0;
    }
    __asm volatile("cpsie i" ::: "memory");
    return got;
}
#else
void uart_rx_isr(void) {}
void uart_rx_hold(int hold) { (void)hold; }
void uart_wait_rx(void) {}
uint32_t uart_rx_buffer_bytes(void) { return 0; }

int uart_try_read(uint8_t *byte) {
    if (!(UART_STATE & STATE_RX_FULL)) {
        return 0;
    }
    *byte = (uint8_t)UART_DATA;
    return 1;
}
#endif

void board_init(void) {
    UART_BAUDDIV = UART_CLOCK_HZ / UART_BAUD;
#if UART_RX_IRQ >= 0
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    uart_rx_hold(0);
#else
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
#endif
}

void uart_write(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = data[i];
    }
}
