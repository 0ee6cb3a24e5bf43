/* uart_rx_ring.h - the interrupt-driven receive path every UART driver shares.
 *
 * The including driver defines, before including this file:
 *   RX_READY()   nonzero while the peripheral holds a received byte
 *   RX_TAKE()    reads that byte (clears the ready flag)
 *   RX_ACK()     first thing in the ISR (e.g. clear a latched interrupt), may be empty
 *   RX_PAUSE()   the ring is full: leave the byte in the peripheral and quiet a level
 *                interrupt (QEMU then holds the next bytes back), may be empty
 *   RX_RESUME()  after a read: undo RX_PAUSE, may be empty
 * and UART_RX_IRQ (board.h: < 0 = no receive interrupt, polled). It then provides
 * uart_rx_isr, uart_rx_hold, uart_wait_rx, uart_rx_buffer_bytes, uart_rx_interrupts and uart_try_read
 * (board.h). Included by exactly one driver per firmware image. */
#ifndef TM_UART_RX_RING_H
#define TM_UART_RX_RING_H

#include <stdint.h>

#include "board.h"

#define NVIC_ISER(n) (*(volatile uint32_t *)(0xE000E100u + 4u * (uint32_t)(n)))
#define NVIC_ICER(n) (*(volatile uint32_t *)(0xE000E180u + 4u * (uint32_t)(n)))

#if UART_RX_IRQ >= 0
#define RING_MASK (UART_RX_RING_BYTES - 1u)
_Static_assert((UART_RX_RING_BYTES & RING_MASK) == 0, "UART_RX_RING_BYTES must be a power of two");
/* With the protocol buffers (.bss.tm_io): a board file may place them in an extra region. */
static volatile uint8_t ring[UART_RX_RING_BYTES] __attribute__((section(".bss.tm_io")));
static volatile uint32_t ring_head, ring_tail; /* written by the ISR / by the reader */
/* Set while the peripheral may hold a byte the ISR left there (the ring was full): only then
 * does the reader touch the peripheral.  A register read on every empty poll takes QEMU's
 * device lock, which the thread feeding the next byte waits for (docs/protocol.md). */
static volatile uint32_t rx_left;

void uart_rx_isr(void) {
    RX_ACK();
    while (RX_READY()) {
        if (ring_head - ring_tail >= UART_RX_RING_BYTES) {
            rx_left = 1u;
            RX_PAUSE();
            return;
        }
        ring[ring_head & RING_MASK] = RX_TAKE();
        ring_head++;
        rx_left = 0u;
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
    /* A byte that arrived since the last poll has its interrupt pending, which ends WFI even
     * with PRIMASK set; only a byte left in the peripheral (ring full) has none. */
    if (ring_head == ring_tail && !(rx_left && RX_READY())) {
        __asm volatile("wfi" ::: "memory");
    }
    __asm volatile("cpsie i" ::: "memory");
}

uint32_t uart_rx_buffer_bytes(void) { return UART_RX_RING_BYTES; }

int uart_rx_interrupts(void) { return 1; }

int uart_try_read(uint8_t *byte) {
    int got = 1;
    __asm volatile("cpsid i" ::: "memory"); /* the ISR must not read the UART between our check and read */
    if (ring_head != ring_tail) {
        *byte = ring[ring_tail & RING_MASK];
        ring_tail++;
        if (rx_left) {
            RX_RESUME(); /* room again: the ISR may take the byte it left */
        }
    } else if (rx_left) { /* the ring is empty, a byte may still wait in the peripheral */
        if (RX_READY()) {
            *byte = RX_TAKE();
        } else {
            got = 0;
        }
        rx_left = 0u;
        RX_RESUME();
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
int uart_rx_interrupts(void) { return 0; }

int uart_try_read(uint8_t *byte) {
    if (!RX_READY()) {
        return 0;
    }
    *byte = RX_TAKE();
    return 1;
}
#endif

#endif /* TM_UART_RX_RING_H */
