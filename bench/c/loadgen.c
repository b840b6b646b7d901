/*
 * loadgen: load generator and service for the ecto-tunnel benchmark (bench/run.py).
 *
 * Server (the service behind sshd; one epoll thread):
 *   loadgen server --port P            prints "READY <port>" once listening
 * Every client connection starts with a 9-byte header: one command byte and a little-endian
 * uint64 parameter.
 *   'U' sink:   reads until EOF, then answers with the byte count (8 bytes, LE) and closes.
 *   'D' source: sends `param` bytes, then closes.
 *   'E' echo:   echoes everything; half-closes when the client half-closes.
 *
 * Clients (print one JSON object on stdout):
 *   loadgen up         --port P --bytes N [--streams K]   bulk client -> server
 *   loadgen down       --port P --bytes N [--streams K]   bulk server -> client
 *   loadgen rtt        --port P [--count N] [--size 64]   ping-pong over one connection
 *   loadgen connrate   --port P [--count N] [--clients C] new connection + 1-byte echo each
 *   loadgen concurrent --port P [--conns 1000] [--size 1024] [--rounds 4] [--hold-ms 500]
 *   loadgen probe      --port P [--timeout-ms 5000]        one echo; exit 0 when it worked
 * Only ever used on loopback (127.0.0.1).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define HDR 9

static int g_port;
static long long g_bytes = 1LL << 30;
static int g_streams = 1, g_count = 0, g_size = 64, g_clients = 1, g_conns = 1000, g_rounds = 4,
           g_hold_ms = 500, g_timeout_ms = 5000;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void put_header(unsigned char *h, char cmd, uint64_t param) {
    h[0] = (unsigned char)cmd;
    for (int i = 0; i < 8; i++) h[1 + i] = (unsigned char)(param >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, int n, double p) {
    if (n == 0) return 0;
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

/* ---------------------------------------------------------------- server */

enum { ST_HDR, ST_SINK, ST_SOURCE, ST_ECHO };

struct conn {
    int fd, state;
    unsigned char hdr[HDR];
    int hdr_len;
    uint64_t count;     /* sink: received; source: left to send */
    char *buf;          /* echo */
    int head, tail, eof;
};

static char g_source[CHUNK];

static void srv_close(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    free(c);
}

static void srv_events(int ep, struct conn *c, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void srv_handle(int ep, struct conn *c, char *scratch) {
    for (;;) {
        if (c->state == ST_HDR) {
            ssize_t r = read(c->fd, c->hdr + c->hdr_len, HDR - c->hdr_len);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return srv_close(ep, c);
            if (r < 0) return;
            c->hdr_len += (int)r;
            if (c->hdr_len < HDR) continue;
            uint64_t param = get_u64(c->hdr + 1);
            switch (c->hdr[0]) {
            case 'U': c->state = ST_SINK; c->count = 0; break;
            case 'D': c->state = ST_SOURCE; c->count = param; srv_events(ep, c, EPOLLOUT); break;
            case 'E':
                c->state = ST_ECHO;
                c->buf = malloc(CHUNK / 4);
                break;
            default: return srv_close(ep, c);
            }
            continue;
        }
        if (c->state == ST_SINK) {
            ssize_t r = read(c->fd, scratch, CHUNK);
            if (r > 0) { c->count += (uint64_t)r; continue; }
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
            if (r == 0) {
                unsigned char ack[8];
                for (int i = 0; i < 8; i++) ack[i] = (unsigned char)(c->count >> (8 * i));
                int fl = fcntl(c->fd, F_GETFL);
                fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
                (void)write_all(c->fd, ack, 8);
            }
            return srv_close(ep, c);
        }
        if (c->state == ST_SOURCE) {
            while (c->count > 0) {
                size_t n = c->count < CHUNK ? (size_t)c->count : CHUNK;
                ssize_t w = write(c->fd, g_source, n);
                if (w < 0) {
                    if (errno == EAGAIN || errno == EINTR) return;
                    return srv_close(ep, c);
                }
                c->count -= (uint64_t)w;
            }
            shutdown(c->fd, SHUT_WR);
            return srv_close(ep, c);
        }
        /* echo */
        int cap = CHUNK / 4;
        if (c->head < c->tail) {
            ssize_t w = write(c->fd, c->buf + c->head, c->tail - c->head);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) { srv_events(ep, c, EPOLLOUT); return; }
                return srv_close(ep, c);
            }
            c->head += (int)w;
            if (c->head < c->tail) { srv_events(ep, c, EPOLLOUT); return; }
            c->head = c->tail = 0;
            srv_events(ep, c, EPOLLIN | EPOLLRDHUP);
        }
        if (c->eof) { shutdown(c->fd, SHUT_WR); return srv_close(ep, c); }
        ssize_t r = read(c->fd, c->buf + c->tail, cap - c->tail);
        if (r > 0) { c->tail += (int)r; continue; }
        if (r == 0) { c->eof = 1; continue; }
        if (errno == EAGAIN || errno == EINTR) return;
        return srv_close(ep, c);
    }
}

