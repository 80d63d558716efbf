/* The broker's hot path in C: tables, queue, LRU and the per-message loop of hotpath.py.
 *
 * hotpath.py is the specification; every rule here is a rule there. This file holds no
 * Python objects: _hotpath.pyx wraps it, converts what the broker must see into Python
 * objects, and owns the sockets (pyzmq's; only their handles are used here).
 *
 * libzmq is not linked: hp_load() finds the functions in the copy pyzmq has loaded
 * (dlopen with RTLD_NOLOAD, so a second copy can never be mapped), and zmq_msg_t is
 * declared by its ABI (64 bytes, pointer-aligned, the same in every libzmq 4.x).
 */
#ifndef ENGINE_HOTPATH_CORE_H
#define ENGINE_HOTPATH_CORE_H

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct hp_msg_t { unsigned char _[64]; } __attribute__((aligned(sizeof(void *)))) hp_msg_t;

#define HP_DONTWAIT 1
#define HP_SNDMORE 2
#define HP_POLLIN 1

typedef struct { void *socket; int fd; short events; short revents; } hp_pollitem_t;  /* zmq_pollitem_t (POSIX) */

static int (*hp_msg_init)(hp_msg_t *);
static int (*hp_msg_recv)(hp_msg_t *, void *, int);
static int (*hp_msg_send)(hp_msg_t *, void *, int);
static int (*hp_msg_close)(hp_msg_t *);
static int (*hp_msg_copy)(hp_msg_t *, hp_msg_t *);
static int (*hp_msg_move)(hp_msg_t *, hp_msg_t *);
static int (*hp_msg_more)(const hp_msg_t *);
static void *(*hp_msg_data)(hp_msg_t *);
static size_t (*hp_msg_size)(const hp_msg_t *);
static int (*hp_zsend)(void *, const void *, size_t, int);
static int (*hp_errno)(void);
static void (*hp_version)(int *, int *, int *);
static int (*hp_poll)(hp_pollitem_t *, int, long);
static char hp_error[512];

static int hp_load(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!h) {
        snprintf(hp_error, sizeof hp_error, "%s is not loaded in this process: %s", path, dlerror());
        return -1;
    }
#define HP_SYM(var, name) \
    if (!(*(void **)(&var) = dlsym(h, name))) { snprintf(hp_error, sizeof hp_error, "%s lacks %s", path, name); return -1; }
    HP_SYM(hp_msg_init, "zmq_msg_init") HP_SYM(hp_msg_recv, "zmq_msg_recv") HP_SYM(hp_msg_send, "zmq_msg_send")
    HP_SYM(hp_msg_close, "zmq_msg_close") HP_SYM(hp_msg_copy, "zmq_msg_copy") HP_SYM(hp_msg_move, "zmq_msg_move")
    HP_SYM(hp_msg_more, "zmq_msg_more") HP_SYM(hp_msg_data, "zmq_msg_data") HP_SYM(hp_msg_size, "zmq_msg_size")
    HP_SYM(hp_zsend, "zmq_send") HP_SYM(hp_errno, "zmq_errno") HP_SYM(hp_version, "zmq_version") HP_SYM(hp_poll, "zmq_poll")
#undef HP_SYM
    int major = 0, minor = 0, patch = 0;
    hp_version(&major, &minor, &patch);
    if (major != 4) {
        snprintf(hp_error, sizeof hp_error, "libzmq %d.%d.%d: this build knows the 4.x ABI only", major, minor, patch);
        return -1;
    }
    return 0;
}

static double hp_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* what Python's time.monotonic() reads */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t hp_hash(const unsigned char *p, size_t n, uint32_t h) {
    while (n--) h = (h ^ *p++) * 16777619u;
    return h;
}

/* Room for one more element in a growable array of ``elem``-byte items (doubling from 64). */
static int hp_grow(void **p, int *cap, int used, size_t elem) {
    if (used < *cap) return 0;
    int n = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, elem * (size_t)n);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* ---- a map from byte strings to ints: chained, entries in a pool ---------------------- */
typedef struct { unsigned char *key; uint32_t klen, hash; int32_t val, next; } hp_entry;
typedef struct { int32_t *buckets; uint32_t nb; hp_entry *e; int32_t cap, top, freel, count; } hp_map;

