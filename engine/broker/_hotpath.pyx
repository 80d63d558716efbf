# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled twin of ``engine/broker/hotpath.py`` (its docstring is the specification).

The loop runs on pyzmq's sockets through their handles (``Socket.underlying``), calling the
libzmq copy pyzmq loaded (found in /proc/self/maps and opened with RTLD_NOLOAD: never a
second copy, see ``_hotpath_core.h``). Tables, queue and LRU are C structures: a task that
takes the hot path creates no Python object in this module, but for the bytes it looks
its client up by. Python objects are made only for what the broker must see (a message it
handles, a task given back, the batch ``collect`` returns).
"""
cimport cython
from libc.stdint cimport uint32_t, uint64_t, int32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memcmp, memset
from libc.math cimport floor
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.buffer cimport PyBuffer_FillInfo

import msgpack
import zmq

from .hotpath import Counts, Taken

cdef extern from "_hotpath_core.h" nogil:
    ctypedef struct hp_msg_t:
        unsigned char bytes_[64]
    int HP_DONTWAIT
    int HP_SNDMORE
    int hp_msg_init(hp_msg_t *)
    int hp_msg_recv(hp_msg_t *, void *, int)
    int hp_msg_send(hp_msg_t *, void *, int)
    int hp_msg_close(hp_msg_t *)
    int hp_msg_copy(hp_msg_t *, hp_msg_t *)
    int hp_msg_move(hp_msg_t *, hp_msg_t *)
    int hp_msg_more(const hp_msg_t *)
    void *hp_msg_data(hp_msg_t *)
    size_t hp_msg_size(const hp_msg_t *)
    int hp_zsend(void *, const void *, size_t, int)
    int hp_errno()
    char hp_error[512]
    int hp_load(const char *path)
    int hp_grow(void **p, int *cap, int used, size_t elem)
    ctypedef struct hp_pollitem_t:
        void *socket
        int fd
        short events
        short revents
    int HP_POLLIN
    int hp_poll(hp_pollitem_t *items, int n, long timeout_ms)
    double hp_now_s()
    uint32_t hp_hash(const unsigned char *p, size_t n, uint32_t h)

    ctypedef struct hp_map:
        int32_t count
    int hp_map_init(hp_map *m)
    void hp_map_clear(hp_map *m)
    void hp_map_free(hp_map *m)
    int hp_map_get(const hp_map *m, const void *k, size_t n, int32_t *val)
    int hp_map_put(hp_map *m, const void *k, size_t n, int32_t val)
    void hp_map_del(hp_map *m, const void *k, size_t n)

    ctypedef struct hp_rd:
        const unsigned char *p
        const unsigned char *end
    int hp_skip(hp_rd *r, int depth)
    int hp_read_str(hp_rd *r, const unsigned char **s, size_t *n)
    int hp_read_uint(hp_rd *r, uint64_t *v)
    int hp_read_map(hp_rd *r, uint64_t *n)
    int hp_is_key(unsigned c)

    ctypedef struct hp_buf:
        unsigned char *p
        size_t len
        size_t cap
    int hp_reserve(hp_buf *b, size_t more)
    void hp_put(hp_buf *b, const void *s, size_t n)
    void hp_put_byte(hp_buf *b, unsigned char c)
    void hp_put_str(hp_buf *b, const void *s, size_t n)
    void hp_put_map(hp_buf *b, uint64_t n)
    void hp_put_double(hp_buf *b, double d)
    void hp_put_str_jid(hp_buf *b, const char *digits_reversed, int n, const char *suffix, size_t slen)

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil

cdef extern from "errno.h":
    int EINTR
    int EAGAIN
    int EHOSTUNREACH

DEF MAXF = 8
DEF DRAIN_BATCH = 512  # the same as broker/config.py's DRAIN_BATCH (a compile-time DEF cannot import it)
DEF MAX_SKIPPED = 64
DEF MAX_TID = 128
DEF MAX_HEADER = 65536
DEF INDEX_BITS = 20
DEF MAX_TASKS = 1 << 20
DEF DEDUP_BUCKETS = 1 << 16
DEF COPY_BELOW = 65536
DEF MAX_POLL = 16
DEF SAMPLES_BEFORE_RETURN = 4096

cdef uint64_t BASE_JID = 1 << 40
cdef unsigned char NO_CACHE_RAW[8]
NO_CACHE_RAW[:] = [0x81, 0xa5, 0x63, 0x61, 0x63, 0x68, 0x65, 0xc2]  # {"cache": False}

compiled = True


cdef struct task_t:
    uint64_t jid
    int used
    int route
    int worker
    unsigned char tid[128]
    int tidlen
    unsigned char *pipe  # the pipeline as its msgpack str, copied from the request
    size_t pipelen
    size_t pipecap
    uint64_t mask
    int cache_off
    int ref  # the payload names a shared-memory segment
    long long qsize  # its payload's bytes while it waits in the queue
    hp_msg_t payload
    double received_s
    double dispatched_s
    double lease_due_s
    int qprev
    int qnext  # also the free list
    int hnext  # the (client, task id) chain
    uint32_t hash

cdef struct route_t:
    unsigned char id[256]
    int idlen
    double seen_s
    int blocked
    int refused
    long long qbytes  # payload bytes of its tasks queued here
    int shm  # it proved it shares the broker's host: it may send tasks by reference
    int nheld  # its tasks in the broker's own table (their ids: HotPath.held_ids)
    int ntasks
    int used
    int nextfree

cdef struct worker_t:
    unsigned char id[256]
    int idlen
    int kind
    int idle
    int busy
    long done
    double seen_s
    int retired
    int used
    int prev
    int next
    int in_lru
    uint64_t used_at  # when it was last used (a counter): the least recent of the kinds' first wins
    int nextfree

cdef struct pipe_t:
    uint64_t mask
    int cached

cdef struct sample_t:
    int worker
    double queued_s
    double worker_s
    double total_s


@cython.wraparound(True)
def _libzmq_path():
    """The file of the libzmq pyzmq loaded (the wheel's hashed copy, or the system's)."""
    import zmq.backend.cython._zmq as backend
    with open("/proc/self/maps") as f:
        paths = sorted({line.split(None, 5)[5].strip() for line in f
                        if len(line.split(None, 5)) == 6 and "libzmq" in line.rsplit("/", 1)[-1]})
    if len(paths) > 1:
        raise OSError(f"more than one libzmq is mapped in this process: {paths}")
    return paths[0] if paths else backend.__file__  # none apart: libzmq linked into pyzmq itself


cdef class MsgBuffer:
    """A received message lent to Python as a buffer (pyzmq wraps it in a Frame, no copy)."""
    cdef hp_msg_t msg
    cdef int ready

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, hp_msg_data(&self.msg), hp_msg_size(&self.msg), 1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def __dealloc__(self):
        if self.ready:
            hp_msg_close(&self.msg)


_loaded = None
_load_error = ""


def _load():
    global _loaded, _load_error
    if _loaded is None:
        try:
            path = _libzmq_path().encode()
        except (OSError, IndexError) as exc:
            _loaded, _load_error = False, str(exc)
        else:
            _loaded = hp_load(path) == 0
            _load_error = "" if _loaded else hp_error.decode("utf-8", "replace")
    if not _loaded:
        raise OSError(_load_error)


cdef class HotPath:
    cdef void *front
    cdef void *back
    cdef object front_sock
    cdef object back_sock
    cdef bytes suffix
    cdef public int max_queue
    cdef public long long max_queue_bytes  # payload bytes queued here, all clients (the broker's share)
    cdef public long long max_route_bytes  # payload bytes queued here per client
    cdef long long qbytes
    cdef double lease_s
    cdef public bint accepting
    cdef public bint hungry
    cdef public uint64_t ref_mask
    # tasks
    cdef task_t **tp
    cdef int tcap, ttop, tfree, ntasks
    cdef int *dedup
    cdef uint64_t seq
    cdef int qhead, qtail, qlen
    # routes, workers, pipelines
    cdef hp_map routes_m
    cdef route_t *routes
    cdef int rcap, rtop, rfree
    cdef hp_map workers_m
    cdef worker_t *workers
    cdef int wcap, wtop, wfree
    cdef int lhead[64]  # per kind: workers with idle lent slots, least recently used first
    cdef int ltail[64]
    cdef uint64_t lmask  # the kinds with a worker in their list
    cdef uint64_t lclock
    cdef public long looks  # workers looked at to pick one, since the start (the pick's cost, for tests)
    cdef list retired_free
    cdef hp_map pipes_m
    cdef pipe_t *pipes
    cdef int pcap, ptop
    # messages and outputs
    cdef hp_msg_t m[MAXF]
    cdef list extra
    cdef hp_buf out
    cdef long counts[5]
    cdef sample_t *samples
    cdef int ns, scap
    cdef int *returned
    cdef int nret, retcap
    cdef list held
    cdef list given_
    cdef dict held_ids  # route index -> ids (bytes) of its tasks in the broker's own table
    cdef object Frame
    cdef hp_pollitem_t items[MAX_POLL]
    cdef int nitems

    compiled = True

    def __cinit__(self):
        self.tp = NULL
        self.dedup = NULL
        self.routes = NULL
        self.workers = NULL
        self.pipes = NULL
        self.samples = NULL
        self.returned = NULL
        self.out.p = NULL
        self.out.len = 0
        self.out.cap = 0
        hp_map_init(&self.routes_m)
        hp_map_init(&self.workers_m)
        hp_map_init(&self.pipes_m)

    def __init__(self, front, back, *, instance_id, max_queue, lease_s, max_queue_bytes=2**62,
                 max_route_bytes=2**62):
        _load()
        self.front_sock, self.back_sock = front, back  # kept alive as long as their handles are used
        self.front = <void *><size_t>front.underlying
        self.back = <void *><size_t>back.underlying
        self.suffix = ("@" + instance_id).encode()
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_route_bytes = max_route_bytes
        self.qbytes = 0
        self.lease_s = lease_s
        self.accepting = True
        self.hungry = False
        self.ref_mask = 0
        self.dedup = <int *>malloc(sizeof(int) * DEDUP_BUCKETS)
        if self.dedup == NULL:
            raise MemoryError()
        for i in range(DEDUP_BUCKETS):
            self.dedup[i] = -1
        self.tfree = -1
        self.rfree = -1
        self.wfree = -1
        self.qhead = self.qtail = -1
        for k in range(64):
            self.lhead[k] = self.ltail[k] = -1
        self.lmask = 0
        self.lclock = 0
        self.looks = 0
        self.seq = 0
        self.retired_free = []
        self.held = []
        self.given_ = []
        self.held_ids = {}
        self.extra = None
        self.Frame = zmq.Frame
        self.set_extras([])
        if hp_reserve(&self.out, 1024):
            raise MemoryError()

    def __dealloc__(self):
        cdef int i
        if self.tp != NULL:
            for i in range(self.ttop):
                if self.tp[i] != NULL:
                    if self.tp[i].used:
                        hp_msg_close(&self.tp[i].payload)
                    free(self.tp[i].pipe)
                    free(self.tp[i])
            free(self.tp)
        free(self.dedup)
        free(self.routes)
        free(self.workers)
        free(self.pipes)
        free(self.samples)
        free(self.returned)
        free(self.out.p)
        hp_map_free(&self.routes_m)
        hp_map_free(&self.workers_m)
        hp_map_free(&self.pipes_m)

    # ---- tables ---------------------------------------------------------------------------
    cdef int route_of(self, const unsigned char *id, size_t n) noexcept:
        cdef int32_t v
        return v if hp_map_get(&self.routes_m, id, n, &v) else -1

    cdef int worker_of(self, const unsigned char *id, size_t n) noexcept:
        cdef int32_t v
        return v if hp_map_get(&self.workers_m, id, n, &v) else -1

    cdef uint32_t key_hash(self, int route, const unsigned char *tid, int n) noexcept:
        return hp_hash(tid, n, hp_hash(<const unsigned char *>&route, sizeof(int), 2166136261u))

    cdef int find_task(self, int route, const unsigned char *tid, int n) noexcept:
        cdef uint32_t h = self.key_hash(route, tid, n)
        cdef int i = self.dedup[h & (DEDUP_BUCKETS - 1)]
        cdef task_t *t
        while i >= 0:
            t = self.tp[i]
            if t.hash == h and t.route == route and t.tidlen == n and memcmp(t.tid, tid, n) == 0:
                return i
            i = t.hnext
        return -1

    cdef void unchain(self, int i) noexcept:
        cdef task_t *t = self.tp[i]
        cdef int *link = &self.dedup[t.hash & (DEDUP_BUCKETS - 1)]
        while link[0] >= 0:
            if link[0] == i:
                link[0] = t.hnext
                return
            link = &self.tp[link[0]].hnext

    cdef int new_task(self) except -2:
        cdef int i
        if self.tfree >= 0:
            i = self.tfree
            self.tfree = self.tp[i].qnext
            return i
        if self.ttop >= MAX_TASKS:
            return -1
        if hp_grow(<void **>&self.tp, &self.tcap, self.ttop, sizeof(task_t *)):
            raise MemoryError()
        i = self.ttop
        self.tp[i] = <task_t *>malloc(sizeof(task_t))
        if self.tp[i] == NULL:
            raise MemoryError()
        memset(self.tp[i], 0, sizeof(task_t))
        self.ttop += 1
        return i

    cdef void queue_push(self, int i) noexcept:
        cdef task_t *t = self.tp[i]
        t.qprev = self.qtail
        t.qnext = -1
        if self.qtail >= 0:
            self.tp[self.qtail].qnext = i
        else:
            self.qhead = i
        self.qtail = i
        self.qlen += 1
        self.qbytes += t.qsize
        self.routes[t.route].qbytes += t.qsize

    cdef void queue_unlink(self, int i) noexcept:
        cdef task_t *t = self.tp[i]
        if t.qprev >= 0:
            self.tp[t.qprev].qnext = t.qnext
        else:
            self.qhead = t.qnext
        if t.qnext >= 0:
            self.tp[t.qnext].qprev = t.qprev
        else:
            self.qtail = t.qprev
        t.qprev = t.qnext = -1
        self.qlen -= 1
        self.qbytes -= t.qsize
        self.routes[t.route].qbytes -= t.qsize
        t.qsize = 0

    cdef void release_task(self, int i) noexcept:
        """Forget task ``i`` (its payload already moved or closed)."""
        cdef task_t *t = self.tp[i]
        self.unchain(i)
        self.routes[t.route].ntasks -= 1
        t.used = 0
        t.qnext = self.tfree
        self.tfree = i
        self.ntasks -= 1

    cdef void lru_unlink(self, int w) noexcept:
        cdef worker_t *x = &self.workers[w]
        cdef int k = x.kind
        if not x.in_lru:
            return
        if x.prev >= 0:
            self.workers[x.prev].next = x.next
        else:
            self.lhead[k] = x.next
        if x.next >= 0:
            self.workers[x.next].prev = x.prev
        else:
            self.ltail[k] = x.prev
        if self.lhead[k] < 0:
            self.lmask &= ~((<uint64_t>1) << k)
        x.prev = x.next = -1
        x.in_lru = 0

    cdef void lru_push(self, int w) noexcept:
        self.lru_unlink(w)
        cdef worker_t *x = &self.workers[w]
        cdef int k = x.kind
        x.prev = self.ltail[k]
        x.next = -1
        if self.ltail[k] >= 0:
            self.workers[self.ltail[k]].next = w
        else:
            self.lhead[k] = w
        self.ltail[k] = w
        self.lmask |= (<uint64_t>1) << k
        self.lclock += 1
        x.used_at = self.lclock
        x.in_lru = 1

    cdef int lru_pick(self, uint64_t mask) noexcept:
        """The least recently used worker with an idle slot whose kind ``mask`` holds (-1: none):
        one look per kind, however many workers are idle."""
        cdef uint64_t kinds = mask & self.lmask
        cdef int best = -1, k, w
        while kinds:
            k = __builtin_ctzll(kinds)
            kinds &= kinds - 1
            w = self.lhead[k]
            self.looks += 1
            if best < 0 or self.workers[w].used_at < self.workers[best].used_at:
                best = w
        return best

    cdef int free_slot(self, int w) except -1:
        """A task of ``w`` ended here: its slot stays lent, or goes back to the broker."""
        cdef worker_t *x = &self.workers[w]
        if x.retired or self.hungry:
            if hp_grow(<void **>&self.returned, &self.retcap, self.nret, sizeof(int)):
                raise MemoryError()
            self.returned[self.nret] = w
            self.nret += 1
            return 0
        x.idle += 1
        self.lru_push(w)
        return 0

    # ---- messages in and out ------------------------------------------------------------------
    cdef object frame(self, hp_msg_t *m):
        """A zmq.Frame of ``m`` (copied when small, else lent); ``m`` is left empty."""
        cdef size_t n = hp_msg_size(m)
        cdef MsgBuffer buf
        if n < COPY_BELOW:
            data = PyBytes_FromStringAndSize(<char *>hp_msg_data(m), n)
            hp_msg_close(m)
            return self.Frame(data)
        buf = MsgBuffer.__new__(MsgBuffer)
        hp_msg_init(&buf.msg)
        hp_msg_move(&buf.msg, m)
        buf.ready = 1
        hp_msg_close(m)
        return self.Frame(buf, copy=False)

    cdef list frames(self, int n):
        out = [self.frame(&self.m[i]) for i in range(n)]
        if self.extra is not None:
            out.extend(self.extra)
            self.extra = None
        return out

    cdef void close_all(self, int n) noexcept:
        for i in range(n):
            hp_msg_close(&self.m[i])

    cdef int recv(self, void *s) except -1:
        """One whole message into ``m`` (parts past MAXF as Frames in ``extra``); 0: none waits."""
        cdef int n = 1
        cdef hp_msg_t tmp
        hp_msg_init(&self.m[0])
        if hp_msg_recv(&self.m[0], s, HP_DONTWAIT) < 0:
            err = hp_errno()
            hp_msg_close(&self.m[0])
            if err == EAGAIN:
                return 0
            raise zmq.ZMQError(err)
        while hp_msg_more(&self.m[n - 1]):
            if n < MAXF:
                hp_msg_init(&self.m[n])
                hp_msg_recv(&self.m[n], s, 0)
                n += 1
                continue
            self.extra = []
            while True:
                hp_msg_init(&tmp)
                hp_msg_recv(&tmp, s, 0)
                more = hp_msg_more(&tmp)
                self.extra.append(self.frame(&tmp))
                if not more:
                    break
            break
        return n

    def set_extras(self, extras):
        """The other sockets and file descriptors the broker's loop waits on: ``run`` returns
        as soon as one is readable."""
        if len(extras) > MAX_POLL - 2:
            raise ValueError(f"at most {MAX_POLL - 2} other sockets or descriptors")
        self.items[0].socket, self.items[0].fd = self.back, 0
        self.items[1].socket, self.items[1].fd = self.front, 0
        self.nitems = 2
        for item in extras:
            if isinstance(item, int):
                self.items[self.nitems].socket, self.items[self.nitems].fd = NULL, item
            else:
                self.items[self.nitems].socket, self.items[self.nitems].fd = <void *><size_t>item.underlying, 0
            self.nitems += 1
        for i in range(self.nitems):
            self.items[i].events = HP_POLLIN
            self.items[i].revents = 0

    def run(self, double timeout_s):
        """Wait (the GIL released) and forward for up to ``timeout_s``; return early with
        (0, frames) or (1, frames) for a front or back message the broker must see, or None
        when something else needs it: another socket readable, a signal, slots or replies to
        hand over, many samples, or the time is up."""
        cdef double until = hp_now_s() + timeout_s, left
        cdef long wait_ms
        cdef int rc, err, i, n = self.nitems
        while True:
            left = until - hp_now_s()
            wait_ms = 0 if left <= 0 else <long>(left * 1000.0) + 1
            with nogil:
                rc = hp_poll(self.items, n, wait_ms)
            if rc < 0:
                err = hp_errno()
                if err == EINTR:
                    return None  # a signal: Python runs its handler
                raise zmq.ZMQError(err)
            if self.items[0].revents & HP_POLLIN:
                out = self.pump_back()
                if out is not None:
                    return (1, out)
            if self.items[1].revents & HP_POLLIN:
                out = self.pump_front()
                if out is not None:
                    return (0, out)
            for i in range(2, n):
                if self.items[i].revents & HP_POLLIN:
                    return None
            if self.nret or self.held or self.given_ or self.ns >= SAMPLES_BEFORE_RETURN or hp_now_s() >= until:
                return None

    def pump_front(self):
        """Handle waiting client messages; return the first the broker must see, or None."""
        cdef int n
        for _ in range(DRAIN_BATCH):
            n = self.recv(self.front)
            if n == 0:
                break
            if not self.request(n):
                out = self.frames(n)
                self.dispatch()
                return out
        self.dispatch()
        return None

    def pump_back(self):
        """Handle waiting worker messages; return the first the broker must see, or None."""
        cdef int n
        for _ in range(DRAIN_BATCH):
            n = self.recv(self.back)
            if n == 0:
                break
            if not self.reply(n):
                out = self.frames(n)
                self.dispatch()
                return out
        self.dispatch()
        return None

    cdef int request(self, int n) except -1:
        """A REQUEST of the common shape is queued here (1); anything else is the broker's (0)."""
        if n != 3 or self.extra is not None or not self.accepting or self.qlen >= self.max_queue:
            return 0
        cdef int r = self.route_of(<unsigned char *>hp_msg_data(&self.m[0]), hp_msg_size(&self.m[0]))
        if r < 0 or self.routes[r].refused:
            return 0
        cdef long long size = <long long>hp_msg_size(&self.m[2])
        if self.qbytes + size > self.max_queue_bytes or self.routes[r].qbytes + size > self.max_route_bytes:
            return 0  # the broker's path answers: "busy", or queues the one image it lets through
        cdef size_t hsize = hp_msg_size(&self.m[1])
        if hsize > MAX_HEADER:
            return 0
        cdef hp_rd rd
        rd.p = <const unsigned char *>hp_msg_data(&self.m[1])
        rd.end = rd.p + hsize
        cdef uint64_t entries, value
        cdef const unsigned char *key
        cdef const unsigned char *tid = NULL
        cdef const unsigned char *pipe = NULL
        cdef const unsigned char *s
        cdef size_t klen, tidlen = 0, pipelen = 0, slen, k
        cdef int seen = 0, bit, cache_off = 0, ref = 0
        cdef double now_s
        if hp_read_map(&rd, &entries) or entries > 6:
            return 0
        for _ in range(entries):
            if hp_read_str(&rd, &key, &klen):
                return 0
            if klen == 1 and key[0] == b'v':
                bit = 1
                if hp_read_uint(&rd, &value) or value != 1:
                    return 0
            elif klen == 1 and key[0] == b't':
                bit = 2
                if hp_read_uint(&rd, &value) or value != 2:
                    return 0
            elif klen == 2 and memcmp(key, b"id", 2) == 0:
                bit = 4
                if hp_read_str(&rd, &tid, &tidlen) or tidlen == 0 or tidlen > MAX_TID:
                    return 0
                for k in range(tidlen):
                    if tid[k] >= 0x80:
                        return 0
            elif klen == 8 and memcmp(key, b"pipeline", 8) == 0:
                bit = 8
                pipe = rd.p
                if hp_read_str(&rd, &s, &slen):
                    return 0
                pipelen = rd.p - pipe
            elif klen == 4 and memcmp(key, b"opts", 4) == 0:
                bit = 16
                if rd.end - rd.p < 8 or memcmp(rd.p, NO_CACHE_RAW, 8) != 0:
                    return 0
                rd.p += 8
                cache_off = 1
            elif klen == 3 and memcmp(key, b"ref", 3) == 0:
                bit = 32
                if rd.p >= rd.end or rd.p[0] != 0xc3:  # true
                    return 0
                rd.p += 1
                ref = 1
            else:
                return 0
            if seen & bit:
                return 0
            seen |= bit
        if (seen & 15) != 15 or rd.p != rd.end:
            return 0
        if self.routes[r].nheld and PyBytes_FromStringAndSize(<char *>tid, tidlen) in self.held_ids[r]:
            return 0  # a resend of a task the broker holds: its path drops it
        cdef int32_t p
        if not hp_map_get(&self.pipes_m, pipe, pipelen, &p):
            return 0
        if self.pipes[p].cached and not cache_off:
            return 0  # the result cache answers it, or keeps its result: the broker's path
        cdef uint64_t mask = self.pipes[p].mask
        if ref:
            mask &= self.ref_mask
            if not self.routes[r].shm or mask == 0:
                return 0  # not proven, or no worker here reads shared memory: the broker's path
        if self.tfree < 0 and self.ttop >= MAX_TASKS:
            return 0
        now_s = hp_now_s()
        cdef route_t *route = &self.routes[r]
        route.seen_s = now_s
        self.counts[0] += 1
        self.counts[2] += hp_msg_size(&self.m[2])
        if self.find_task(r, tid, <int>tidlen) >= 0:
            self.close_all(3)  # a resend of a task held here
            return 1
        cdef int i = self.new_task()
        if i < 0:
            return 0
        cdef task_t *t = self.tp[i]
        if t.pipecap < pipelen:
            t.pipe = <unsigned char *>realloc(t.pipe, pipelen)
            if t.pipe == NULL:
                t.pipecap = 0
                raise MemoryError()
            t.pipecap = pipelen
        memcpy(t.pipe, pipe, pipelen)
        t.pipelen = pipelen
        memcpy(t.tid, tid, tidlen)
        t.tidlen = <int>tidlen
        self.seq += 1
        t.jid = BASE_JID + (self.seq << INDEX_BITS) + <uint64_t>i
        t.used = 1
        t.route = r
        t.worker = -1
        t.mask = mask
        t.cache_off = cache_off
        t.ref = ref
        hp_msg_init(&t.payload)
        hp_msg_move(&t.payload, &self.m[2])
        hp_msg_close(&self.m[2])
        t.received_s = now_s
        t.dispatched_s = 0.0
        t.lease_due_s = 1e300
        t.hash = self.key_hash(r, tid, <int>tidlen)
        t.hnext = self.dedup[t.hash & (DEDUP_BUCKETS - 1)]
        self.dedup[t.hash & (DEDUP_BUCKETS - 1)] = i
        route.ntasks += 1
        self.ntasks += 1
        t.qsize = size
        self.queue_push(i)
        hp_msg_close(&self.m[0])
        hp_msg_close(&self.m[1])
        return 1

    cdef int reply(self, int n) except -1:
        """A REPLY of the common shape goes to its client (1); anything else is the broker's (0),
        with the task given back first when it is one held here (an error, or a shape only it reads)."""
        if n < 2:
            return 0
        cdef size_t hsize = hp_msg_size(&self.m[1])
        if hsize > MAX_HEADER:
            return 0
        cdef hp_rd rd
        rd.p = <const unsigned char *>hp_msg_data(&self.m[1])
        rd.end = rd.p + hsize
        cdef uint64_t entries, value, meta_n = 0, jid = 0
        cdef const unsigned char *key
        cdef const unsigned char *tid = NULL
        cdef const unsigned char *meta = NULL
        cdef const unsigned char *meta_end = NULL
        cdef size_t klen, tidlen = 0, slen = len(self.suffix)
        cdef int seen = 0, bit, bad = 0, digits, k
        cdef double now_s
        if hp_read_map(&rd, &entries):
            return 0
        for _ in range(entries):
            if hp_read_str(&rd, &key, &klen):
                return 0  # not a header the broker can read: it says so and drops it
            bit = 0
            if klen == 1 and key[0] == b'v':
                bit = 1
                if hp_read_uint(&rd, &value):
                    bad = 1
                    if hp_skip(&rd, 0):
                        return 0
                elif value != 1:
                    bad = 1
            elif klen == 1 and key[0] == b't':
                bit = 2
                if hp_read_uint(&rd, &value):
                    bad = 1
                    if hp_skip(&rd, 0):
                        return 0
                elif value != 3:
                    bad = 1
            elif klen == 2 and memcmp(key, b"id", 2) == 0:
                bit = 4
                if hp_read_str(&rd, &tid, &tidlen):
                    return 0
            elif klen == 4 and memcmp(key, b"meta", 4) == 0:
                bit = 8
                if rd.p < rd.end and ((rd.p[0] & 0xf0) == 0x80 or rd.p[0] == 0xde or rd.p[0] == 0xdf):
                    if hp_read_map(&rd, &meta_n):
                        return 0
                    meta = rd.p
                    for _ in range(meta_n):
                        if rd.p >= rd.end or not hp_is_key(rd.p[0]):
                            return 0  # a key the broker's decode refuses: it drops the message
                        if hp_read_str(&rd, &key, &klen) == 0:
                            if klen == 9 and memcmp(key, b"broker_ms", 9) == 0:
                                bad = 1
                        else:  # a bytes key: the broker's path reads it
                            bad = 1
                            if hp_skip(&rd, 1):
                                return 0
                        if hp_skip(&rd, 1):
                            return 0
                    meta_end = rd.p
                else:
                    bad = 1
                    if hp_skip(&rd, 0):
                        return 0
            else:
                bad = 1
                if hp_skip(&rd, 0):
                    return 0
            if bit and (seen & bit):
                bad = 1
            seen |= bit
        if rd.p != rd.end or tid == NULL:
            return 0
        # "<jid>@<instance>", a jid of this hot path
        digits = 0
        while <size_t>digits < tidlen and 48 <= tid[digits] <= 57:
            digits += 1
        if digits == 0 or digits >= 20 or tidlen - digits != slen or memcmp(tid + digits, <const char *>self.suffix, slen) != 0:
            return 0
        for k in range(digits):
            jid = jid * 10 + (tid[k] - 48)
        cdef uint64_t index = jid & ((1 << INDEX_BITS) - 1)
        if jid < BASE_JID or index >= <uint64_t>self.ttop:
            return 0
        cdef int i = <int>index
        cdef task_t *t = self.tp[i]
        if not t.used or t.jid != jid:
            return 0
        cdef int w = t.worker
        if w < 0 or <size_t>self.workers[w].idlen != hp_msg_size(&self.m[0]) or \
                memcmp(self.workers[w].id, hp_msg_data(&self.m[0]), self.workers[w].idlen) != 0:
            return 0  # not from the worker that runs it: the broker drops it
        if n != 3 or self.extra is not None or bad or (seen & 15) != 15:
            self.given_.append(self.take_index(i))
            return 0
        # the answer: to its client, with the client's id and broker_ms
        now_s = hp_now_s()
        cdef worker_t *x = &self.workers[w]
        x.busy -= 1
        x.done += 1
        x.seen_s = now_s
        self.free_slot(w)
        cdef route_t *route = &self.routes[t.route]
        cdef size_t meta_len = meta_end - meta
        if hp_reserve(&self.out, 64 + <size_t>t.tidlen + meta_len) < 0:
            raise MemoryError()
        self.out.len = 0
        hp_put_map(&self.out, 4)
        hp_put(&self.out, b"\xa1v\x01\xa1t\x03\xa2id", 9)
        hp_put_str(&self.out, t.tid, t.tidlen)
        hp_put(&self.out, b"\xa4meta", 5)
        hp_put_map(&self.out, meta_n + 1)
        hp_put(&self.out, meta, meta_len)
        hp_put(&self.out, b"\xa9broker_ms", 10)
        hp_put_double(&self.out, floor((now_s - t.received_s) * 1e6 + 0.5) / 1e3)
        cdef size_t psize = hp_msg_size(&self.m[2])
        self.counts[1] += 1
        self.counts[3] += psize
        self.sample(w, t.dispatched_s - t.received_s, now_s - t.dispatched_s, now_s - t.received_s)
        hp_msg_close(&t.payload)
        self.release_task(i)
        hp_msg_close(&self.m[0])
        hp_msg_close(&self.m[1])
        cdef int err
        if not route.blocked:
            if hp_zsend(self.front, route.id, route.idlen, HP_SNDMORE | HP_DONTWAIT) >= 0:
                hp_zsend(self.front, self.out.p, self.out.len, HP_SNDMORE | HP_DONTWAIT)
                if hp_msg_send(&self.m[2], self.front, HP_DONTWAIT) < 0:
                    hp_msg_close(&self.m[2])
                return 1
            err = hp_errno()
            if err == EHOSTUNREACH:
                self.counts[4] += 1  # the client is gone: its reply is dropped
                hp_msg_close(&self.m[2])
                return 1
            route.blocked = 1  # it does not read: the broker's outbox holds this and what follows
        self.held.append((PyBytes_FromStringAndSize(<char *>route.id, route.idlen),
                          [PyBytes_FromStringAndSize(<char *>self.out.p, self.out.len), self.frame(&self.m[2])]))
        return 1

    cdef int sample(self, int w, double queued_s, double worker_s, double total_s) except -1:
        if hp_grow(<void **>&self.samples, &self.scap, self.ns, sizeof(sample_t)):
            raise MemoryError()
        self.samples[self.ns].worker = w
        self.samples[self.ns].queued_s = queued_s
        self.samples[self.ns].worker_s = worker_s
        self.samples[self.ns].total_s = total_s
        self.ns += 1
        return 0

    cdef int dispatch(self) except -1:
        cdef int cur = self.qhead, nxt, w, skipped = 0, more, nkeys
        cdef double now_s
        cdef task_t *t
        cdef worker_t *x
        cdef hp_msg_t copy
        cdef char jid_text[24]
        cdef int jid_len
        cdef uint64_t v
        while cur >= 0 and self.lmask:
            t = self.tp[cur]
            nxt = t.qnext
            w = self.lru_pick(t.mask)
            if w < 0:
                skipped += 1
                if skipped >= MAX_SKIPPED:
                    break
                cur = nxt
                continue
            self.queue_unlink(cur)
            x = &self.workers[w]
            x.idle -= 1
            if x.idle <= 0:
                self.lru_unlink(w)
            else:
                self.lru_push(w)
            now_s = hp_now_s()
            t.worker = w
            t.dispatched_s = now_s
            t.lease_due_s = now_s + self.lease_s
            x.busy += 1
            more = self.qlen - skipped > 0
            # {"v": 1, "t": 2, "id": "<jid>@<instance>", "pipeline": ..., ["opts": {"cache": false}], ["more": true]}
            v = t.jid
            jid_len = 0
            while True:
                jid_text[jid_len] = <char>(48 + v % 10)
                jid_len += 1
                v //= 10
                if v == 0:
                    break
            if hp_reserve(&self.out, 64 + t.pipelen + len(self.suffix)) < 0:
                raise MemoryError()
            self.out.len = 0
            nkeys = 4 + t.cache_off + more + t.ref
            hp_put_map(&self.out, nkeys)
            hp_put(&self.out, b"\xa1v\x01\xa1t\x02\xa2id", 9)
            hp_put_str_jid(&self.out, jid_text, jid_len, <const char *>self.suffix, len(self.suffix))
            hp_put(&self.out, b"\xa8pipeline", 9)
            hp_put(&self.out, t.pipe, t.pipelen)
            if t.cache_off:
                hp_put(&self.out, b"\xa4opts", 5)
                hp_put(&self.out, NO_CACHE_RAW, 8)
            if more:
                hp_put(&self.out, b"\xa4more\xc3", 6)
            if t.ref:
                hp_put(&self.out, b"\xa3ref\xc3", 5)
            if hp_zsend(self.back, x.id, x.idlen, HP_SNDMORE | HP_DONTWAIT) >= 0:
                hp_zsend(self.back, self.out.p, self.out.len, HP_SNDMORE | HP_DONTWAIT)
                hp_msg_init(&copy)
                hp_msg_copy(&copy, &t.payload)
                if hp_msg_send(&copy, self.back, HP_DONTWAIT) < 0:
                    hp_msg_close(&copy)
            # else gone or not reading: heartbeats and leases decide, as for the broker
            cur = nxt
        return 0

    # ---- what the broker registers -----------------------------------------------------------
    def add_route(self, bytes route not None):
        cdef int r
        if self.route_of(route, len(route)) >= 0 or len(route) > 255:
            return
        if self.rfree >= 0:
            r = self.rfree
            self.rfree = self.routes[r].nextfree
        else:
            if hp_grow(<void **>&self.routes, &self.rcap, self.rtop, sizeof(route_t)):
                raise MemoryError()
            r = self.rtop
            self.rtop += 1
        memset(&self.routes[r], 0, sizeof(route_t))
        memcpy(self.routes[r].id, <const char *>route, len(route))
        self.routes[r].idlen = len(route)
        self.routes[r].used = 1
        if hp_map_put(&self.routes_m, <const char *>route, len(route), r):
            raise MemoryError()

    def remove_route(self, bytes route not None):
        """Forget a client: its tasks come back (to be dropped)."""
        cdef int r = self.route_of(route, len(route))
        if r < 0:
            return []
        out = [self.take_index(i) for i in range(self.ttop) if self.tp[i].used and self.tp[i].route == r]
        hp_map_del(&self.routes_m, <const char *>route, len(route))
        self.held_ids.pop(r, None)
        self.routes[r].used = 0
        self.routes[r].nextfree = self.rfree
        self.rfree = r
        return out

    def route_seen_s(self, bytes route not None):
        cdef int r = self.route_of(route, len(route))
        return self.routes[r].seen_s if r >= 0 else 0.0

    def set_route_shm(self, bytes route not None, bint on):
        cdef int r = self.route_of(route, len(route))
        if r >= 0:
            self.routes[r].shm = on

    def block_route(self, bytes route not None, bint blocked, bint refused=False):
        cdef int r = self.route_of(route, len(route))
        if r >= 0:
            self.routes[r].blocked = blocked
            self.routes[r].refused = refused

    def note_held(self, bytes route not None, str task_id not None, bint held):
        cdef int r = self.route_of(route, len(route))
        if r < 0:
            return
        ids = self.held_ids.setdefault(r, set())
        tid = task_id.encode("utf-8", "surrogatepass")
        if held:
            ids.add(tid)
        else:
            ids.discard(tid)
        self.routes[r].nheld = len(ids)
        if not ids:
            del self.held_ids[r]

    def holds(self, bytes route not None, str task_id not None):
        cdef int r = self.route_of(route, len(route))
        tid = task_id.encode("utf-8", "surrogatepass")
        return r >= 0 and len(tid) <= MAX_TID and self.find_task(r, tid, len(tid)) >= 0

    def add_pipeline(self, str text not None, uint64_t mask, bint cached):
        cdef int32_t p
        raw = msgpack.packb(text, use_bin_type=True)
        if not hp_map_get(&self.pipes_m, <const char *>raw, len(raw), &p):
            if hp_grow(<void **>&self.pipes, &self.pcap, self.ptop, sizeof(pipe_t)):
                raise MemoryError()
            p = self.ptop
            self.ptop += 1
            if hp_map_put(&self.pipes_m, <const char *>raw, len(raw), p):
                raise MemoryError()
        self.pipes[p].mask = mask
        self.pipes[p].cached = cached

    def clear_pipelines(self):
        hp_map_clear(&self.pipes_m)
        self.ptop = 0

    # ---- slots -------------------------------------------------------------------------------
    def lend(self, bytes wid not None, int kind, int slots):
        cdef int w
        if not 0 <= kind <= 63 or slots <= 0:
            raise ValueError(f"kind {kind} (0-63) and slots {slots} (> 0)")
        if len(wid) > 255:
            raise ValueError("a routing id has at most 255 bytes")
        w = self.worker_of(wid, len(wid))
        if w < 0:
            if self.wfree >= 0:
                w = self.wfree
                self.wfree = self.workers[w].nextfree
            else:
                if hp_grow(<void **>&self.workers, &self.wcap, self.wtop, sizeof(worker_t)):
                    raise MemoryError()
                w = self.wtop
                self.wtop += 1
            memset(&self.workers[w], 0, sizeof(worker_t))
            memcpy(self.workers[w].id, <const char *>wid, len(wid))
            self.workers[w].idlen = len(wid)
            self.workers[w].used = 1
            self.workers[w].prev = self.workers[w].next = -1
            if hp_map_put(&self.workers_m, <const char *>wid, len(wid), w):
                raise MemoryError()
        self.lru_unlink(w)
        self.workers[w].kind = kind
        self.workers[w].retired = 0
        self.workers[w].idle += slots
        self.lru_push(w)
        self.dispatch()

    def set_kind(self, bytes wid not None, int kind):
        """A worker's kind changed (it proved it reads shared memory): its slots here follow."""
        if not 0 <= kind <= 63:
            raise ValueError(f"kind {kind} (0-63)")
        cdef int w = self.worker_of(wid, len(wid))
        cdef int idle
        if w >= 0:
            idle = self.workers[w].in_lru
            self.lru_unlink(w)
            self.workers[w].kind = kind
            if idle:
                self.lru_push(w)
            self.dispatch()

    cdef bytes wid_of(self, int w):
        return PyBytes_FromStringAndSize(<char *>self.workers[w].id, self.workers[w].idlen)

    def reclaim(self):
        """Every idle lent slot back to the broker."""
        out = []
        cdef int w, nxt, k
        for k in range(64):
            w = self.lhead[k]
            while w >= 0:
                nxt = self.workers[w].next
                out.append((self.wid_of(w), self.workers[w].idle))
                self.workers[w].idle = 0
                self.workers[w].in_lru = 0
                self.workers[w].prev = self.workers[w].next = -1
                w = nxt
            self.lhead[k] = self.ltail[k] = -1
        self.lmask = 0
        return out

    def retire(self, bytes wid not None):
        """A worker leaves (or drains): its idle slots are gone, its tasks come back."""
        cdef int w = self.worker_of(wid, len(wid))
        if w < 0:
            return []
        out = [self.take_index(i) for i in range(self.ttop) if self.tp[i].used and self.tp[i].worker == w]
        self.lru_unlink(w)
        self.workers[w].idle = 0
        self.workers[w].retired = 1
        hp_map_del(&self.workers_m, <const char *>wid, len(wid))
        self.retired_free.append(w)  # reused after the next collect (samples may still name it)
        return out

    # ---- tasks back to the broker ----------------------------------------------------------------
    cdef object take_index(self, int i):
        cdef task_t *t = self.tp[i]
        cdef int w = t.worker
        if w < 0:
            self.queue_unlink(i)
        else:
            self.workers[w].busy -= 1
        pipeline = msgpack.unpackb(PyBytes_FromStringAndSize(<char *>t.pipe, t.pipelen), raw=False)
        taken = Taken(t.jid, PyBytes_FromStringAndSize(<char *>self.routes[t.route].id, self.routes[t.route].idlen),
                      PyBytes_FromStringAndSize(<char *>t.tid, t.tidlen).decode("ascii"), pipeline,
                      {"cache": False} if t.cache_off else None, self.frame(&t.payload), t.received_s,
                      self.wid_of(w) if w >= 0 else None, t.dispatched_s,
                      t.lease_due_s if w >= 0 else float("inf"), bool(t.ref))
        self.release_task(i)
        return taken

    def take(self, bytes route not None, str task_id not None):
        cdef int r = self.route_of(route, len(route))
        tid = task_id.encode("utf-8", "surrogatepass")
        if r < 0 or len(tid) > MAX_TID:
            return None
        cdef int i = self.find_task(r, tid, len(tid))
        return self.take_index(i) if i >= 0 else None

    def take_jid(self, uint64_t jid):
        cdef uint64_t index = jid & ((1 << INDEX_BITS) - 1)
        if jid < BASE_JID or index >= <uint64_t>self.ttop:
            return None
        cdef int i = <int>index
        return self.take_index(i) if self.tp[i].used and self.tp[i].jid == jid else None

    def take_expired(self, double now_s):
        return [self.take_index(i) for i in range(self.ttop)
                if self.tp[i].used and self.tp[i].worker >= 0 and self.tp[i].lease_due_s <= now_s]

    def take_queued(self):
        out = []
        while self.qhead >= 0:
            out.append(self.take_index(self.qhead))
        return out

    def take_held_before(self, bytes wid not None, double before_s):
        cdef int w = self.worker_of(wid, len(wid))
        if w < 0:
            return []
        return [self.take_index(i) for i in range(self.ttop)
                if self.tp[i].used and self.tp[i].worker == w and self.tp[i].dispatched_s < before_s]

    def given(self):
        """The tasks given back by the last pump, with the message it returned (their answer)."""
        given, self.given_ = self.given_, []
        return given

    # ---- what the broker reads ---------------------------------------------------------------------
    def queued(self):
        return self.qlen

    def bytes_queued(self):
        """Payload bytes of every task queued here."""
        return self.qbytes

    def route_queued_bytes(self, bytes route not None):
        """Payload bytes of this client's tasks queued here."""
        cdef int r = self.route_of(<unsigned char *>route, len(route))
        return self.routes[r].qbytes if r >= 0 else 0

    def tasks(self):
        return self.ntasks

    def idle_slots(self):
        cdef long n = 0
        cdef int w, k
        for k in range(64):
            w = self.lhead[k]
            while w >= 0:
                n += self.workers[w].idle
                w = self.workers[w].next
        return n

    def load_of(self, bytes wid not None):
        """(idle lent slots, tasks running) of a worker."""
        cdef int w = self.worker_of(wid, len(wid))
        if w < 0:
            return (0, 0)
        return (self.workers[w].idle, self.workers[w].busy)

    def collect(self):
        """As ``hotpath.HotPath.collect``."""
        counts = Counts(self.counts[0], self.counts[1], self.counts[2], self.counts[3], self.counts[4])
        for k in range(5):
            self.counts[k] = 0
        samples = [(self.wid_of(self.samples[k].worker), self.samples[k].queued_s, self.samples[k].worker_s,
                    self.samples[k].total_s) for k in range(self.ns)]
        self.ns = 0
        returned = [self.wid_of(self.returned[k]) for k in range(self.nret)]
        self.nret = 0
        held, self.held = self.held, []
        done = []
        for w in range(self.wtop):
            if self.workers[w].used and self.workers[w].done:
                done.append((self.wid_of(w), self.workers[w].done, self.workers[w].seen_s))
                self.workers[w].done = 0
        for w in self.retired_free:
            self.workers[w].used = 0
            self.workers[w].done = 0
            self.workers[w].nextfree = self.wfree
            self.wfree = w
        self.retired_free = []
        if self.scap > 65536 and self.ns == 0:  # a burst is over: give its memory back
            free(self.samples)
            self.samples = NULL
            self.scap = 0
        return counts, samples, returned, held, done