__attribute__((noreturn)) static int run_server(void) {
    memset(g_source, 'x', sizeof g_source);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("READY %d\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
    char *scratch = malloc(CHUNK);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            srv_handle(ep, evs[i].data.ptr, scratch);
        }
    }
}

/* ---------------------------------------------------------------- bulk */

struct bulk_arg {
    int up;
    long long bytes;
    long long moved;
    int ok;
    pthread_barrier_t *barrier;
};

static void *bulk_thread(void *p) {
    struct bulk_arg *a = p;
    char *buf = malloc(CHUNK);
    memset(buf, 'y', CHUNK);
    pthread_barrier_wait(a->barrier);
    int fd = connect_port(g_port);
    if (fd < 0) { free(buf); return NULL; }
    unsigned char h[HDR];
    put_header(h, a->up ? 'U' : 'D', (uint64_t)a->bytes);
    if (write_all(fd, h, HDR) < 0) goto out;
    if (a->up) {
        long long left = a->bytes;
        while (left > 0) {
            size_t n = left < CHUNK ? (size_t)left : CHUNK;
            ssize_t w = write(fd, buf, n);
            if (w < 0) { if (errno == EINTR) continue; goto out; }
            left -= w;
            a->moved += w;
        }
        shutdown(fd, SHUT_WR);
        unsigned char ack[8];
        if (read_all(fd, ack, 8) < 0) goto out;
        a->ok = get_u64(ack) == (uint64_t)a->bytes;
    } else {
        for (;;) {
            ssize_t r = read(fd, buf, CHUNK);
            if (r < 0) { if (errno == EINTR) continue; goto out; }
            if (r == 0) break;
            a->moved += r;
        }
        a->ok = a->moved == a->bytes;
    }
out:
    close(fd);
    free(buf);
    return NULL;
}

static int run_bulk(int up) {
    pthread_t th[64];
    struct bulk_arg args[64];
    pthread_barrier_t barrier;
    int k = g_streams < 1 ? 1 : (g_streams > 64 ? 64 : g_streams);
    pthread_barrier_init(&barrier, NULL, (unsigned)k + 1);
    for (int i = 0; i < k; i++) {
        args[i] = (struct bulk_arg){.up = up, .bytes = g_bytes / k, .barrier = &barrier};
        pthread_create(&th[i], NULL, bulk_thread, &args[i]);
    }
    pthread_barrier_wait(&barrier);
    double t0 = now_s();
    long long moved = 0;
    int ok = 0;
    for (int i = 0; i < k; i++) {
        pthread_join(th[i], NULL);
        moved += args[i].moved;
        ok += args[i].ok;
    }
    double dt = now_s() - t0;
    printf("{\"mode\":\"%s\",\"streams\":%d,\"bytes\":%lld,\"seconds\":%.6f,\"mb_per_s\":%.2f,\"ok\":%s}\n",
           up ? "up" : "down", k, moved, dt, moved / dt / 1e6, ok == k ? "true" : "false");
    return ok == k ? 0 : 1;
}

/* ---------------------------------------------------------------- rtt */

