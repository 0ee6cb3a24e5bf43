/* board.h - what the runtime needs from a board (implemented by the UART
 * driver in firmware/drivers/ chosen by the board file, plus the core SysTick
 * code in systick.c).
 *
 * Receiving: when the driver knows the UART's receive interrupt (from the
 * board's UART_BASE, or -DUART_RX_IRQ=n), its interrupt handler moves bytes
 * into a ring buffer of UART_RX_RING_BYTES while the runtime computes or
 * transmits; otherwise the runtime polls.  The runtime holds the interrupt
 * off (uart_rx_hold) around tm_invoke so that no interrupt handler runs
 * inside the measured interval (docs/protocol.md, "Cost metric"). */
#ifndef TM_BOARD_H
#define TM_BOARD_H

#include <stddef.h>
#include <stdint.h>

#ifndef UART_RX_RING_BYTES
#define UART_RX_RING_BYTES 512u /* a power of two */
#endif

void board_init(void);

/* Blocking write of n bytes. */
void uart_write(const uint8_t *data, size_t n);

/* Non-blocking read: 1 and the byte when one is waiting (ring or UART), else 0. */
int uart_try_read(uint8_t *byte);

/* 1: keep the receive interrupt from running (bytes wait in the UART; an
 * emulated UART holds further bytes back); 0: let it run again. */
void uart_rx_hold(int hold);

/* Sleep (WFI) until an interrupt, unless a byte is already waiting.  Returns
 * at once when the driver polls (no receive interrupt). */
void uart_wait_rx(void);
/* 1 when bytes arrive by interrupt (uart_wait_rx sleeps until one), 0 on a polled UART. */
int uart_rx_interrupts(void);

/* Bytes the receive ring holds (0 when the driver polls). */
uint32_t uart_rx_buffer_bytes(void);

/* The UART receive interrupt handler (in the vector table, startup.c). */
void uart_rx_isr(void);

/* Monotonic SysTick tick count (CPU_CLOCK_HZ ticks per second). */
uint64_t ticks_now(void);

#endif /* TM_BOARD_H */
