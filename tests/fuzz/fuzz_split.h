/*
 * fuzz_split.h: fuzzer-chosen split points, shared by the fuzz targets.
 * A tiny PRNG seeded from the input picks chunk sizes 1..max, so one input
 * exercises whole, byte-by-byte and ragged feeding.
 */
#ifndef MXGATE_FUZZ_SPLIT_H
#define MXGATE_FUZZ_SPLIT_H

#include <stddef.h>
#include <stdint.h>

struct fz_split {
	uint32_t state;
	size_t	max;		/* 0: whole input in one feed */
};

static inline void
fz_split_init(struct fz_split *s, uint32_t seed, size_t max)
{
	s->state = seed * 2654435761u + 1;
	s->max = max;
}

/* The next chunk length, at most left. */
static inline size_t
fz_split_next(struct fz_split *s, size_t left)
{
	size_t n;

	if (s->max == 0)
		return left;
	s->state = s->state * 1103515245u + 12345u;
	n = 1 + (s->state >> 16) % s->max;
	return n < left ? n : left;
}

#define FZ_CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#endif
