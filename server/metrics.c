/* Prometheus metrics: counters and their text exposition. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const int statuses[METRICS_STATUSES] = {200, 400, 404, 405, 406, 408, 413, 414, 415, 431, 500, 503, 0};
static const char *const reject_names[REJ_COUNT] = {
    "request_bytes", "inflight_bytes", "max_ids",       "max_body_bytes", "request_timeout",   "connections",
    "work",          "compute_queue",  "min_send_rate", "generations",    "connections_per_ip"};
static const double bucket_s[METRICS_BUCKETS - 1] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};

void embd_metrics_init(embd_metrics *m)
{
	memset(m, 0, sizeof *m);
	embd_gen_list_init(&m->generations_live);
}

void embd_metrics_request(embd_metrics *m, enum route_id route, int status, uint64_t duration_ns)
{
	int s = METRICS_STATUSES - 1; /* the "other" slot */
	for (int i = 0; i < METRICS_STATUSES - 1; i++)
		if (statuses[i] == status)
			s = i;
	atomic_fetch_add_explicit(&m->requests[route][s], 1, memory_order_relaxed);
	double secs = (double)duration_ns / 1e9;
	int b = METRICS_BUCKETS - 1;
	for (int i = 0; i < METRICS_BUCKETS - 1; i++) {
		if (secs <= bucket_s[i]) {
			b = i;
			break;
		}
	}
	atomic_fetch_add_explicit(&m->duration_buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->duration_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->duration_sum_ns, duration_ns, memory_order_relaxed);
}

size_t embd_metrics_generations(const embd_metrics *cm, const embd_gen *own, struct metrics_gen *out, size_t cap)
{
	embd_metrics *m = (embd_metrics *)cm;
	embd_gen_stat st[METRICS_GENERATIONS];
	size_t n = embd_gen_list_stats(&m->generations_live, st, METRICS_GENERATIONS);
	uint64_t current = atomic_load(&m->generation);
	for (size_t i = 0; i < n && i < cap && i < METRICS_GENERATIONS; i++) {
		long readers =
		    st[i].refs - (st[i].number == current) - (own != NULL && st[i].number == embd_gen_number(own));
		out[i] = (struct metrics_gen){st[i].number, st[i].bytes, readers > 0 ? readers : 0};
	}
	return n;
}

struct out {
	char *buf;
	size_t cap, len;
	int overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->overflow = 1;
	else
		o->len += (size_t)n;
}

static uint64_t rss_bytes(void)
{
	/* statm: "size resident shared ..." in pages. */
	char line[128] = "";
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		if (fgets(line, sizeof line, f) == NULL)
			line[0] = '\0';
		fclose(f);
	}
	char *end;
	strtoull(line, &end, 10);
	unsigned long long resident = strtoull(end, NULL, 10);
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

size_t embd_metrics_bound(void)
{
	return 16384;
}

