/*
 * cycles_plugin.c - a QEMU TCG plugin (API version 1) that counts, for windows of a guest's
 * execution, each executed Thumb instruction by timing class (thumb_timing.h) and each data
 * access by memory region.  The host turns the counts into estimated cycles with a CPU's
 * timing table (host/emulators/cycles.py, docs/performance.md).
 *
 * Arguments (-plugin file=slingshot_cycles.so,out=PATH,start=0x...,end=0x...,...):
 *   out=PATH             where the counts go (one record per window, see write_window)
 *   start=ADDR           a window opens when the instruction at ADDR executes (it is counted)
 *   end=ADDR             a window closes when the instruction at ADDR is about to execute
 *   mark=ADDR            splits an open window into segments (per-op profile)
 *   region=NAME:ORIGIN:LENGTH   a memory region whose data accesses and fetches are counted
 *   learn_after=N        windows to watch every data access for (default 1, 0: always; see below)
 *   pcs=PATH             also count executions per instruction address inside windows (write_pcs)
 * start/end/mark may repeat (several call sites); addresses are hexadecimal or decimal.
 *
 * Cost: classes are counted with inline adds (no call); a call runs only for conditional
 * branches (taken or not is known at the next block), the window markers, and data accesses
 * until learn_after windows have shown where each instruction accesses (then inline adds too).
 * The instruction stream, and so QEMU's -icount, is not changed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"
#include "thumb_timing.h"

#ifndef SLINGSHOT_PLUGIN_API_VERSION
#define SLINGSHOT_PLUGIN_API_VERSION 1
#endif
QEMU_PLUGIN_EXPORT int qemu_plugin_version = SLINGSHOT_PLUGIN_API_VERSION;

enum { MAX_MARKERS = 64, MAX_REGIONS = 8, CONTINUATIONS = 1024 };

/* ---- counters ------------------------------------------------------------- */
/* counts[] = the classes of thumb_timing.h (with the address-dependency penalty), then per
 * region (the last one is "other"): reads, writes, fetched bytes, then the unaligned-access
 * penalty in cycles. */
typedef struct {
    char name[32];
    uint64_t origin, length;
} region_t;

static region_t regions[MAX_REGIONS + 1];
static int region_count; /* named regions; regions[region_count] is "other" */
static uint64_t *counts;
static size_t counter_count;

static size_t reads_counter(int region) { return TT_CLASS_COUNT + 3u * (size_t)region; }
static size_t writes_counter(int region) { return reads_counter(region) + 1; }
static size_t fetch_counter(int region) { return reads_counter(region) + 2; }
static size_t unaligned_counter(void) { return reads_counter(region_count + 1); }

static int region_of(uint64_t address) {
    for (int i = 0; i < region_count; ++i) {
        if (address - regions[i].origin < regions[i].length) {
            return i;
        }
    }
    return region_count;
}

/* ---- windows ---------------------------------------------------------------- */
enum marker_kind { MARK_START = 1, MARK_END = 2, MARK_SPLIT = 4 };

typedef struct {
    uint64_t address;
    int kinds;
} marker_t;

static marker_t markers[MAX_MARKERS];
static int marker_count;
static FILE *out;
static int window_open;
static uint64_t *snapshots; /* counts at the window's start, at each mark, at its end */
static size_t snapshot_count, snapshot_capacity;
static uint64_t window_start; /* address of the instruction that opened the window */

static void take_snapshot(void) {
    if (snapshot_count == snapshot_capacity) {
        snapshot_capacity = snapshot_capacity ? 2 * snapshot_capacity : 64;
        snapshots = realloc(snapshots, snapshot_capacity * counter_count * sizeof *snapshots);
        if (!snapshots) {
            fprintf(stderr, "slingshot cycles plugin: out of memory\n");
            exit(1);
        }
    }
    memcpy(snapshots + snapshot_count * counter_count, counts, counter_count * sizeof *counts);
    ++snapshot_count;
}

static void write_difference(size_t from, size_t to) {
    const uint64_t *a = snapshots + from * counter_count, *b = snapshots + to * counter_count;
    for (size_t i = 0; i < counter_count; ++i) {
        fprintf(out, " %" PRIu64, b[i] - a[i]);
    }
    fputc('\n', out);
}