static int run_rtt(void) {
    int n = g_count ? g_count : 10000, size = g_size;
    int fd = connect_port(g_port);
    if (fd < 0) die("connect");
    unsigned char h[HDR];
    put_header(h, 'E', 0);
    if (write_all(fd, h, HDR) < 0) die("write");
    char *out = malloc(size), *in = malloc(size);
    memset(out, 'r', size);
    double *lat = malloc(sizeof(double) * n);
    for (int i = -200; i < n; i++) { /* 200 warm-up round trips */
        double t0 = now_s();
        if (write_all(fd, out, size) < 0 || read_all(fd, in, size) < 0) {
            fprintf(stderr, "rtt: connection failed after %d round trips\n", i);
            return 1;
        }
        if (i >= 0) lat[i] = (now_s() - t0) * 1e6;
    }
    close(fd);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += lat[i];
    qsort(lat, n, sizeof(double), cmp_double);
    printf("{\"mode\":\"rtt\",\"count\":%d,\"size\":%d,\"median_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,"
           "\"max_us\":%.2f}\n",
           n, size, percentile(lat, n, 0.5), percentile(lat, n, 0.99), sum / n, lat[n - 1]);
    return 0;
}

/* ---------------------------------------------------------------- connrate */

static atomic_int g_next, g_fail;
static double *g_ttfb;

static void *connrate_thread(void *p) {
    (void)p;
    unsigned char msg[HDR + 1];
    put_header(msg, 'E', 0);
    msg[HDR] = 'z';
    for (;;) {
        int i = atomic_fetch_add(&g_next, 1);
        if (i >= g_count) break;
        double t0 = now_s();
        int fd = connect_port(g_port);
        char b;
        if (fd < 0 || write_all(fd, msg, sizeof msg) < 0 || read_all(fd, &b, 1) < 0 || b != 'z') {
            atomic_fetch_add(&g_fail, 1);
            g_ttfb[i] = -1;
            if (fd >= 0) close(fd);
            continue;
        }
        g_ttfb[i] = (now_s() - t0) * 1e6;
        shutdown(fd, SHUT_WR);
        (void)read(fd, &b, 1); /* wait for the echo's EOF: the connection is fully done */
        close(fd);
    }
    return NULL;
}

static int run_connrate(void) {
    if (!g_count) g_count = 2000;
    int c = g_clients < 1 ? 1 : (g_clients > 64 ? 64 : g_clients);
    g_ttfb = calloc(g_count, sizeof(double));
    pthread_t th[64];
    double t0 = now_s();
    for (int i = 0; i < c; i++) pthread_create(&th[i], NULL, connrate_thread, NULL);
    for (int i = 0; i < c; i++) pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    int n = 0;
    for (int i = 0; i < g_count; i++)
        if (g_ttfb[i] >= 0) g_ttfb[n++] = g_ttfb[i];
    qsort(g_ttfb, n, sizeof(double), cmp_double);
    printf("{\"mode\":\"connrate\",\"clients\":%d,\"count\":%d,\"failed\":%d,\"seconds\":%.6f,\"conns_per_s\":%.1f,"
           "\"ttfb_median_us\":%.1f,\"ttfb_p99_us\":%.1f}\n",
           c, g_count, atomic_load(&g_fail), dt, n / dt, percentile(g_ttfb, n, 0.5), percentile(g_ttfb, n, 0.99));
    return atomic_load(&g_fail) ? 1 : 0;
}

/* ---------------------------------------------------------------- concurrent */

struct cconn {
    int fd, round, sent, recvd, done, failed;
};

