/* main.c - firmware entry: bring up the board, then serve the protocol
 * (or, built with -DTM_MLPERF_MODE, the MLPerf Tiny text protocol: mlperf_mode.c). */
#include "board.h"
#include "protocol.h"

#ifdef TM_MLPERF_MODE
void mlperf_run(void);
#endif

int main(void) {
    board_init();
#ifdef TM_MLPERF_MODE
    mlperf_run();
#else
    protocol_run();
#endif
    return 0;
}