/* A window is its segments ("S <counts>" lines, only when marks split it) then
 * "W <start address> <counts>": the host reads a record once its W line is there.  Flushed
 * before the guest goes on, so the record is in the file before the firmware can answer the
 * request that ran the window. */
static void write_window(void) {
    if (snapshot_count > 2) {
        for (size_t i = 0; i + 1 < snapshot_count; ++i) {
            fputc('S', out);
            write_difference(i, i + 1);
        }
    }
    fprintf(out, "W 0x%" PRIx64, window_start);
    write_difference(0, snapshot_count - 1);
    fflush(out);
}

/* ---- executions per instruction address (pcs=PATH) ------------------------------ */
/* Every instrumented instruction adds 1 inline to its address's slot; a window's executions are
 * the slots' growth between its start and its end.  The slots are allocated once (inline adds hold
 * their address), so an address beyond PC_SLOTS distinct ones is not profiled (said in the file). */
enum { PC_SLOTS = 1 << 16 };

typedef struct {
    uint64_t address;
    uint8_t cls, regs_cls, regs;
} pc_slot_t;

static const char *pcs_path;
static pc_slot_t *pc_slots;
static uint64_t *pc_now, *pc_at_start, *pc_in_windows;
static size_t pc_used, pc_dropped;

static uint64_t *pc_counter(uint64_t address, const tt_timing_t *timing) {
    size_t i = (size_t)(address >> 1) & (PC_SLOTS - 1);
    for (size_t probes = 0; probes < PC_SLOTS; ++probes, i = (i + 1) & (PC_SLOTS - 1)) {
        if (pc_slots[i].address == address) {
            return &pc_now[i];
        }
        if (pc_slots[i].address == UINT64_MAX) {
            if (4 * (pc_used + 1) > 3 * PC_SLOTS) { /* keep probes short */
                break;
            }
            pc_slots[i] = (pc_slot_t){address, timing->cls, timing->regs_cls, timing->regs};
            ++pc_used;
            return &pc_now[i];
        }
    }
    ++pc_dropped;
    return 0;
}

static void pcs_window_opens(void) {
    memcpy(pc_at_start, pc_now, PC_SLOTS * sizeof *pc_now);
}

/* "<address> <executions> <class> <regs class> <regs>" per address executed in any window so far,
 * the file rewritten whole at each window's end. */
static void pcs_window_closes(void) {
    FILE *f = fopen(pcs_path, "w");
    if (!f) {
        return;
    }
    fprintf(f, "# slingshot-pcs 1 dropped %zu\n", pc_dropped);
    for (size_t i = 0; i < PC_SLOTS; ++i) {
        pc_in_windows[i] += pc_now[i] - pc_at_start[i];
        if (pc_in_windows[i]) {
            fprintf(f, "0x%" PRIx64 " %" PRIu64 " %s %s %u\n", pc_slots[i].address, pc_in_windows[i],
                    tt_class_names[pc_slots[i].cls],
                    pc_slots[i].regs_cls < TT_CLASS_COUNT ? tt_class_names[pc_slots[i].regs_cls] : "-",
                    (unsigned)pc_slots[i].regs);
        }
    }
    fclose(f);
}

static int pcs_allocate(void) {
    pc_slots = malloc(PC_SLOTS * sizeof *pc_slots);
    pc_now = calloc(PC_SLOTS, sizeof *pc_now);
    pc_at_start = calloc(PC_SLOTS, sizeof *pc_at_start);
    pc_in_windows = calloc(PC_SLOTS, sizeof *pc_in_windows);
    if (!pc_slots || !pc_now || !pc_at_start || !pc_in_windows) {
        return -1;
    }
    for (size_t i = 0; i < PC_SLOTS; ++i) {
        pc_slots[i].address = UINT64_MAX;
    }
    return 0;
}

/* ---- what each instrumented instruction carries ------------------------------- */
typedef struct {
    tt_timing_t timing;
    uint64_t fallthrough; /* address after it (conditional instructions) */
    int kinds;            /* marker kinds at its address */
    size_t fetch_counter; /* markers count their own fetched bytes too */
    uint64_t size;
} insn_info_t;

static void count_executed(const tt_timing_t *timing, uint8_t cls) {
    ++counts[cls];
    if (timing->regs_cls != TT_CLASS_COUNT) {
        counts[timing->regs_cls] += timing->regs;
    }
    counts[TT_address_dependency_penalty] += timing->address_stall;
}

