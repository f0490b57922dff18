/* The one monotonic clock of lib and server: durations, deadlines and timeouts. */
#ifndef EMBD_CLOCK_H
#define EMBD_CLOCK_H

#include <stdint.h>

/*
 * CLOCK_MONOTONIC in nanoseconds: never goes back, unaffected by changes of
 * the wall clock; only differences mean anything. Thread-safe; never fails.
 */
uint64_t embd_now_ns(void);

#endif
