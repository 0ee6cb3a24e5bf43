/* board.h - what the runtime needs from a board (implemented by the UART
 * driver in firmware/drivers/ chosen by the board file, plus the core SysTick
 * code in systick.c). */
#ifndef TM_BOARD_H
#define TM_BOARD_H

#include <stddef.h>
#include <stdint.h>

void board_init(void);

/* Blocking write of n bytes. */
void uart_write(const uint8_t *data, size_t n);

/* Non-blocking read: 1 and the byte when one is waiting, else 0. */
int uart_try_read(uint8_t *byte);

/* Monotonic SysTick tick count (CPU_CLOCK_HZ ticks per second). */
uint64_t ticks_now(void);

#endif /* TM_BOARD_H */