/* ---- conditional instructions: taken or not is seen at the next block -------- */
static const insn_info_t *pending; /* a conditional instruction whose outcome is not known yet */

static void resolve_pending(uint64_t next_pc) {
    if (!pending) {
        return;
    }
    const int taken = next_pc != pending->fallthrough;
    if (taken) {
        count_executed(&pending->timing, pending->timing.cls);
    } else {
        ++counts[pending->timing.not_taken_cls];
    }
    pending = 0;
}

static void on_block(unsigned int vcpu, void *userdata) {
    (void)vcpu;
    resolve_pending((uint64_t)(uintptr_t)userdata);
}

static void on_conditional(unsigned int vcpu, void *userdata) {
    (void)vcpu;
    pending = userdata;
}

static void start_learned_counting(void); /* data accesses, below */

/* Markers count their own instruction, so that where the window opens or closes does not
 * depend on the order QEMU runs an instruction's inline ops and callbacks. */
static void on_marker(unsigned int vcpu, void *userdata) {
    (void)vcpu;
    const insn_info_t *info = userdata;
    if ((info->kinds & MARK_END) && window_open) {
        take_snapshot();
        if (pcs_path) {
            pcs_window_closes();
        }
        write_window();
        window_open = 0;
        start_learned_counting();
    }
    if (info->kinds & MARK_START) {
        snapshot_count = 0;
        window_open = 1;
        window_start = info->fallthrough - info->size;
        take_snapshot();
        if (pcs_path) {
            pcs_window_opens();
        }
    } else if ((info->kinds & MARK_SPLIT) && window_open) {
        take_snapshot();
    }
    counts[info->fetch_counter] += info->size;
    if (info->timing.conditional) {
        pending = info;
    } else {
        count_executed(&info->timing, info->timing.cls);
    }
}

/* ---- data accesses: watched, then learned -------------------------------------- */
/* A callback per data access (for its address: region, alignment) is most of the plugin's
 * cost.  So each memory instruction is watched until the learn_after-th window closes; then QEMU's
 * blocks are flushed (qemu_plugin_reset) and every instruction seen to access one region only,
 * aligned and in one direction adds its accesses per execution (LDM: its registers) inline
 * from then on.  The engine's addresses do not depend on the input: what one inference shows
 * holds for the next.  (Inline adds on the accesses themselves do not count loads in QEMU 7.2;
 * an instruction in an IT block, which may not access memory, stays watched.) */
typedef struct {
    uint64_t address;
    uint32_t regions_read, regions_written; /* a bit per region seen */
    uint8_t unaligned;
} access_watch_t;

typedef struct {
    uint64_t address;
    size_t counter; /* reads_counter or writes_counter of its one region */
} learned_access_t;

enum learning { WATCHING, FLUSHING, LEARNED };
static enum learning learning = WATCHING;
static qemu_plugin_id_t plugin_id;
static access_watch_t **watches;
static size_t watch_count, watch_capacity;
static learned_access_t *learned;
static size_t learned_count;
static unsigned long windows_before_learning = 1; /* learn_after= */

static void *grow(void *array, size_t *capacity, size_t element_size) {
    *capacity = *capacity ? 2 * *capacity : 256;
    void *bigger = realloc(array, *capacity * element_size);
    if (!bigger) {
        fprintf(stderr, "slingshot cycles plugin: out of memory\n");
        exit(1);
    }
    return bigger;
}

static access_watch_t *new_watch(uint64_t address) {
    access_watch_t *watch = calloc(1, sizeof *watch);
    if (!watch) {
        fprintf(stderr, "slingshot cycles plugin: out of memory\n");
        exit(1);
    }
    watch->address = address;
    if (learning == WATCHING) {
        if (watch_count == watch_capacity) {
            watches = grow(watches, &watch_capacity, sizeof *watches);
        }
        watches[watch_count++] = watch;
    }
    return watch;
}

