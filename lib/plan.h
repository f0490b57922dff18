/* The planner: ids become runs of consecutive rows, and runs choose zero-copy or gather. */
#ifndef EMBD_PLAN_H
#define EMBD_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "ids.h"
#include "matrix.h"

typedef struct embd_run {
	uint64_t start; /* EMBD_RUN_ZERO: count rows of zeros, standing for unknown tokens */
	uint64_t count;
} embd_run;

#define EMBD_RUN_ZERO UINT64_MAX

typedef enum embd_path {
	EMBD_PATH_ZEROCOPY = 0, /* bytes go out of the mapping; nothing is copied */
	EMBD_PATH_GATHER = 1,   /* bytes are copied (and maybe converted) into an accounted buffer */
} embd_path;

/* The cost rule between many small iovec segments and one gathered buffer. */
typedef struct embd_plan_cfg {
	size_t iov_max_segments;  /* more runs than this: gather */
	size_t iov_min_run_bytes; /* mean bytes per run below this: gather */
} embd_plan_cfg;

/*
 * Validate ids against rows and merge consecutive ones into runs. With runs
 * NULL, only validates and sets *nruns to the number of runs needed; with
 * runs (room for *nruns), fills them. With zero_rows, an id of -1 (a token
 * the vocabulary lacks, under ?oov=zero) is a row of zeros, merged into
 * EMBD_RUN_ZERO runs. Errors: EMBD_EBADID (negative), EMBD_ERANGE (>= rows),
 * with e naming the first bad id and its position.
 */
int embd_plan_runs(const embd_ids *ids, uint64_t rows, int zero_rows, embd_run *runs, size_t *nruns, embd_err *e);

/* Does any run stand for rows of zeros? Such a plan is gathered: zeros are not in the mapping. */
int embd_plan_has_zero(const embd_run *runs, size_t nruns);

/* Total rows of a plan's runs. */
uint64_t embd_plan_rows(const embd_run *runs, size_t nruns);

/*
 * Which path a response takes. transform: the response needs its bytes
 * changed (JSON, dtype conversion, normalisation), so it must gather.
 * One run always goes zero-copy.
 */
embd_path embd_plan_choose(const embd_plan_cfg *cfg, size_t nruns, uint64_t nrows, size_t row_bytes, int transform);

/* Copy the rows of the runs (zeros for EMBD_RUN_ZERO), back to back, into dst (room for their total bytes). */
void embd_plan_gather(const embd_matrix_info *m, const embd_run *runs, size_t nruns, void *dst);

const char *embd_path_name(embd_path p);

#endif