static int hp_map_init(hp_map *m) {
    memset(m, 0, sizeof *m);
    m->nb = 64;
    m->buckets = malloc(sizeof(int32_t) * m->nb);
    if (!m->buckets) return -1;
    for (uint32_t i = 0; i < m->nb; i++) m->buckets[i] = -1;
    m->freel = -1;
    return 0;
}
static void hp_map_clear(hp_map *m) {
    for (int32_t i = 0; i < m->top; i++) free(m->e[i].key);
    m->top = 0; m->count = 0; m->freel = -1;
    for (uint32_t i = 0; i < m->nb; i++) m->buckets[i] = -1;
}
static void hp_map_free(hp_map *m) {
    hp_map_clear(m);
    free(m->buckets); free(m->e);
    memset(m, 0, sizeof *m);
}
static int32_t hp_map_find(const hp_map *m, const unsigned char *k, size_t n, uint32_t h) {
    for (int32_t i = m->buckets[h & (m->nb - 1)]; i >= 0; i = m->e[i].next)
        if (m->e[i].hash == h && m->e[i].klen == n && memcmp(m->e[i].key, k, n) == 0) return i;
    return -1;
}
static int hp_map_get(const hp_map *m, const void *k, size_t n, int32_t *val) {
    int32_t i = hp_map_find(m, k, n, hp_hash(k, n, 2166136261u));
    if (i < 0) return 0;
    *val = m->e[i].val;
    return 1;
}
static int hp_map_grow(hp_map *m) {
    uint32_t nb = m->nb * 2;
    int32_t *b = malloc(sizeof(int32_t) * nb);
    if (!b) return -1;
    for (uint32_t i = 0; i < nb; i++) b[i] = -1;
    for (int32_t i = 0; i < m->top; i++) {
        if (!m->e[i].key) continue;
        uint32_t s = m->e[i].hash & (nb - 1);
        m->e[i].next = b[s];
        b[s] = i;
    }
    free(m->buckets);
    m->buckets = b; m->nb = nb;
    return 0;
}
static int hp_map_put(hp_map *m, const void *k, size_t n, int32_t val) {
    uint32_t h = hp_hash(k, n, 2166136261u);
    int32_t i = hp_map_find(m, k, n, h);
    if (i >= 0) { m->e[i].val = val; return 0; }
    if ((uint32_t)m->count >= m->nb && hp_map_grow(m)) return -1;
    if (m->freel >= 0) { i = m->freel; m->freel = m->e[i].next; }
    else {
        if (m->top == m->cap) {
            int32_t cap = m->cap ? m->cap * 2 : 64;
            hp_entry *e = realloc(m->e, sizeof(hp_entry) * cap);
            if (!e) return -1;
            m->e = e; m->cap = cap;
        }
        i = m->top++;
    }
    m->e[i].key = malloc(n ? n : 1);
    if (!m->e[i].key) return -1;
    memcpy(m->e[i].key, k, n);
    m->e[i].klen = (uint32_t)n; m->e[i].hash = h; m->e[i].val = val;
    uint32_t s = h & (m->nb - 1);
    m->e[i].next = m->buckets[s];
    m->buckets[s] = i;
    m->count++;
    return 0;
}
static void hp_map_del(hp_map *m, const void *k, size_t n) {
    uint32_t h = hp_hash(k, n, 2166136261u);
    for (int32_t *link = &m->buckets[h & (m->nb - 1)]; *link >= 0; link = &m->e[*link].next) {
        int32_t i = *link;
        if (m->e[i].hash == h && m->e[i].klen == n && memcmp(m->e[i].key, k, n) == 0) {
            *link = m->e[i].next;
            free(m->e[i].key);
            m->e[i].key = NULL;
            m->e[i].next = m->freel;
            m->freel = i;
            m->count--;
            return;
        }
    }
}

