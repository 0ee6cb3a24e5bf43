/* calibrate.c - measures what one SysTick tick is worth in instructions.
 *
 * A separate firmware (host/emulator.py `calibrate`, built with the board's
 * startup, SysTick code and UART driver): it times an assembly loop of exactly
 * two instructions per iteration (subs + bne) for two iteration counts and
 * prints "calibrate <n1> <ticks1> <n2> <ticks2>\n" on the UART.  The call and
 * read overhead is the same in both runs, so (ticks2 - ticks1) ticks are
 * 2 * (n2 - n1) instructions: under QEMU -icount that is the board file's
 * instructions_per_tick, measured instead of derived from the clock. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"

void protocol_report_fault(uint32_t ipsr);
void protocol_report_fault(uint32_t ipsr) {
    static const char message[] = "calibrate fault\n";
    (void)ipsr;
    uart_write((const uint8_t *)message, sizeof message - 1);
}

static uint64_t timed_loop(uint32_t n) {
    const uint64_t start = ticks_now();
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    return ticks_now() - start;
}

static size_t put_number(char *p, uint64_t v) {
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    for (size_t i = 0; i < n; ++i) {
        p[i] = digits[n - 1 - i];
    }
    return n;
}

int main(void) {
    static const uint32_t counts[2] = {1000000u, 11000000u};
    uint64_t ticks[2];
    board_init();
    (void)timed_loop(1000u); /* warm up (translation caches in an emulator) */
    for (int i = 0; i < 2; ++i) {
        ticks[i] = timed_loop(counts[i]);
    }
    char line[96] = "calibrate";
    size_t n = 9;
    for (int i = 0; i < 2; ++i) {
        line[n++] = ' ';
        n += put_number(line + n, counts[i]);
        line[n++] = ' ';
        n += put_number(line + n, ticks[i]);
    }
    line[n++] = '\n';
    for (;;) {
        uart_write((const uint8_t *)line, n);
        for (volatile uint32_t wait = 0; wait < 1000000u; ++wait) {
        }
    }
}
