/*
 * edge_client: send one image to the engine's HTTP API and save the result, the way
 * firmware on a microcontroller would: POSIX sockets only, no heap, one fixed buffer of
 * BUF_BYTES for everything (request head, upload chunks, response head, download
 * chunks). On an ESP32 the same calls exist in ESP-IDF's lwIP socket layer.
 *
 *   cc -O2 -Wall -o edge_client edge_client.c
 *   ./edge_client HOST PORT TOKEN PIPELINE IN.jpg OUT.png
 *   ./edge_client 127.0.0.1 8080 "$TOKEN" "grayscale|png" in.jpg out.png
 *
 * Exit status: 0 saved (HTTP 200), 1 the server refused (status and its JSON error on
 * stderr), 2 bad arguments or a local file error, 3 network error or timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define BUF_BYTES 4096   /* the one buffer: a few KiB, as on a microcontroller */
#define TIMEOUT_S 30     /* per send or receive call */

static char buf[BUF_BYTES];

static int fail(int code, const char *what) {
    fprintf(stderr, "edge_client: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    return code;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int connect_to(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res, *ai;
    struct timeval tv = {TIMEOUT_S, 0};
    int fd = -1;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Percent-encode src into dst (everything but unreserved characters). */
static int url_encode(char *dst, size_t cap, const char *src) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *src; src++) {
        unsigned char c = (unsigned char)*src;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~';
        if (o + 4 > cap) return -1;
        if (plain) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = 0;
    return 0;
}

/* The response, read through buf: `have` bytes of it are in buf[0..have). */
struct reader {
    int fd;
    size_t have;
};

static int fill(struct reader *r) {
    ssize_t k;
    if (r->have == BUF_BYTES) return 0;
    do k = recv(r->fd, buf + r->have, BUF_BYTES - r->have, 0); while (k < 0 && errno == EINTR);
    if (k < 0) return -1;
    r->have += (size_t)k;
    return (int)k;
}

static void consume(struct reader *r, size_t n) {
    memmove(buf, buf + n, r->have - n);
    r->have -= n;
}

/* One line (CRLF removed) into line[cap]; a longer line is cut (its tail is skipped). */
static int read_line(struct reader *r, char *line, size_t cap) {
    size_t used = 0;
    for (;;) {
        char *nl = memchr(buf, '\n', r->have);
        size_t n = nl ? (size_t)(nl - buf) + 1 : r->have;
        size_t copy = n < cap - 1 - used ? n : cap - 1 - used;
        memcpy(line + used, buf, copy);
        used += copy;
        consume(r, n);
        if (nl) break;
        if (fill(r) <= 0) return -1;
    }
    while (used > 0 && (line[used - 1] == '\n' || line[used - 1] == '\r')) used--;
    line[used] = 0;
    return 0;
}

/* Copy `n` body bytes (or until close if n < 0) to out, through buf. */
static int copy_body(struct reader *r, FILE *out, long long n) {
    for (;;) {
        size_t take = r->have;
        int k;
        if (n >= 0 && (long long)take > n) take = (size_t)n;
        if (take && fwrite(buf, 1, take, out) != take) return -2;
        consume(r, take);
        if (n >= 0) {
            n -= (long long)take;
            if (n == 0) return 0;
        }
        k = fill(r);
        if (k < 0) return -1;
        if (k == 0) return n < 0 ? 0 : -1;
    }
}

int main(int argc, char **argv) {
    char line[256], path[512], pipeline[256];
    struct stat st;
    struct reader r = {0};
    long long length = -1;
    int chunked = 0, status = 0, in, fd, rc, cut_off = 0;
    FILE *out;
    ssize_t k;

    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT TOKEN PIPELINE IN_IMAGE OUT_FILE\n"
                        "  e.g. %s 127.0.0.1 8080 \"$TOKEN\" \"grayscale|png\" in.jpg out.png\n", argv[0], argv[0]);
        return 2;
    }
    if (url_encode(pipeline, sizeof pipeline, argv[4]) != 0) return fail(2, "pipeline too long");
    in = open(argv[5], O_RDONLY);
    if (in < 0 || fstat(in, &st) != 0) return fail(2, "cannot read the input image");
    fd = connect_to(argv[1], argv[2]);
    if (fd < 0) return fail(3, "cannot connect to the gateway");

    /* Request head, then the image streamed through the same buffer. */
    snprintf(path, sizeof path, "/api/v1/process?pipeline=%s", pipeline);
    k = snprintf(buf, BUF_BYTES,
                 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\n"
                 "Content-Type: application/octet-stream\r\nContent-Length: %lld\r\nConnection: close\r\n\r\n",
                 path, argv[1], argv[2], argv[3], (long long)st.st_size);
    if (k < 0 || k >= BUF_BYTES) return fail(2, "request head does not fit the buffer");
    if (send_all(fd, buf, (size_t)k) != 0) return fail(3, "sending the request head");
    while ((k = read(in, buf, BUF_BYTES)) > 0)
        if (send_all(fd, buf, (size_t)k) != 0) {
            /* A server may answer from the head alone (a refused token) and close: the answer
               is waiting to be read, so read it rather than report the broken pipe. */
            if (errno != EPIPE && errno != ECONNRESET) return fail(3, "sending the image");
            cut_off = errno;
            errno = 0;
            k = 0;
            break;
        }
    close(in);
    if (k < 0) return fail(2, "reading the input image");

    /* Status line and headers, one line at a time. */
    r.fd = fd;
    if (read_line(&r, line, sizeof line) != 0 || sscanf(line, "HTTP/%*s %d", &status) != 1) {
        if (cut_off) errno = cut_off;
        return fail(3, cut_off ? "sending the image" : "no HTTP answer");
    }
    if (cut_off && status == 200) {
        errno = cut_off;
        return fail(3, "sending the image");  /* an answer to a request it never got whole */
    }
    for (;;) {
        if (read_line(&r, line, sizeof line) != 0) return fail(3, "the answer's headers were cut off");
        if (!line[0]) break;
        if (!strncasecmp(line, "content-length:", 15)) length = atoll(line + 15);
        if (!strncasecmp(line, "transfer-encoding:", 18) && strstr(line, "chunked")) chunked = 1;
    }

    out = status == 200 ? fopen(argv[6], "wb") : stderr;
    if (!out) return fail(2, "cannot write the output file");
    if (status != 200) fprintf(stderr, "edge_client: HTTP %d: ", status);
    if (!chunked) {
        rc = copy_body(&r, out, length);
    } else {
        for (rc = 0;;) {
            long long size;
            if (read_line(&r, line, sizeof line) != 0) { rc = -1; break; }
            size = strtoll(line, NULL, 16);
            if (size == 0) break;
            if ((rc = copy_body(&r, out, size)) != 0) break;
            if (read_line(&r, line, sizeof line) != 0) { rc = -1; break; } /* CRLF after the chunk */
        }
    }
    close(fd);
    if (status != 200) {
        fputc('\n', stderr);
        return 1;
    }
    if (fclose(out) != 0 || rc == -2) return fail(2, "writing the output file");
    if (rc != 0) return fail(3, "the answer's body was cut off");
    return 0;
}
