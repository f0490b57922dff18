/* Loading the configured matrix as a generation; hot reload on the one reload thread. */
#include "reload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "server.h"

int embd_spec_from_config(const embd_config *cfg, embd_matrix_spec *spec, char *msg, size_t cap)
{
	memset(spec, 0, sizeof *spec);
	spec->path = cfg->matrix_path;
	spec->tensor = cfg->matrix_tensor;
	spec->vocab = cfg->matrix_vocab;
	if (embd_format_parse(cfg->matrix_format, &spec->format) != 0) {
		char names[128];
		embd_format_names(names, sizeof names);
		snprintf(msg, cap, "matrix.format: '%s' is not one of %s", cfg->matrix_format, names);
		return -1;
	}
	/* Empty: not given (a raw file's rows are then f32); given, it must apply (embd_matrix_open checks). */
	spec->dtype_given = cfg->matrix_dtype[0] != '\0';
	if (spec->dtype_given && embd_dtype_parse(cfg->matrix_dtype, &spec->dtype) != 0) {
		snprintf(msg, cap, "matrix.dtype: '%s' is not f32, f16 or bf16", cfg->matrix_dtype);
		return -1;
	}
	if (embd_advice_parse(cfg->matrix_advice, &spec->advice) != 0) {
		snprintf(msg, cap, "matrix.advice: '%s' is not normal, random, willneed or sequential",
		         cfg->matrix_advice);
		return -1;
	}
	if (spec->format == EMBD_FORMAT_RAW && cfg->matrix_dim == 0) {
		snprintf(msg, cap, "matrix.format raw needs matrix.dim (--dim N)");
		return -1;
	}
	spec->rows = (uint64_t)cfg->matrix_rows;
	spec->dim = (uint64_t)cfg->matrix_dim;
	spec->offset = (uint64_t)cfg->matrix_offset;
	spec->populate = cfg->matrix_populate;
	spec->lock = cfg->matrix_mlock;
	return 0;
}

static void finish(embd_reload_job *j, int rc, int err, uint64_t generation, const char *msg)
{
	j->rc = rc;
	j->err = err;
	j->generation = generation;
	snprintf(j->msg, sizeof j->msg, "%s", msg);
	j->done(j);
}

/* dst = src, with copies of src's strings in dst's own arrays (they fit: the request and config checked). */
static void load_spec_set(embd_load_spec *dst, const embd_matrix_spec *src)
{
	const char *path = src->path != NULL ? src->path : "";
	const char *tensor = src->tensor != NULL ? src->tensor : "";
	const char *vocab = src->vocab != NULL ? src->vocab : "";
	/* Copied first: src's strings may be dst's own (a SIGHUP reloads the last spec as it was). */
	char p[sizeof dst->path], t[sizeof dst->tensor], v[sizeof dst->vocab];
	snprintf(p, sizeof p, "%s", path);
	snprintf(t, sizeof t, "%s", tensor);
	snprintf(v, sizeof v, "%s", vocab);
	dst->m = *src;
	memcpy(dst->path, p, sizeof p);
	memcpy(dst->tensor, t, sizeof t);
	memcpy(dst->vocab, v, sizeof v);
	dst->m.path = dst->path;
	dst->m.tensor = dst->tensor;
	dst->m.vocab = dst->vocab;
}

/*
 * The spec of this load, built afresh into rl->next: with a job's path, from
 * the configuration (how to map: populate, mlock, advice) and the request
 * (what the file is), so that nothing of the last file carries over to a new
 * one; without one, the last load's spec, with the request's tensor or
 * vocabulary if it named them. The configuration is only read: it is never
 * edited while serving.
 */
static int next_spec(embd_reloader *rl, const embd_reload_job *j, char *msg, size_t cap)
{
	embd_matrix_spec m = rl->last.m;
	if (j != NULL && j->path != NULL) {
		if (embd_spec_from_config(&rl->srv->cfg, &m, msg, cap) != 0)
			return -1;
		m.path = j->path;
		m.format = j->format;
		m.rows = j->rows;
		m.dim = j->dim;
		m.dtype = j->dtype;
		m.dtype_given = j->dim != 0; /* the request gives dim and dtype together or neither */
		m.offset = j->offset;
		m.tensor = "";
		m.vocab = "";
	}
	if (j != NULL && j->tensor != NULL)
		m.tensor = j->tensor;
	/* vocab=none: no vocabulary file (an empty vocab= is refused by the route). */
	if (j != NULL && j->vocab != NULL)
		m.vocab = strcmp(j->vocab, "none") == 0 ? "" : j->vocab;
	load_spec_set(&rl->next, &m);
	return 0;
}