static void on_access(unsigned int vcpu, qemu_plugin_meminfo_t access, uint64_t address, void *userdata) {
    (void)vcpu;
    access_watch_t *watch = userdata;
    const int region = region_of(address), is_store = qemu_plugin_mem_is_store(access);
    ++counts[is_store ? writes_counter(region) : reads_counter(region)];
    *(is_store ? &watch->regions_written : &watch->regions_read) |= 1u << region;
    /* TRM 3.3.2: an unaligned halfword or word costs one more cycle per extra bus access. */
    const unsigned size = 1u << qemu_plugin_mem_size_shift(access);
    unsigned penalty = 0;
    if (size == 2 && (address & 1)) {
        penalty = 1;
    } else if (size == 4 && (address & 3)) {
        penalty = (address & 1) ? 2 : 1;
    }
    counts[unaligned_counter()] += penalty;
    watch->unaligned |= penalty != 0;
}

/* The counter an instruction's accesses all went to, or SIZE_MAX if it has none yet. */
static size_t single_counter(const access_watch_t *watch) {
    const uint32_t seen = watch->regions_read | watch->regions_written;
    const int one_direction = !watch->regions_read != !watch->regions_written;
    if (watch->unaligned || !one_direction || !seen || (seen & (seen - 1))) {
        return SIZE_MAX;
    }
    int region = 0;
    while (!(seen & (1u << region))) {
        ++region;
    }
    return watch->regions_written ? writes_counter(region) : reads_counter(region);
}

static int by_address(const void *a, const void *b) {
    const uint64_t x = ((const learned_access_t *)a)->address, y = ((const learned_access_t *)b)->address;
    return (x > y) - (x < y);
}

static size_t learned_counter(uint64_t address) {
    const learned_access_t key = {address, 0};
    const learned_access_t *found = learned_count ? bsearch(&key, learned, learned_count, sizeof key, by_address) : 0;
    return found ? found->counter : SIZE_MAX;
}

/* An instruction translated in several blocks is learned only if every copy agrees. */
static void learn_accesses(void) {
    learned = malloc((watch_count ? watch_count : 1) * sizeof *learned);
    if (!learned) {
        fprintf(stderr, "slingshot cycles plugin: out of memory\n");
        exit(1);
    }
    size_t n = 0;
    for (size_t i = 0; i < watch_count; ++i) {
        learned[n].address = watches[i]->address;
        learned[n].counter = single_counter(watches[i]);
        ++n;
    }
    qsort(learned, n, sizeof *learned, by_address);
    learned_count = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, counter = learned[i].counter;
        for (; j < n && learned[j].address == learned[i].address; ++j) {
            counter = learned[j].counter == counter ? counter : SIZE_MAX;
        }
        if (counter != SIZE_MAX) {
            learned[learned_count].address = learned[i].address;
            learned[learned_count++].counter = counter;
        }
        i = j;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
static void on_exit_flush(qemu_plugin_id_t id, void *userdata);

static void on_flushed(qemu_plugin_id_t id) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_flush, 0);
    learning = LEARNED;
    fprintf(out, "# learned %zu of %zu memory instructions\n", learned_count, watch_count);
    fflush(out);
}

/* Called as a window closes: after the learn_after-th, blocks are translated anew. */
static void start_learned_counting(void) {
    if (learning != WATCHING || windows_before_learning == 0 || --windows_before_learning > 0) {
        return;
    }
    learn_accesses();
    learning = FLUSHING;
    qemu_plugin_reset(plugin_id, on_flushed);
}

static void instrument_accesses(struct qemu_plugin_insn *insn, const tt_timing_t *timing) {
    const uint64_t address = qemu_plugin_insn_vaddr(insn);
    const int learnable = learning == LEARNED && timing->accesses && !timing->in_it_block;
    const size_t counter = learnable ? learned_counter(address) : SIZE_MAX;
    if (counter == SIZE_MAX) {
        qemu_plugin_register_vcpu_mem_cb(insn, on_access, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW,
                                         new_watch(address));
        return;
    }
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counts[counter], timing->accesses);
}

/* ---- straight-line runs split across blocks ------------------------------------ */
/* QEMU ends a block at a page boundary, after 512 instructions or where -icount's budget runs
 * out; the next block then continues a run whose last instruction may have been a load. */
typedef struct {
    uint64_t address;
    tt_context_t context;
} continuation_t;

static continuation_t continuations[CONTINUATIONS];

static tt_context_t context_at(uint64_t address) {
    tt_context_t context;
    const continuation_t *c = &continuations[(address >> 1) % CONTINUATIONS];
    if (c->address == address && address != 0) {
        return c->context;
    }
    tt_context_reset(&context);
    return context;
}

