/* classify.c - reads "<is_32bit> <hw1 hex> <hw2 hex>" lines and prints each instruction's timing
 * class (firmware/tools/qemu_cycles/thumb_timing.c), for tests/emulators/test_cycles.py to compare with
 * objdump's disassembly of a whole firmware. Every instruction is classified on its own. */
#include <stdio.h>

#include "thumb_timing.h"

int main(void) {
    unsigned is_32bit, hw1, hw2;
    while (scanf("%u %x %x", &is_32bit, &hw1, &hw2) == 3) {
        tt_context_t context;
        tt_context_reset(&context);
        const tt_timing_t timing = tt_classify((uint16_t)hw1, (uint16_t)hw2, (int)is_32bit, &context);
        printf("%s %u\n", tt_class_names[timing.cls], (unsigned)timing.regs);
    }
    return 0;
}