/* ---- msgpack: read (strict, as the broker's decode is) and write --------------------- */
typedef struct { const unsigned char *p, *end; } hp_rd;
static int hp_need(hp_rd *r, size_t n) { return (size_t)(r->end - r->p) >= n; }
static uint64_t hp_be(const unsigned char *p, int n) { uint64_t v = 0; for (int i = 0; i < n; i++) v = (v << 8) | p[i]; return v; }
static int hp_skip(hp_rd *r, int depth);
static int hp_skipn(hp_rd *r, size_t n) { if (!hp_need(r, n)) return -1; r->p += n; return 0; }
static int hp_is_key(unsigned c) {  /* str or bin: what strict_map_key accepts */
    return (c & 0xe0) == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb || c == 0xc4 || c == 0xc5 || c == 0xc6;
}
static int hp_skip_map(hp_rd *r, uint64_t n, int depth) {
    while (n--) {
        if (!hp_need(r, 1) || !hp_is_key(*r->p) || hp_skip(r, depth + 1) || hp_skip(r, depth + 1)) return -1;
    }
    return 0;
}
static int hp_skip_items(hp_rd *r, uint64_t n, int depth) { while (n--) if (hp_skip(r, depth + 1)) return -1; return 0; }
static int hp_skip(hp_rd *r, int depth) {
    if (depth > 64 || !hp_need(r, 1)) return -1;
    unsigned c = *r->p++;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) return 0;
    if ((c & 0xf0) == 0x80) return hp_skip_map(r, c & 0x0f, depth);
    if ((c & 0xf0) == 0x90) return hp_skip_items(r, c & 0x0f, depth);
    if ((c & 0xe0) == 0xa0) return hp_skipn(r, c & 0x1f);
    switch (c) {
    case 0xc4: case 0xd9: if (!hp_need(r, 1)) return -1; { size_t n = r->p[0]; r->p += 1; return hp_skipn(r, n); }
    case 0xc5: case 0xda: if (!hp_need(r, 2)) return -1; { size_t n = hp_be(r->p, 2); r->p += 2; return hp_skipn(r, n); }
    case 0xc6: case 0xdb: if (!hp_need(r, 4)) return -1; { size_t n = hp_be(r->p, 4); r->p += 4; return hp_skipn(r, n); }
    case 0xc7: if (!hp_need(r, 1)) return -1; { size_t n = r->p[0]; r->p += 1; return hp_skipn(r, n + 1); }
    case 0xc8: if (!hp_need(r, 2)) return -1; { size_t n = hp_be(r->p, 2); r->p += 2; return hp_skipn(r, n + 1); }
    case 0xc9: if (!hp_need(r, 4)) return -1; { size_t n = hp_be(r->p, 4); r->p += 4; return hp_skipn(r, n + 1); }
    case 0xca: return hp_skipn(r, 4); case 0xcb: return hp_skipn(r, 8);
    case 0xcc: case 0xd0: return hp_skipn(r, 1); case 0xcd: case 0xd1: return hp_skipn(r, 2);
    case 0xce: case 0xd2: return hp_skipn(r, 4); case 0xcf: case 0xd3: return hp_skipn(r, 8);
    case 0xd4: return hp_skipn(r, 2); case 0xd5: return hp_skipn(r, 3); case 0xd6: return hp_skipn(r, 5);
    case 0xd7: return hp_skipn(r, 9); case 0xd8: return hp_skipn(r, 17);
    case 0xdc: if (!hp_need(r, 2)) return -1; { uint64_t n = hp_be(r->p, 2); r->p += 2; return hp_skip_items(r, n, depth); }
    case 0xdd: if (!hp_need(r, 4)) return -1; { uint64_t n = hp_be(r->p, 4); r->p += 4; return hp_skip_items(r, n, depth); }
    case 0xde: if (!hp_need(r, 2)) return -1; { uint64_t n = hp_be(r->p, 2); r->p += 2; return hp_skip_map(r, n, depth); }
    case 0xdf: if (!hp_need(r, 4)) return -1; { uint64_t n = hp_be(r->p, 4); r->p += 4; return hp_skip_map(r, n, depth); }
    }
    return -1;  /* 0xc1: never used */
}
/* A str: its bytes. Returns -1 when the next value is not a str. */
static int hp_read_str(hp_rd *r, const unsigned char **s, size_t *n) {
    if (!hp_need(r, 1)) return -1;
    unsigned c = *r->p;
    if ((c & 0xe0) == 0xa0) { *n = c & 0x1f; r->p += 1; }
    else if (c == 0xd9 && hp_need(r, 2)) { *n = r->p[1]; r->p += 2; }
    else if (c == 0xda && hp_need(r, 3)) { *n = hp_be(r->p + 1, 2); r->p += 3; }
    else if (c == 0xdb && hp_need(r, 5)) { *n = hp_be(r->p + 1, 4); r->p += 5; }
    else return -1;
    if (!hp_need(r, *n)) return -1;
    *s = r->p; r->p += *n;
    return 0;
}
/* A non-negative int (any width msgpack-python may use). -1: not one. */
static int hp_read_uint(hp_rd *r, uint64_t *v) {
    if (!hp_need(r, 1)) return -1;
    unsigned c = *r->p;
    if (c <= 0x7f) { *v = c; r->p += 1; return 0; }
    int w = c == 0xcc || c == 0xd0 ? 1 : c == 0xcd || c == 0xd1 ? 2 : c == 0xce || c == 0xd2 ? 4 : c == 0xcf || c == 0xd3 ? 8 : 0;
    if (!w || !hp_need(r, 1 + w)) return -1;
    uint64_t x = hp_be(r->p + 1, w);
    if (c >= 0xd0 && (x >> (8 * w - 1)) & 1) return -1;  /* a negative signed int */
    *v = x; r->p += 1 + w;
    return 0;
}
static int hp_read_map(hp_rd *r, uint64_t *n) {
    if (!hp_need(r, 1)) return -1;
    unsigned c = *r->p;
    if ((c & 0xf0) == 0x80) { *n = c & 0x0f; r->p += 1; return 0; }
    if (c == 0xde && hp_need(r, 3)) { *n = hp_be(r->p + 1, 2); r->p += 3; return 0; }
    if (c == 0xdf && hp_need(r, 5)) { *n = hp_be(r->p + 1, 4); r->p += 5; return 0; }
    return -1;
}