size_t embd_metrics_render(const embd_metrics *cm, const embd_budget *budget, const embd_pool *pool,
                           const embd_gen *gen, uint64_t self_bytes, char *buf, size_t cap)
{
	embd_metrics *m = (embd_metrics *)cm;
	struct out o = {buf, cap, 0, 0};
	put(&o, "# HELP embd_requests_total Requests answered, by route and status.\n"
	        "# TYPE embd_requests_total counter\n");
	for (int r = 0; r < R_COUNT; r++) {
		for (int s = 0; s < METRICS_STATUSES; s++) {
			unsigned long long n = atomic_load(&m->requests[r][s]);
			if (n == 0)
				continue;
			if (statuses[s] != 0)
				put(&o, "embd_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
				    embd_route_name((enum route_id)r), statuses[s], n);
			else
				put(&o, "embd_requests_total{route=\"%s\",status=\"other\"} %llu\n",
				    embd_route_name((enum route_id)r), n);
		}
	}
	put(&o, "# HELP embd_request_duration_seconds Time from a request's first byte to its last response byte.\n"
	        "# TYPE embd_request_duration_seconds histogram\n");
	unsigned long long cumulative = 0;
	for (int b = 0; b < METRICS_BUCKETS; b++) {
		cumulative += atomic_load(&m->duration_buckets[b]);
		if (b < METRICS_BUCKETS - 1)
			put(&o, "embd_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bucket_s[b], cumulative);
		else
			put(&o, "embd_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cumulative);
	}
	put(&o, "embd_request_duration_seconds_sum %.9f\n", (double)atomic_load(&m->duration_sum_ns) / 1e9);
	put(&o, "embd_request_duration_seconds_count %llu\n", (unsigned long long)atomic_load(&m->duration_count));
	put(&o,
	    "# HELP embd_zerocopy_bytes_total Response bytes sent straight from the mapped matrix.\n"
	    "# TYPE embd_zerocopy_bytes_total counter\n"
	    "embd_zerocopy_bytes_total %llu\n"
	    "# HELP embd_copied_bytes_total Response bytes written into request buffers (gathered, converted, "
	    "encoded).\n"
	    "# TYPE embd_copied_bytes_total counter\n"
	    "embd_copied_bytes_total %llu\n",
	    (unsigned long long)atomic_load(&m->zerocopy_bytes), (unsigned long long)atomic_load(&m->copied_bytes));
	put(&o,
	    "# HELP embd_inflight_accounted_bytes Bytes charged to requests in flight now (this scrape left out).\n"
	    "# TYPE embd_inflight_accounted_bytes gauge\n"
	    "embd_inflight_accounted_bytes %llu\n"
	    "# HELP embd_accounted_bytes_peak Most bytes ever charged to requests in flight at once.\n"
	    "# TYPE embd_accounted_bytes_peak gauge\n"
	    "embd_accounted_bytes_peak %llu\n"
	    "# HELP embd_inflight_budget_bytes The in-flight budget (limits.inflight_bytes).\n"
	    "# TYPE embd_inflight_budget_bytes gauge\n"
	    "embd_inflight_budget_bytes %llu\n",
	    (unsigned long long)(embd_budget_inflight(budget) - self_bytes),
	    (unsigned long long)embd_budget_peak(budget), (unsigned long long)budget->limit);
	put(&o, "# HELP embd_rejected_total Requests refused for a limit, by the limit.\n"
	        "# TYPE embd_rejected_total counter\n");
	for (int i = 0; i < REJ_COUNT; i++)
		put(&o, "embd_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
		    (unsigned long long)atomic_load(&m->rejected[i]));
	put(&o,
	    "# HELP embd_pool_bytes Bytes of request buffer blocks obtained from malloc and not yet freed, headers "
	    "included: held by requests or idle in the pool (idle at most plan.pool_bytes).\n"
	    "# TYPE embd_pool_bytes gauge\n"
	    "embd_pool_bytes %llu\n"
	    "# HELP embd_reloads_total Matrix reloads (SIGHUP or /v1/admin/reload), by result.\n"
	    "# TYPE embd_reloads_total counter\n"
	    "embd_reloads_total{result=\"ok\"} %llu\n"
	    "embd_reloads_total{result=\"failed\"} %llu\n"
	    "# HELP embd_log_reopen_failures_total SIGUSR1s that could not reopen log.file (the log goes on into the "
	    "old "
	    "file).\n"
	    "# TYPE embd_log_reopen_failures_total counter\n"
	    "embd_log_reopen_failures_total %llu\n"
	    "# HELP embd_connections Open client connections.\n"
	    "# TYPE embd_connections gauge\n"
	    "embd_connections %ld\n"
	    "# HELP embd_generations_live Matrix generations alive (the current one, any pinned by responses, and one "
	    "being loaded), at most limits.generations.\n"
	    "# TYPE embd_generations_live gauge\n"
	    "embd_generations_live %ld\n"
	    "# HELP embd_matrix_generation The current generation's number.\n"
	    "# TYPE embd_matrix_generation gauge\n"
	    "embd_matrix_generation %llu\n"
	    "# HELP process_resident_memory_bytes Resident set size.\n"
	    "# TYPE process_resident_memory_bytes gauge\n"
	    "process_resident_memory_bytes %llu\n",
	    (unsigned long long)atomic_load(&((embd_pool *)pool)->allocated_bytes),
	    (unsigned long long)atomic_load(&m->reloads[0]), (unsigned long long)atomic_load(&m->reloads[1]),
	    (unsigned long long)atomic_load(&m->log_reopen_failures), atomic_load(&m->connections),
	    embd_gen_list_live(&m->generations_live), (unsigned long long)atomic_load(&m->generation),
	    (unsigned long long)rss_bytes());
	struct metrics_gen gens[METRICS_GENERATIONS];
	size_t ngens = embd_metrics_generations(m, gen, gens, METRICS_GENERATIONS);
	put(&o, "# HELP embd_generation_bytes Bytes each live generation holds: its rows (mapped, or parsed into the "
	        "heap), its vocabulary and its row norms.\n"
	        "# TYPE embd_generation_bytes gauge\n");
	for (size_t i = 0; i < ngens && i < METRICS_GENERATIONS; i++)
		put(&o, "embd_generation_bytes{generation=\"%llu\"} %llu\n", (unsigned long long)gens[i].number,
		    (unsigned long long)gens[i].bytes);
	put(&o, "# HELP embd_generation_readers Requests holding each live generation (this scrape left out).\n"
	        "# TYPE embd_generation_readers gauge\n");
	for (size_t i = 0; i < ngens && i < METRICS_GENERATIONS; i++)
		put(&o, "embd_generation_readers{generation=\"%llu\"} %ld\n", (unsigned long long)gens[i].number,
		    gens[i].readers);
	const embd_vocab *v = embd_gen_vocab(gen);
	put(&o,
	    "# HELP embd_matrix_heap_bytes Heap bytes of the current generation's rows (text formats are parsed into "
	    "the heap; mapped files hold 0).\n"
	    "# TYPE embd_matrix_heap_bytes gauge\n"
	    "embd_matrix_heap_bytes %llu\n"
	    "# HELP embd_vocab_tokens Tokens in the current generation's vocabulary (0: none).\n"
	    "# TYPE embd_vocab_tokens gauge\n"
	    "embd_vocab_tokens %llu\n"
	    "# HELP embd_vocab_bytes Heap bytes of the current generation's vocabulary and its hash table.\n"
	    "# TYPE embd_vocab_bytes gauge\n"
	    "embd_vocab_bytes %llu\n"
	    "# HELP embd_norms_bytes Heap bytes of the current generation's row norms (one float per row, computed on "
	    "the first cosine similarity; 0 before).\n"
	    "# TYPE embd_norms_bytes gauge\n"
	    "embd_norms_bytes %llu\n",
	    (unsigned long long)embd_gen_matrix(gen)->heap_bytes,
	    (unsigned long long)(v != NULL ? embd_vocab_size(v) : 0),
	    (unsigned long long)(v != NULL ? embd_vocab_bytes(v) : 0), (unsigned long long)embd_gen_norms_bytes(gen));
	return o.overflow ? 0 : o.len;
}

size_t embd_metrics_render_compute(const embd_compute *cc, char *buf, size_t cap)
{
	embd_compute *c = (embd_compute *)cc;
	struct out o = {buf, cap, 0, 0};
	put(&o,
	    "# HELP embd_compute_threads Threads of the compute pool (vector operations run there, never on the "
	    "request threads).\n"
	    "# TYPE embd_compute_threads gauge\n"
	    "embd_compute_threads %u\n"
	    "# HELP embd_compute_admitted Vector operations admitted and not done (queued or running; at most "
	    "compute.queue).\n"
	    "# TYPE embd_compute_admitted gauge\n"
	    "embd_compute_admitted %zu\n"
	    "# HELP embd_compute_inflight_bytes Bytes the admitted vector operations hold (at most "
	    "compute.inflight_bytes).\n"
	    "# TYPE embd_compute_inflight_bytes gauge\n"
	    "embd_compute_inflight_bytes %llu\n"
	    "# HELP embd_compute_running Parts of vector operations running now.\n"
	    "# TYPE embd_compute_running gauge\n"
	    "embd_compute_running %lu\n"
	    "# HELP embd_compute_done_total Vector operations finished (answered, failed or cancelled).\n"
	    "# TYPE embd_compute_done_total counter\n"
	    "embd_compute_done_total %lu\n"
	    "# HELP embd_compute_busy_seconds_total Time the compute threads spent running parts, summed.\n"
	    "# TYPE embd_compute_busy_seconds_total counter\n"
	    "embd_compute_busy_seconds_total %.6f\n"
	    "# HELP embd_compute_cancelled_total Vector operations stopped between blocks, by why.\n"
	    "# TYPE embd_compute_cancelled_total counter\n"
	    "embd_compute_cancelled_total{reason=\"client_closed\"} %lu\n"
	    "embd_compute_cancelled_total{reason=\"deadline\"} %lu\n"
	    "embd_compute_cancelled_total{reason=\"shutdown\"} %lu\n",
	    embd_compute_threads(c), embd_compute_admitted(c), (unsigned long long)atomic_load(&c->bytes_held),
	    embd_compute_running(c), atomic_load(&c->done_total), (double)atomic_load(&c->busy_ns) / 1e9,
	    atomic_load(&c->cancelled_total[0]), atomic_load(&c->cancelled_total[1]),
	    atomic_load(&c->cancelled_total[2]));
	return o.overflow ? 0 : o.len;
}

size_t embd_metrics_render_turns(const embd_turns *t, char *buf, size_t cap)
{
	struct out o = {buf, cap, 0, 0};
	embd_turns *tt = (embd_turns *)t;
	put(&o,
	    "# HELP embd_large_responses_waited_total Large responses that waited in line for their turn "
	    "(limits.large_responses).\n"
	    "# TYPE embd_large_responses_waited_total counter\n"
	    "embd_large_responses_waited_total %llu\n"
	    "# HELP embd_large_responses_waiting Large responses waiting in line now.\n"
	    "# TYPE embd_large_responses_waiting gauge\n"
	    "embd_large_responses_waiting %u\n",
	    (unsigned long long)atomic_load(&tt->waited), atomic_load(&tt->waiting));
	return o.overflow ? 0 : o.len;
}
