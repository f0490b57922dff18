/* Handlers of the vector operations: /v1/similar, /v1/similarity, /v1/pool (route table: server/routes.c). */
#ifndef EMBD_VECTOR_H
#define EMBD_VECTOR_H

#include "error.h"

struct req;

/* GET /v1/similar?id=|token=&k=&metric=&include_self=, POST /v1/similar (many queries, or an analogy). */
int vector_similar(struct req *r, embd_err *e);
/* POST /v1/similarity: pairs of rows, or two sets (gensim's similarity and n_similarity). */
int vector_similarity(struct req *r, embd_err *e);
/* POST /v1/pool: the mean or (weighted) sum of rows, answered as one row in any row format. */
int vector_pool(struct req *r, embd_err *e);

#endif
