/* The planner: ids to runs, and the zero-copy or gather decision. */
#include "plan.h"

#include <inttypes.h>
#include <string.h>

int embd_plan_runs(const embd_ids *ids, uint64_t rows, int zero_rows, embd_run *runs, size_t *nruns, embd_err *e)
{
	size_t k = 0;
	uint64_t start = 0, count = 0;
	for (size_t i = 0; i < ids->n; i++) {
		int64_t id = embd_ids_at(ids, i);
		if (id == -1 && zero_rows) {
			if (count != 0 && start == EMBD_RUN_ZERO) {
				count++;
				continue;
			}
			if (count != 0) {
				if (runs != NULL)
					runs[k] = (embd_run){start, count};
				k++;
			}
			start = EMBD_RUN_ZERO;
			count = 1;
			continue;
		}
		if (id < 0)
			return embd_err_set(e, EMBD_EBADID,
			                    "id %" PRId64 " at position %zu is negative; ids count from 0", id, i);
		if ((uint64_t)id >= rows)
			return embd_err_set(e, EMBD_ERANGE, "id %" PRId64 " is out of range [0, %" PRIu64 ")", id,
			                    rows);
		if (count != 0 && start != EMBD_RUN_ZERO && (uint64_t)id == start + count) {
			count++;
			continue;
		}
		if (count != 0) {
			if (runs != NULL)
				runs[k] = (embd_run){start, count};
			k++;
		}
		start = (uint64_t)id;
		count = 1;
	}
	if (count != 0) {
		if (runs != NULL)
			runs[k] = (embd_run){start, count};
		k++;
	}
	*nruns = k;
	return 0;
}

int embd_plan_has_zero(const embd_run *runs, size_t nruns)
{
	for (size_t i = 0; i < nruns; i++)
		if (runs[i].start == EMBD_RUN_ZERO)
			return 1;
	return 0;
}

uint64_t embd_plan_rows(const embd_run *runs, size_t nruns)
{
	uint64_t n = 0;
	for (size_t i = 0; i < nruns; i++)
		n += runs[i].count;
	return n;
}

embd_path embd_plan_choose(const embd_plan_cfg *cfg, size_t nruns, uint64_t nrows, size_t row_bytes, int transform)
{
	if (transform)
		return EMBD_PATH_GATHER;
	if (nruns <= 1)
		return EMBD_PATH_ZEROCOPY;
	if (nruns > cfg->iov_max_segments)
		return EMBD_PATH_GATHER;
	uint64_t mean = nrows * row_bytes / nruns;
	return mean >= cfg->iov_min_run_bytes ? EMBD_PATH_ZEROCOPY : EMBD_PATH_GATHER;
}

void embd_plan_gather(const embd_matrix_info *m, const embd_run *runs, size_t nruns, void *dst)
{
	unsigned char *d = dst;
	for (size_t i = 0; i < nruns; i++) {
		size_t n = (size_t)runs[i].count * m->row_bytes;
		if (runs[i].start == EMBD_RUN_ZERO)
			memset(d, 0, n);
		else
			memcpy(d, m->data + runs[i].start * m->row_bytes, n);
		d += n;
	}
}

const char *embd_path_name(embd_path p)
{
	return p == EMBD_PATH_ZEROCOPY ? "zero-copy" : "gather";
}
