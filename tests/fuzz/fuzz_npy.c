/* libFuzzer target: .npy headers of matrix files and of id bodies, and what the planner does with the ids. */
#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "npy.h"
#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	embd_npy h;
	embd_err e;
	if (embd_npy_parse(data, size, &h, &e) == 0) {
		uint64_t n;
		(void)embd_npy_count(&h, &n);
	}
	embd_ids ids;
	if (embd_ids_from_npy(data, size, &ids, &e) == 0) {
		size_t nruns;
		if (embd_plan_runs(&ids, 1000, 0, NULL, &nruns, &e) == 0 && nruns <= 4096) {
			embd_run runs[4096];
			embd_plan_runs(&ids, 1000, 0, runs, &nruns, &e);
		}
	}
	return 0;
}