/*
 * Bounding the generations alive (design §7). A generation lives while a
 * request pins it, so slow readers across reloads could keep any number of
 * whole tables alive. A reload first makes room for the generation it will
 * open, on this thread (never a request thread or the main one): while
 * limits.generations are alive, it waits up to limits.generation_drain_s for
 * the oldest one's readers, then closes their connections (the connection
 * slots record which generation each request holds) and waits a moment for
 * their requests to end. It is never refused for it: a generation still held
 * after that (by a request no connection of which could be closed) is logged
 * and the reload goes on.
 */

/* How long the readers of a generation whose connections were closed get to let it go. */
#define GONE_NS 2000000000u

/* Sleep up to ns on rl->wake (rl->lock held, dropped meanwhile): -1 if the reloader is stopping. */
static int nap(embd_reloader *rl, uint64_t ns)
{
	uint64_t end_ns = embd_now_ns() + ns;
	struct timespec end = {(time_t)(end_ns / 1000000000u), (long)(end_ns % 1000000000u)};
	if (!rl->stopping)
		pthread_cond_timedwait(&rl->wake, &rl->lock, &end);
	return rl->stopping ? -1 : 0;
}

/* The oldest live generation: 0 and its number and references, or -1 if none. */
static int oldest(embd_gen_list *list, embd_gen_stat *st)
{
	return embd_gen_list_stats(list, st, 1) != 0 ? 0 : -1;
}

/* Make room for one more generation (rl->lock held on entry and on return). 0, or -1 if stopping. */
static int make_room(embd_reloader *rl)
{
	embd_server *s = rl->srv;
	embd_gen_list *list = &s->metrics.generations_live;
	const long limit = (long)s->cfg.generations;
	const uint64_t drain_ns = (uint64_t)s->cfg.generation_drain_s * 1000000000u;
	embd_gen_stat st;
	while (embd_gen_list_live(list) >= limit && oldest(list, &st) == 0) {
		uint64_t gen = st.number;
		if (gen == atomic_load(&s->metrics.generation))
			return 0; /* only the current one: nothing to drain */
		embd_log(EMBD_LOG_NOTICE,
		         "reload: %ld generations alive (limits.generations %ld): waiting up to %" PRId64
		         " s for the %ld reader(s) of generation %" PRIu64,
		         embd_gen_list_live(list), limit, s->cfg.generation_drain_s, st.refs, gen);
		uint64_t end = embd_now_ns() + drain_ns;
		int held;
		while ((held = embd_gen_list_live(list) >= limit && oldest(list, &st) == 0 && st.number == gen) &&
		       embd_now_ns() < end)
			if (nap(rl, 20000000u) != 0)
				return -1;
		if (!held)
			continue;
		unsigned n = embd_conns_cut_generation(&s->conns, gen, &s->metrics.rejected[REJ_GENERATIONS]);
		embd_log(EMBD_LOG_WARN,
		         "reload: generation %" PRIu64
		         " still had %ld reader(s) after limits.generation_drain_s (%" PRId64
		         " s): closed %u connection(s)",
		         gen, st.refs, s->cfg.generation_drain_s, n);
		end = embd_now_ns() + GONE_NS;
		while ((held = oldest(list, &st) == 0 && st.number == gen) && embd_now_ns() < end)
			if (nap(rl, 10000000u) != 0)
				return -1;
		if (held) {
			embd_log(EMBD_LOG_WARN,
			         "reload: generation %" PRIu64
			         " is still held (%ld reference(s)) after its connections were "
			         "closed; loading anyway",
			         gen, st.refs);
			return 0;
		}
	}
	return 0;
}

/*
 * One load, on the reload thread with rl->lock held on entry and on return;
 * the lock is dropped while the file opens. A job's strings are copied first
 * (next_spec): once stop has answered the job, its request may be gone.
 */