typedef struct { unsigned char *p; size_t len, cap; } hp_buf;
static int hp_reserve(hp_buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p; b->cap = cap;
    return 0;
}
static void hp_put(hp_buf *b, const void *s, size_t n) { memcpy(b->p + b->len, s, n); b->len += n; }
static void hp_put_byte(hp_buf *b, unsigned char c) { b->p[b->len++] = c; }
static void hp_put_be(hp_buf *b, uint64_t v, int n) { for (int i = n - 1; i >= 0; i--) hp_put_byte(b, (unsigned char)(v >> (8 * i))); }
/* As msgpack-python writes a str (use_bin_type=True). Room: n + 5. */
static void hp_put_str(hp_buf *b, const void *s, size_t n) {
    if (n < 32) hp_put_byte(b, 0xa0 | (unsigned char)n);
    else if (n < 256) { hp_put_byte(b, 0xd9); hp_put_byte(b, (unsigned char)n); }
    else if (n < 65536) { hp_put_byte(b, 0xda); hp_put_be(b, n, 2); }
    else { hp_put_byte(b, 0xdb); hp_put_be(b, n, 4); }
    hp_put(b, s, n);
}
static void hp_put_map(hp_buf *b, uint64_t n) {
    if (n < 16) hp_put_byte(b, 0x80 | (unsigned char)n);
    else if (n < 65536) { hp_put_byte(b, 0xde); hp_put_be(b, n, 2); }
    else { hp_put_byte(b, 0xdf); hp_put_be(b, n, 4); }
}
static void hp_put_double(hp_buf *b, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    hp_put_byte(b, 0xcb);
    hp_put_be(b, v, 8);
}
/* "<jid>@<instance>" as a msgpack str: the jid's digits come least significant first. */
static void hp_put_str_jid(hp_buf *b, const char *digits_reversed, int n, const char *suffix, size_t slen) {
    size_t len = (size_t)n + slen;
    if (len < 32) hp_put_byte(b, (unsigned char)(0xa0 | len));
    else { hp_put_byte(b, 0xd9); hp_put_byte(b, (unsigned char)len); }
    for (int i = n - 1; i >= 0; i--) hp_put_byte(b, (unsigned char)digits_reversed[i]);
    hp_put(b, suffix, slen);
}

#endif
