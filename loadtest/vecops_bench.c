/*
 * Micro-benchmark of lib/vecops on a raw matrix file: row norms, and top-10 per query for one query at a time
 * (sgemv) and 64 at once (sgemm), by OpenBLAS threads and block size. Driven by loadtest/vecops_bench.py, which
 * writes the matrix, times NumPy and gensim on the same one and checks the ids agree.
 *
 * vecops_bench FILE ROWS DIM DTYPE IDS_OUT [THREADS [BLOCKS]]   e.g. ... f32 /tmp/ids.txt 1,2 1024,4096
 * Prints one JSON object per measurement; writes the top-10 ids:score of each query word (one line each), then of
 * NANALOGY analogies, to IDS_OUT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acct.h"
#include "matrix.h"
#include "ops.h"
#include "vecops.h"

#define NWORDS   256 /* query words: ids (i * 1999) % rows */
#define K        10
#define NANALOGY 16 /* then analogies over words 3i, 3i + 1, 3i + 2 */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "vecops_bench: %s: %s\n", what, embd_strerror(rc));
	exit(1);
}

/* Parse a comma-separated list of positive integers into v (at most cap); returns the count. */
static int list(const char *s, long *v, int cap)
{
	int n = 0;
	for (char *end; *s && n < cap; s = *end ? end + 1 : end)
		v[n++] = strtol(s, &end, 10);
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: %s FILE ROWS DIM f32|f16|bf16 IDS_OUT [THREADS [BLOCKS]]\n", argv[0]);
		return 2;
	}
	embd_matrix_spec spec = {.path = argv[1],
	                         .format = EMBD_FORMAT_RAW,
	                         .rows = strtoull(argv[2], NULL, 10),
	                         .dim = strtoull(argv[3], NULL, 10),
	                         .populate = 1};
	int rc = embd_dtype_parse(argv[4], &spec.dtype);
	if (rc != 0)
		die("dtype", rc);
	long threads[8] = {1, 2}, blocks[16] = {0};
	int nthreads = argc > 6 ? list(argv[6], threads, 8) : 2;
	int nblocks = argc > 7 ? list(argv[7], blocks, 16) : 1;
	embd_err e;
	embd_matrix *mx;
	if ((rc = embd_matrix_open(&spec, &mx, &e)) != 0) {
		fprintf(stderr, "vecops_bench: %s\n", e.msg);
		return 1;
	}
	const embd_matrix_info *m = embd_matrix_info_get(mx);
	size_t dim = (size_t)m->dim;

	float *norms = malloc(m->rows * sizeof *norms);
	for (int nt = 1; nt <= 2; nt++) {
		double t0 = now();
		embd_vecops_norms_threads(m, norms, nt);
		printf("{\"op\": \"norms\", \"dtype\": \"%s\", \"threads\": %d, \"ms\": %.2f}\n", argv[4], nt,
		       (now() - t0) * 1e3);
	}

	/* The query words' vectors, as gensim's most_similar(word) makes them; each leaves its own word out. */
	float *q = malloc(NWORDS * dim * sizeof *q);
	uint64_t ex[NWORDS];
	size_t off[NWORDS + 1];
	for (int i = 0; i < NWORDS; i++) {
		ex[i] = (uint64_t)i * 1999 % m->rows;
		off[i] = (size_t)i;
		if ((rc = embd_vecops_analogy(m, &ex[i], 1, NULL, 0, q + i * dim, &e)) != 0)
			die("analogy", rc);
	}
	off[NWORDS] = NWORDS;
	embd_hit hits[NWORDS * K];
	size_t counts[NWORDS];
	embd_budget budget;
	embd_budget_init(&budget, 0);
	embd_pool pool;
	embd_pool_init(&pool, 64u << 20);

	for (int ti = 0; ti < nthreads; ti++) {
		embd_ops_set_threads((int)threads[ti]);
		for (int bi = 0; bi < nblocks; bi++) {
			static const size_t batches[] = {1, 64};
			for (int b = 0; b < 2; b++) {
				size_t nq = batches[b];
				/* One warm-up call, then every word once, nq at a time. */
				double t0 = 0;
				for (int rep = -1; rep < NWORDS / (int)nq; rep++) {
					if (rep == 0)
						t0 = now();
					size_t i0 = rep < 0 ? 0 : (size_t)rep * nq;
					embd_acct a;
					embd_acct_init(&a, &budget, &pool, 0);
					embd_topk t = {.queries = q + i0 * dim,
					               .nq = nq,
					               .k = K,
					               .metric = EMBD_METRIC_COSINE,
					               .norms = norms,
					               .exclude = ex + i0,
					               .exclude_off =
					                   off, /* off[i] = i: each query excludes its own word */
					               .block_rows = (size_t)blocks[bi]};
					if ((rc = embd_vecops_topk(m, &t, &a, hits + i0 * K, counts + i0)) != 0)
						die("topk", rc);
					embd_acct_close(&a);
				}
				double per = (now() - t0) / NWORDS;
				printf("{\"op\": \"topk\", \"dtype\": \"%s\", \"nq\": %zu, \"threads\": %ld, "
				       "\"block\": %ld, "
				       "\"ms_per_query\": %.3f}\n",
				       argv[4], nq, threads[ti], blocks[bi], per * 1e3);
				fflush(stdout);
			}
		}
	}
	FILE *f = fopen(argv[5], "w");
	for (int i = 0; i < NWORDS; i++) {
		for (size_t j = 0; j < counts[i]; j++)
			fprintf(f, "%s%llu:%.7g", j ? " " : "", (unsigned long long)hits[i * K + j].id,
			        (double)hits[i * K + j].score);
		fprintf(f, "\n");
	}
	/* Analogies a - b + c over words i, i + 1, i + 2 (gensim: most_similar(positive=[a, c], negative=[b])). */
	for (int i = 0; i < NANALOGY; i++) {
		uint64_t pn[3] = {ex[3 * i], ex[3 * i + 2], ex[3 * i + 1]}; /* positives a, c; the negative b */
		size_t aoff[2] = {0, 3};
		if ((rc = embd_vecops_analogy(m, pn, 2, pn + 2, 1, q, &e)) != 0)
			die("analogy", rc);
		embd_acct a;
		embd_acct_init(&a, &budget, &pool, 0);
		embd_topk t = {.queries = q,
		               .nq = 1,
		               .k = K,
		               .metric = EMBD_METRIC_COSINE,
		               .norms = norms,
		               .exclude = pn,
		               .exclude_off = aoff};
		if ((rc = embd_vecops_topk(m, &t, &a, hits, counts)) != 0)
			die("topk", rc);
		embd_acct_close(&a);
		for (size_t j = 0; j < counts[0]; j++)
			fprintf(f, "%s%llu:%.7g", j ? " " : "", (unsigned long long)hits[j].id, (double)hits[j].score);
		fprintf(f, "\n");
	}
	fclose(f);
	embd_pool_destroy(&pool);
	free(q);
	free(norms);
	embd_matrix_close(mx);
	return 0;
}