static void remember_continuation(uint64_t address, const tt_context_t *context) {
    continuation_t *c = &continuations[(address >> 1) % CONTINUATIONS];
    c->address = address;
    c->context = *context;
}

/* ---- translation --------------------------------------------------------------- */
static int marker_kinds_at(uint64_t address) {
    int kinds = 0;
    for (int i = 0; i < marker_count; ++i) {
        if (markers[i].address == address) {
            kinds |= markers[i].kinds;
        }
    }
    return kinds;
}

/* An instruction's length from its first halfword: QEMU's own size can include the next
 * instruction's first halfword, which it reads at the end of a page to see whether that one
 * crosses into the next page. */
static uint64_t insn_length(const struct qemu_plugin_insn *insn) {
    const uint8_t *bytes = qemu_plugin_insn_data(insn);
    return tt_is_32bit((uint16_t)(bytes[0] | bytes[1] << 8)) ? 4 : 2;
}

/* Instrumentation data lives as long as QEMU may run the block (blocks are never freed here). */
static insn_info_t *new_info(struct qemu_plugin_insn *insn, const tt_timing_t *timing, int kinds) {
    insn_info_t *info = malloc(sizeof *info);
    if (!info) {
        fprintf(stderr, "slingshot cycles plugin: out of memory\n");
        exit(1);
    }
    const uint64_t address = qemu_plugin_insn_vaddr(insn);
    info->timing = *timing;
    info->size = insn_length(insn);
    info->fallthrough = address + info->size;
    info->kinds = kinds;
    info->fetch_counter = fetch_counter(region_of(address));
    return info;
}

/* Fetched bytes are counted once per block, except in a block holding a marker: there each
 * instruction counts its own, so that they fall on the right side of the window's edge. */
static void instrument(struct qemu_plugin_insn *insn, const tt_timing_t *timing, int block_has_marker) {
    const uint64_t address = qemu_plugin_insn_vaddr(insn);
    const int kinds = marker_kinds_at(address);
    uint64_t *executions = pcs_path ? pc_counter(address, timing) : 0;
    if (executions) {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, executions, 1);
    }
    if (block_has_marker && !kinds) {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &counts[fetch_counter(region_of(address))], insn_length(insn));
    }
    if (kinds) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, new_info(insn, timing, kinds));
    } else if (timing->conditional) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_conditional, QEMU_PLUGIN_CB_NO_REGS,
                                               new_info(insn, timing, 0));
    } else {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counts[timing->cls], 1);
        if (timing->regs_cls != TT_CLASS_COUNT) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counts[timing->regs_cls],
                                                       timing->regs);
        }
        if (timing->address_stall) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &counts[TT_address_dependency_penalty], 1);
        }
    }
    if (timing->memory) {
        instrument_accesses(insn, timing);
    }
}

static tt_timing_t classify(struct qemu_plugin_insn *insn, tt_context_t *context) {
    const uint8_t *bytes = qemu_plugin_insn_data(insn);
    const int is_32bit = insn_length(insn) == 4;
    const uint16_t hw1 = (uint16_t)(bytes[0] | bytes[1] << 8);
    const uint16_t hw2 = is_32bit ? (uint16_t)(bytes[2] | bytes[3] << 8) : 0;
    return tt_classify(hw1, hw2, is_32bit, context);
}

static int block_has_marker(const struct qemu_plugin_tb *tb, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (marker_kinds_at(qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i)))) {
            return 1;
        }
    }
    return 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    const uint64_t start = qemu_plugin_tb_vaddr(tb);
    const int has_marker = block_has_marker(tb, n);
    tt_context_t context = context_at(start);
    uint64_t bytes = 0, next = start;
    tt_timing_t timing = {0};
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        timing = classify(insn, &context);
        instrument(insn, &timing, has_marker);
        bytes += insn_length(insn);
        next = qemu_plugin_insn_vaddr(insn) + insn_length(insn);
    }
    /* Before the block's instructions: settle the previous block's conditional instruction. */
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)start);
    if (!has_marker) {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                                 &counts[fetch_counter(region_of(start))], bytes);
    }
    if (n && !timing.writes_pc) {
        remember_continuation(next, &context);
    }
}