static int run_concurrent(void) {
    int n = g_conns, size = g_size == 64 ? 1024 : g_size;
    struct cconn *cs = calloc(n, sizeof *cs);
    struct pollfd *pf = calloc(n, sizeof *pf);
    char *out = malloc(size + HDR), *in = malloc(size);
    memset(out, 'c', size + HDR);
    put_header((unsigned char *)out, 'E', 0);
    double t0 = now_s();
    int connect_failed = 0;
    for (int i = 0; i < n; i++) {
        cs[i].fd = connect_port(g_port);
        if (cs[i].fd < 0) { cs[i].failed = 1; cs[i].done = 1; connect_failed++; continue; }
        if (write_all(cs[i].fd, out, HDR) < 0) { cs[i].failed = 1; cs[i].done = 1; connect_failed++; continue; }
        fcntl(cs[i].fd, F_SETFL, O_NONBLOCK);
    }
    double connected = now_s() - t0;
    /* Each connection: `rounds` times, send `size` bytes and read them back. */
    double deadline = now_s() + 60;
    int remaining = n - connect_failed;
    while (remaining > 0 && now_s() < deadline) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (cs[i].done) continue;
            pf[m].fd = cs[i].fd;
            pf[m].events = cs[i].sent < size ? POLLOUT : POLLIN;
            pf[m].revents = 0;
            m++;
        }
        if (poll(pf, m, 1000) < 0 && errno != EINTR) die("poll");
        int j = 0;
        for (int i = 0; i < n; i++) {
            if (cs[i].done) continue;
            struct pollfd *p = &pf[j++];
            if (!p->revents) continue;
            struct cconn *c = &cs[i];
            if (c->sent < size) {
                ssize_t w = write(c->fd, out + HDR + c->sent, size - c->sent);
                if (w < 0) {
                    if (errno == EAGAIN) continue;
                    c->failed = c->done = 1; remaining--; continue;
                }
                c->sent += (int)w;
                continue;
            }
            ssize_t r = read(c->fd, in, size - c->recvd);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                c->failed = c->done = 1; remaining--; continue;
            }
            c->recvd += (int)r;
            if (c->recvd == size) {
                c->round++;
                c->sent = c->recvd = 0;
                if (c->round == g_rounds) { c->done = 1; remaining--; }
            }
        }
    }
    double exchanged = now_s() - t0;
    int ok = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        if (cs[i].done && !cs[i].failed) ok++;
        else failed++;
    }
    fprintf(stderr, "HOLDING\n");
    usleep((useconds_t)g_hold_ms * 1000);
    for (int i = 0; i < n; i++)
        if (cs[i].fd >= 0) close(cs[i].fd);
    printf("{\"mode\":\"concurrent\",\"conns\":%d,\"ok\":%d,\"failed\":%d,\"connect_failed\":%d,"
           "\"connect_seconds\":%.3f,\"seconds\":%.3f}\n",
           n, ok, failed, connect_failed, connected, exchanged);
    return failed ? 1 : 0;
}

/* ---------------------------------------------------------------- probe */

static int run_probe(void) {
    int fd = connect_port(g_port);
    if (fd < 0) return 1;
    struct timeval tv = {.tv_sec = g_timeout_ms / 1000, .tv_usec = (g_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char msg[HDR + 1];
    put_header(msg, 'E', 0);
    msg[HDR] = 'p';
    char b = 0;
    int ok = write_all(fd, msg, sizeof msg) == 0 && read_all(fd, &b, 1) == 0 && b == 'p';
    close(fd);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen server|up|down|rtt|connrate|concurrent|probe --port P [options]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i];
        long long v = atoll(argv[i + 1]);
        if (!strcmp(k, "--port")) g_port = (int)v;
        else if (!strcmp(k, "--bytes")) g_bytes = v;
        else if (!strcmp(k, "--streams")) g_streams = (int)v;
        else if (!strcmp(k, "--count")) g_count = (int)v;
        else if (!strcmp(k, "--size")) g_size = (int)v;
        else if (!strcmp(k, "--clients")) g_clients = (int)v;
        else if (!strcmp(k, "--conns")) g_conns = (int)v;
        else if (!strcmp(k, "--rounds")) g_rounds = (int)v;
        else if (!strcmp(k, "--hold-ms")) g_hold_ms = (int)v;
        else if (!strcmp(k, "--timeout-ms")) g_timeout_ms = (int)v;
        else { fprintf(stderr, "unknown option %s\n", k); return 2; }
    }
    const char *m = argv[1];
    if (!strcmp(m, "server")) return run_server();
    if (!g_port) { fprintf(stderr, "--port is required\n"); return 2; }
    if (!strcmp(m, "up")) return run_bulk(1);
    if (!strcmp(m, "down")) return run_bulk(0);
    if (!strcmp(m, "rtt")) return run_rtt();
    if (!strcmp(m, "connrate")) return run_connrate();
    if (!strcmp(m, "concurrent")) return run_concurrent();
    if (!strcmp(m, "probe")) return run_probe();
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
