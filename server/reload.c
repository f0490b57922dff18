/* Loading the configured matrix as a generation; hot reload. */
#include "reload.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "server.h"

int embd_spec_from_config(const embd_config *cfg, embd_matrix_spec *spec, char *msg, size_t cap)
{
	memset(spec, 0, sizeof *spec);
	spec->path = cfg->matrix_path;
	if (embd_format_parse(cfg->matrix_format, &spec->format) != 0) {
		char names[128];
		embd_format_names(names, sizeof names);
		snprintf(msg, cap, "matrix.format: '%s' is not one of %s", cfg->matrix_format, names);
		return -1;
	}
	if (embd_dtype_parse(cfg->matrix_dtype, &spec->dtype) != 0) {
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

int embd_server_reload(embd_server *s, const char *path, uint64_t *generation, char *msg, size_t cap)
{
	pthread_mutex_lock(&s->reload_lock);
	embd_matrix_spec spec;
	int rc = embd_spec_from_config(&s->cfg, &spec, msg, cap);
	if (rc == 0) {
		if (path != NULL)
			spec.path = path;
		uint64_t number = s->generation + 1;
		embd_gen *g;
		embd_err e;
		uint64_t t0 = embd_now_ns();
		if (embd_gen_open(&spec, number, &s->metrics.generations_live, &g, &e) != 0) {
			snprintf(msg, cap, "%s", e.msg);
			rc = -1;
		} else {
			const embd_matrix_info *i = embd_gen_matrix(g);
			if (path != NULL && path != s->cfg.matrix_path)
				snprintf(s->cfg.matrix_path, sizeof s->cfg.matrix_path, "%s", path);
			s->generation = number;
			*generation = number;
			snprintf(msg, cap,
			         "generation %" PRIu64 ": %s (%" PRIu64 " x %" PRIu64 " %s) loaded in %.3f ms", number,
			         i->source, i->rows, i->dim, embd_dtype_name(i->dtype),
			         (double)(embd_now_ns() - t0) / 1e6);
			embd_gen_current_swap(&s->current, g);
			atomic_store(&s->metrics.generation, number);
		}
	}
	atomic_fetch_add(&s->metrics.reloads[rc == 0 ? 0 : 1], 1);
	pthread_mutex_unlock(&s->reload_lock);
	embd_log(rc == 0 ? EMBD_LOG_NOTICE : EMBD_LOG_ERROR, "reload %s: %s",
	         rc == 0 ? "done" : "failed, still serving the current generation", msg);
	return rc;
}