/* ---- arguments ------------------------------------------------------------------ */
static int parse_address(const char *text, uint64_t *address) {
    char *end;
    errno = 0;
    const unsigned long long value = strtoull(text, &end, 0);
    if (errno || end == text || *end) {
        return -1;
    }
    *address = value;
    return 0;
}

static int add_marker(const char *text, int kind) {
    uint64_t address;
    if (parse_address(text, &address) || marker_count == MAX_MARKERS) {
        return -1;
    }
    markers[marker_count].address = address & ~(uint64_t)1; /* a Thumb symbol's bit 0 is not part of it */
    markers[marker_count].kinds = kind;
    ++marker_count;
    return 0;
}

static int add_region(const char *text) {
    const char *colon = strchr(text, ':');
    if (!colon || region_count == MAX_REGIONS || (size_t)(colon - text) >= sizeof regions[0].name) {
        return -1;
    }
    char origin[32], length[32];
    if (sscanf(colon + 1, "%31[^:]:%31s", origin, length) != 2) {
        return -1;
    }
    region_t *r = &regions[region_count];
    memcpy(r->name, text, (size_t)(colon - text));
    r->name[colon - text] = 0;
    if (parse_address(origin, &r->origin) || parse_address(length, &r->length)) {
        return -1;
    }
    ++region_count;
    return 0;
}

static int parse_argument(const char *arg, const char **out_path) {
    const char *value = strchr(arg, '=');
    if (!value) {
        return -1;
    }
    const size_t key_length = (size_t)(value - arg);
    ++value;
    if (key_length == 3 && !strncmp(arg, "out", 3)) {
        *out_path = value;
        return 0;
    }
    if (key_length == 5 && !strncmp(arg, "start", 5)) {
        return add_marker(value, MARK_START);
    }
    if (key_length == 3 && !strncmp(arg, "end", 3)) {
        return add_marker(value, MARK_END);
    }
    if (key_length == 4 && !strncmp(arg, "mark", 4)) {
        return add_marker(value, MARK_SPLIT);
    }
    if (key_length == 3 && !strncmp(arg, "pcs", 3)) {
        pcs_path = value;
        return 0;
    }
    if (key_length == 6 && !strncmp(arg, "region", 6)) {
        return add_region(value);
    }
    if (key_length == 11 && !strncmp(arg, "learn_after", 11)) {
        uint64_t windows;
        if (parse_address(value, &windows)) {
            return -1;
        }
        windows_before_learning = (unsigned long)windows;
        return 0;
    }
    return -1;
}

/* The first line names the plugin's format, the API version QEMU offers and every counter. */
static void write_header(const qemu_info_t *info) {
    fprintf(out, "# slingshot-cycles 1 api %d..%d counters", info->version.min, info->version.cur);
    for (int i = 0; i < TT_CLASS_COUNT; ++i) {
        fprintf(out, " %s", tt_class_names[i]);
    }
    strcpy(regions[region_count].name, "other");
    for (int r = 0; r <= region_count; ++r) {
        fprintf(out, " read.%s write.%s fetch_bytes.%s", regions[r].name, regions[r].name, regions[r].name);
    }
    fprintf(out, " unaligned_penalty\n");
    fflush(out);
}

static void on_exit_flush(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    if (out) {
        fflush(out);
    }
}

static int fail(const char *message, const char *detail) {
    char line[512];
    snprintf(line, sizeof line, "slingshot cycles plugin: %s%s\n", message, detail ? detail : "");
    qemu_plugin_outs(line);
    fputs(line, stderr);
    return -1;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    const char *out_path = 0;
    if (!info->system_emulation || strcmp(info->target_name, "arm") != 0) {
        return fail("needs qemu-system-arm, got target ", info->target_name);
    }
    for (int i = 0; i < argc; ++i) {
        if (parse_argument(argv[i], &out_path)) {
            return fail("bad argument ", argv[i]);
        }
    }
    if (!out_path) {
        return fail("missing out=PATH", 0);
    }
    counter_count = unaligned_counter() + 1;
    counts = calloc(counter_count, sizeof *counts);
    out = fopen(out_path, "w");
    if (!counts || !out) {
        return fail("cannot open ", out_path);
    }
    if (pcs_path && pcs_allocate()) {
        return fail("out of memory for pcs=", pcs_path);
    }
    write_header(info);
    plugin_id = id;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_flush, 0);
    return 0;
}