static void load(embd_reloader *rl, embd_reload_job *j)
{
	if (make_room(rl) != 0) {
		if (j != NULL)
			finish(j, -1, EMBD_ERELOAD, 0, "the server is shutting down; this reload did not run");
		return;
	}
	embd_server *s = rl->srv;
	char msg[600];
	embd_gen *g = NULL;
	int err = EMBD_ERELOAD;
	int new_file = j != NULL && j->path != NULL;
	/*
	 * A new path whose request says nothing of a vocabulary, while the
	 * table served has words (from a vocabulary file, or its file's own, as
	 * GloVe and word2vec text carry them): the choice is the client's (the table's own
	 * words, another file, or none), not one to make silently by dropping
	 * the words in use. Read here: only this thread writes rl->last.
	 */
	int vocab_unsaid = new_file && j->vocab == NULL;
	char vocab_in_use[sizeof rl->last.vocab], file_in_use[sizeof rl->last.path];
	snprintf(vocab_in_use, sizeof vocab_in_use, "%s", rl->last.vocab);
	snprintf(file_in_use, sizeof file_in_use, "%s", rl->last.path);
	int rc = next_spec(rl, j, msg, sizeof msg);
	uint64_t t0 = embd_now_ns();
	if (rc == 0) {
		/*
		 * Similarity is in use when the serving generation has its norms: the
		 * new one gets them too, before it serves, so that no request waits
		 * for them after the swap (the old one serves meanwhile). Asked now,
		 * with the lock held: once the lock is dropped, a stop may abandon
		 * this load and tear the current generation down.
		 */
		embd_gen *cur = embd_gen_current_acquire(&s->current);
		int want_norms = embd_gen_norms_bytes(cur) != 0;
		vocab_unsaid = vocab_unsaid && embd_gen_vocab(cur) != NULL;
		embd_gen_release(cur);
		rl->current = j;
		rl->loading = 1;
		pthread_mutex_unlock(&rl->lock);
		const char *path = rl->next.path;
		embd_log(EMBD_LOG_NOTICE, "reload: opening %s", path[0] != '\0' ? path : "the demo matrix");
		embd_err e;
		rc = embd_gen_open(&rl->next.m, rl->generation + 1, &s->metrics.generations_live, &g, &e);
		if (rc == 0 && vocab_unsaid && embd_gen_vocab(g) == NULL) {
			embd_gen_release(g);
			g = NULL;
			rc = EMBD_EBADPARAM;
			char now[600];
			if (vocab_in_use[0] != '\0')
				snprintf(now, sizeof now, "is named by the vocabulary file %.200s", vocab_in_use);
			else
				snprintf(now, sizeof now, "has the words of its own file %.200s", file_in_use);
			embd_err_set(
			    &e, rc,
			    "%.200s carries no words, and the table served now %s: say which vocabulary the new "
			    "table has, vocab=FILE (a token-per-line file) or vocab=none (no vocabulary; token "
			    "queries then answer 400 no_vocabulary)",
			    path, now);
		}
		const float *norms;
		embd_err ne;
		if (rc == 0 && want_norms && embd_gen_norms(g, &norms, &ne) != 0)
			embd_log(EMBD_LOG_WARN, "reload: %s; they will be computed on first use", ne.msg);
		pthread_mutex_lock(&rl->lock);
		rl->loading = 0;
		pthread_cond_broadcast(&rl->idle);
		if (rl->abandoned) { /* stop gave up on us and answered j; the server may be torn down */
			embd_gen_release(g);
			return;
		}
		j = rl->current;
		rl->current = NULL;
		if (rc == EMBD_EBADPARAM) {
			err = rc; /* the request's to fix: 400 */
			snprintf(msg, sizeof msg, "%s", e.msg);
		} else if (rc == EMBD_EUNKNOWNFORMAT && new_file) {
			/* The request named a file and not what it is: say which parameters would. */
			err = rc;
			snprintf(
			    msg, sizeof msg,
			    "%.200s: unknown format: no npy or safetensors header, not GloVe or word2vec text, no "
			    "known extension; a raw matrix needs its shape with the path (dim=N&dtype=f32|f16|bf16, "
			    "and offset= or rows= when needed), or name the format with format=",
			    path);
		} else if (rc != 0) {
			if (rc == EMBD_ENOTAPPLICABLE) /* the request named what the file does not use: its fault */
				err = rc;
			snprintf(msg, sizeof msg, "%s", e.msg);
		}
		if (rc != 0)
			rc = -1;
	}
	if (rc == 0) {
		const embd_matrix_info *i = embd_gen_matrix(g);
		rl->generation = embd_gen_number(g);
		/* The next SIGHUP reloads what was loaded last, as it was loaded. */
		load_spec_set(&rl->last, &rl->next.m);
		char words[32] = "none";
		if (embd_gen_vocab(g) != NULL)
			snprintf(words, sizeof words, "%" PRIu64 " tokens", embd_vocab_size(embd_gen_vocab(g)));
		snprintf(msg, sizeof msg,
		         "generation %" PRIu64 ": %s (%" PRIu64 " x %" PRIu64
		         " %s, %s) loaded in %.3f ms; vocabulary: %s",
		         rl->generation, i->source, i->rows, i->dim, embd_dtype_name(i->dtype),
		         embd_format_name(i->format), (double)(embd_now_ns() - t0) / 1e6, words);
		embd_gen_current_swap(&s->current, g);
		atomic_store(&s->metrics.generation, rl->generation);
	}
	atomic_fetch_add(&s->metrics.reloads[rc == 0 ? 0 : 1], 1);
	embd_log(rc == 0 ? EMBD_LOG_NOTICE : EMBD_LOG_ERROR, "reload %s: %s",
	         rc == 0 ? "done" : "failed, still serving the current generation", msg);
	if (j != NULL)
		finish(j, rc, rc == 0 ? 0 : err, rl->generation, msg);
}

