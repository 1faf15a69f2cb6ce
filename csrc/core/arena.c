/* Bump allocator for forward-pass activations. */
#include "core.h"

#include <string.h>

mg_status mg_arena_init(mg_arena *arena, size_t capacity) {
    memset(arena, 0, sizeof *arena);
    arena->base = mg_aligned_alloc(capacity);
    if (!arena->base) return mg_error(MG_ERR_NO_MEMORY, "arena: cannot allocate %zu bytes", capacity);
    arena->capacity = capacity;
    return MG_OK;
}

void mg_arena_destroy(mg_arena *arena) {
    if (!arena) return;
    mg_aligned_free(arena->base);
    memset(arena, 0, sizeof *arena);
}

void *mg_arena_alloc(mg_arena *arena, size_t bytes, size_t alignment) {
    if (alignment == 0) alignment = 64;
    if (alignment & (alignment - 1)) {
        mg_error(MG_ERR_INVALID_ARGUMENT, "arena: alignment %zu is not a power of two", alignment);
        return NULL;
    }
    size_t start = (arena->used + alignment - 1) & ~(alignment - 1);
    size_t end;
    if (start < arena->used || !mg_add_size(start, bytes, &end) || end > arena->capacity) {
        mg_error(MG_ERR_NO_MEMORY, "arena: asked for %zu bytes with %zu of %zu left", bytes,
                 arena->capacity - arena->used, arena->capacity);
        return NULL;
    }
    arena->used = end;
    if (end > arena->high_water) arena->high_water = end;
    return arena->base + start;
}

mg_status mg_arena_tensor(mg_arena *arena, mg_tensor *t, mg_dtype dtype, int n_dims,
                          const int64_t *shape) {
    MG_TRY(mg_tensor_init(t, NULL, dtype, n_dims, shape));
    t->data = mg_arena_alloc(arena, mg_tensor_nbytes(t), 64);
    return t->data ? MG_OK : MG_ERR_NO_MEMORY;
}

size_t mg_arena_mark(const mg_arena *arena) { return arena->used; }

void mg_arena_reset_to(mg_arena *arena, size_t mark) {
    if (mark <= arena->used) arena->used = mark;
}
