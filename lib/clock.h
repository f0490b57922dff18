/* The one monotonic clock of embd. */
#ifndef EMBD_CLOCK_H
#define EMBD_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. Thread-safe. */
uint64_t embd_now_ns(void);

#endif