static void *run(void *arg)
{
	embd_reloader *rl = arg;
	pthread_mutex_lock(&rl->lock);
	for (;;) {
		while (!rl->stopping && rl->head == NULL && !rl->signal_pending)
			pthread_cond_wait(&rl->wake, &rl->lock);
		if (rl->stopping)
			break;
		/* Clients waiting first; a SIGHUP reload has no one waiting for it. */
		embd_reload_job *j = rl->head;
		if (j != NULL) {
			rl->head = j->next;
			if (rl->head == NULL)
				rl->tail = NULL;
		} else {
			rl->signal_pending = 0;
		}
		load(rl, j);
		if (rl->abandoned)
			break;
	}
	pthread_mutex_unlock(&rl->lock);
	return NULL;
}

int embd_reloader_start(embd_reloader *rl, embd_server *s, uint64_t generation, const embd_matrix_spec *spec)
{
	memset(rl, 0, sizeof *rl);
	rl->srv = s;
	rl->generation = generation;
	load_spec_set(&rl->last, spec);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* embd_now_ns's clock, for stop's deadline */
	pthread_mutex_init(&rl->lock, NULL);
	pthread_cond_init(&rl->wake, &ca); /* and for the waits of make_room */
	pthread_cond_init(&rl->idle, &ca);
	pthread_condattr_destroy(&ca);
	int err = pthread_create(&rl->thread, NULL, run, rl);
	if (err != 0) {
		pthread_cond_destroy(&rl->idle);
		pthread_cond_destroy(&rl->wake);
		pthread_mutex_destroy(&rl->lock);
		return err;
	}
	rl->started = 1;
	return 0;
}

void embd_reloader_signal(embd_reloader *rl)
{
	pthread_mutex_lock(&rl->lock);
	if (!rl->stopping) {
		rl->signal_pending = 1;
		pthread_cond_signal(&rl->wake);
	}
	pthread_mutex_unlock(&rl->lock);
}

int embd_reloader_submit(embd_reloader *rl, embd_reload_job *j)
{
	pthread_mutex_lock(&rl->lock);
	int rc = rl->stopping ? -1 : 0;
	if (rc == 0) {
		j->next = NULL;
		if (rl->tail != NULL)
			rl->tail->next = j;
		else
			rl->head = j;
		rl->tail = j;
		pthread_cond_signal(&rl->wake);
	}
	pthread_mutex_unlock(&rl->lock);
	return rc;
}

int embd_reloader_stop(embd_reloader *rl, uint64_t end_ns)
{
	if (!rl->started)
		return 0;
	pthread_mutex_lock(&rl->lock);
	rl->stopping = 1;
	rl->signal_pending = 0;
	pthread_cond_signal(&rl->wake);
	while (rl->head != NULL) {
		embd_reload_job *j = rl->head;
		rl->head = j->next;
		finish(j, -1, EMBD_ERELOAD, 0, "the server is shutting down; this reload did not run");
	}
	rl->tail = NULL;
	struct timespec end = {(time_t)(end_ns / 1000000000u), (long)(end_ns % 1000000000u)};
	while (rl->loading && pthread_cond_timedwait(&rl->idle, &rl->lock, &end) != ETIMEDOUT)
		;
	int abandoned = rl->loading;
	if (abandoned) {
		rl->abandoned = 1;
		if (rl->current != NULL)
			finish(rl->current, -1, EMBD_ERELOAD, 0,
			       "the server stopped (limits.shutdown_s passed) while this reload was still opening its "
			       "file");
		rl->current = NULL;
	}
	pthread_mutex_unlock(&rl->lock);
	rl->started = 0;
	if (abandoned) {
		/* The thread still needs the lock when its open returns: it is never destroyed. */
		pthread_detach(rl->thread);
		return -1;
	}
	pthread_join(rl->thread, NULL);
	pthread_cond_destroy(&rl->idle);
	pthread_cond_destroy(&rl->wake);
	pthread_mutex_destroy(&rl->lock);
	return 0;
}
