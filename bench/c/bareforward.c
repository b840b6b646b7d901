/*
 * bareforward: a bare libssh2 LocalForward, the yardstick for ecto-tunnel's forwarding path.
 *
 *   bareforward --ssh-port P --user U --key KEYFILE --listen-port L --remote-port R [--buf BYTES]
 *
 * One SSH session to 127.0.0.1:P (blocking handshake and public-key authentication, then
 * non-blocking), a listener on 127.0.0.1:L, one direct-tcpip channel to 127.0.0.1:R per accepted
 * connection. One thread, a poll loop with no timeouts, big buffers, and the libssh2 1.10 rules:
 *  - after EAGAIN with libssh2_session_block_directions() & OUTBOUND, libssh2 holds a half-sent
 *    packet: that same call is retried first and nothing else runs until it completes;
 *  - one channel open in flight;
 *  - a read on one channel may pull other channels' data into libssh2: after a pass that made
 *    progress, loop again without waiting.
 * A receive hook answers EAGAIN without a syscall once the socket was found empty in a pass (as
 * ecto-tunnel's does). No host key check, no keepalive, no reconnect: it is a benchmark tool.
 * Prints "READY" on stdout once authenticated and listening.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { OP_NONE, OP_OPEN, OP_READ, OP_WRITE, OP_EOF, OP_CLOSE };
enum { PH_QUEUED, PH_OPEN, PH_CLOSING };

struct fwd {
    int fd, phase;
    LIBSSH2_CHANNEL *ch;
    char *up, *down; /* client -> channel, channel -> client */
    int up_head, up_tail, down_head, down_tail;
    int client_eof, client_readable, client_write_blocked, eof_sent, remote_eof, client_shut, client_closed;
};

static int g_buf = 256 * 1024;
static int g_ssh_port, g_listen_port, g_remote_port;
static const char *g_user, *g_key;
static LIBSSH2_SESSION *g_s;
static int g_sock;
static struct fwd **g_conns;
static int g_nconns, g_capconns;
static int g_pending_op = OP_NONE;
static struct fwd *g_pending_conn;
static struct fwd *g_opening; /* head of the open queue while its open is in flight */
static int g_progress;
static int g_recv_drained, g_received, g_shortcut; /* shortcut: only in the poll loop */

static LIBSSH2_RECV_FUNC(recv_hook) {
    (void)abstract;
    if (g_shortcut && g_recv_drained) return -EAGAIN;
    ssize_t r = recv(socket, buffer, length, flags);
    if (r < 0) {
        if (errno == EAGAIN) g_recv_drained = 1;
        return -errno;
    }
    if (r > 0) g_received = 1;
    return r;
}

static void die(const char *what) {
    char *msg = NULL;
    if (g_s) libssh2_session_last_error(g_s, &msg, NULL, 0);
    fprintf(stderr, "bareforward: %s: %s (errno %s)\n", what, msg ? msg : "", strerror(errno));
    exit(1);
}

/* true when the EAGAIN just returned left a half-sent packet: the call becomes pending. */
static int stalled(int op, struct fwd *c) {
    if (libssh2_session_block_directions(g_s) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
        g_pending_op = op;
        g_pending_conn = c;
        return 1;
    }
    return 0;
}

static void close_client(struct fwd *c) {
    if (c->client_closed) return;
    c->client_closed = 1;
    close(c->fd);
}

static void fail_conn(struct fwd *c) {
    close_client(c);
    c->phase = PH_CLOSING;
    g_progress = 1;
}

/* Each returns 0 when the pass must stop (a pending call). */
static int do_close(struct fwd *c) {
    if (c->ch) {
        int rc = libssh2_channel_close(c->ch);
        if (rc == LIBSSH2_ERROR_EAGAIN) return !stalled(OP_CLOSE, c);
        rc = libssh2_channel_free(c->ch);
        if (rc == LIBSSH2_ERROR_EAGAIN) return !stalled(OP_CLOSE, c);
        c->ch = NULL;
    }
    close_client(c);
    c->phase = -1; /* removed by the sweep */
    g_progress = 1;
    return 1;
}

static int do_read(struct fwd *c) {
    if (!c->ch || c->remote_eof) return 1;
    while (c->down_tail < g_buf) {
        ssize_t n = libssh2_channel_read(c->ch, c->down + c->down_tail, g_buf - c->down_tail);
        if (n == LIBSSH2_ERROR_EAGAIN) return !stalled(OP_READ, c);
        if (n < 0) { fail_conn(c); return 1; }
        if (n == 0) {
            if (libssh2_channel_eof(c->ch)) { c->remote_eof = 1; g_progress = 1; }
            return 1;
        }
        c->down_tail += (int)n;
        g_progress = 1;
    }
    return 1;
}

static void flush_client(struct fwd *c) {
    while (c->down_head < c->down_tail && !c->client_write_blocked) {
        ssize_t w = write(c->fd, c->down + c->down_head, c->down_tail - c->down_head);
        if (w < 0) {
            if (errno == EAGAIN) { c->client_write_blocked = 1; break; }
            fail_conn(c);
            return;
        }
        c->down_head += (int)w;
        g_progress = 1;
    }
    if (c->down_head == c->down_tail) c->down_head = c->down_tail = 0;
    if (c->remote_eof && c->down_head == c->down_tail && !c->client_shut) {
        shutdown(c->fd, SHUT_WR);
        c->client_shut = 1;
        g_progress = 1;
    }
}

static void read_client(struct fwd *c) {
    while (c->client_readable && !c->client_eof && c->up_tail < g_buf) {
        ssize_t r = read(c->fd, c->up + c->up_tail, g_buf - c->up_tail);
        if (r < 0) {
            if (errno == EAGAIN) { c->client_readable = 0; break; }
            fail_conn(c);
            return;
        }
        if (r == 0) { c->client_eof = 1; c->client_readable = 0; break; }
        c->up_tail += (int)r;
        g_progress = 1;
    }
}

static int do_write(struct fwd *c) {
    while (c->up_head < c->up_tail) {
        if (libssh2_channel_window_write(c->ch) == 0) return 1; /* wait for a window adjust */
        ssize_t n = libssh2_channel_write(c->ch, c->up + c->up_head, c->up_tail - c->up_head);
        if (n == LIBSSH2_ERROR_EAGAIN) return !stalled(OP_WRITE, c);
        if (n < 0) { fail_conn(c); return 1; }
        if (n == 0) return 1;
        c->up_head += (int)n;
        g_progress = 1;
    }
    c->up_head = c->up_tail = 0;
    return 1;
}

static int do_eof(struct fwd *c) {
    int rc = libssh2_channel_send_eof(c->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return !stalled(OP_EOF, c);
    if (rc < 0) { fail_conn(c); return 1; }
    c->eof_sent = 1;
    g_progress = 1;
    return 1;
}

static int do_open(void) {
    for (int i = 0; i < g_nconns; i++) {
        struct fwd *c = g_opening ? g_opening : NULL;
        if (!c) {
            for (int j = 0; j < g_nconns; j++)
                if (g_conns[j]->phase == PH_QUEUED) { c = g_conns[j]; break; }
            if (!c) return 1;
        }
        g_opening = c;
        LIBSSH2_CHANNEL *ch =
            libssh2_channel_direct_tcpip_ex(g_s, "127.0.0.1", g_remote_port, "127.0.0.1", g_listen_port);
        if (!ch) {
            if (libssh2_session_last_errno(g_s) == LIBSSH2_ERROR_EAGAIN) return !stalled(OP_OPEN, c);
            g_opening = NULL;
            fail_conn(c);
            continue;
        }
        g_opening = NULL;
        c->ch = ch;
        g_progress = 1;
        if (c->client_closed) { c->phase = PH_CLOSING; continue; }
        c->phase = PH_OPEN;
        c->client_readable = 1;
    }
    return 1;
}

static int service(struct fwd *c) {
    if (!do_read(c)) return 0;
    flush_client(c);
    if (c->phase != PH_OPEN) return 1;
    read_client(c);
    if (c->phase != PH_OPEN) return 1;
    if (!do_write(c)) return 0;
    if (c->client_eof && c->up_head == c->up_tail && !c->eof_sent)
        if (!do_eof(c)) return 0;
    if (c->eof_sent && c->client_shut) {
        close_client(c);
        c->phase = PH_CLOSING;
        return do_close(c);
    }
    return 1;
}

static int retry_pending(void) {
    int op = g_pending_op;
    struct fwd *c = g_pending_conn;
    g_pending_op = OP_NONE;
    g_pending_conn = NULL;
    switch (op) {
    case OP_OPEN: return do_open();
    case OP_READ: return do_read(c);
    case OP_WRITE: return do_write(c);
    case OP_EOF: return do_eof(c);
    case OP_CLOSE: return do_close(c);
    default: return 1;
    }
}

static void pass(void) {
    g_recv_drained = 0;
    g_received = 0;
    if (g_pending_op != OP_NONE && !retry_pending()) return;
    if (!do_open()) return;
    for (int i = 0; i < g_nconns; i++) {
        struct fwd *c = g_conns[i];
        if (c->phase == PH_OPEN) {
            if (!service(c)) break;
        } else if (c->phase == PH_CLOSING) {
            if (!do_close(c)) break;
        }
    }
    /* sweep finished connections (not the one a pending call refers to) */
    int k = 0;
    for (int i = 0; i < g_nconns; i++) {
        struct fwd *c = g_conns[i];
        if (c->phase == -1 && c != g_pending_conn && c != g_opening) {
            free(c->up);
            free(c->down);
            free(c);
        } else {
            g_conns[k++] = c;
        }
    }
    g_nconns = k;
    if (g_received) g_progress = 1;
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct fwd *c = calloc(1, sizeof *c);
        c->fd = fd;
        c->phase = PH_QUEUED;
        c->up = malloc(g_buf);
        c->down = malloc(g_buf);
        if (g_nconns == g_capconns) {
            g_capconns = g_capconns ? g_capconns * 2 : 64;
            g_conns = realloc(g_conns, sizeof *g_conns * g_capconns);
        }
        g_conns[g_nconns++] = c;
        g_progress = 1;
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--ssh-port")) g_ssh_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--listen-port")) g_listen_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--remote-port")) g_remote_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--user")) g_user = argv[i + 1];
        else if (!strcmp(argv[i], "--key")) g_key = argv[i + 1];
        else if (!strcmp(argv[i], "--buf")) g_buf = atoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (!g_ssh_port || !g_listen_port || !g_remote_port || !g_user || !g_key) {
        fprintf(stderr, "usage: bareforward --ssh-port P --user U --key KEY --listen-port L --remote-port R\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    if (libssh2_init(0)) die("libssh2_init");

    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin_port = htons((uint16_t)g_ssh_port);
    if (connect(g_sock, (struct sockaddr *)&a, sizeof a) < 0) die("connect to sshd");
    int one = 1;
    setsockopt(g_sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    g_s = libssh2_session_init();
    libssh2_session_callback_set(g_s, LIBSSH2_CALLBACK_RECV, (void *)recv_hook);
    libssh2_session_set_blocking(g_s, 1);
    if (libssh2_session_handshake(g_s, g_sock)) die("handshake");
    if (libssh2_userauth_publickey_fromfile(g_s, g_user, NULL, g_key, NULL)) die("authentication");
    fprintf(stderr, "bareforward: cipher %s, mac %s\n", libssh2_session_methods(g_s, LIBSSH2_METHOD_CRYPT_CS),
            libssh2_session_methods(g_s, LIBSSH2_METHOD_MAC_CS));
    libssh2_session_set_blocking(g_s, 0);
    fcntl(g_sock, F_SETFL, fcntl(g_sock, F_GETFL) | O_NONBLOCK);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    a.sin_port = htons((uint16_t)g_listen_port);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    g_shortcut = 1;
    printf("READY\n");
    fflush(stdout);

    struct pollfd *pf = NULL;
    struct fwd **owner = NULL;
    int cap = 0;
    for (;;) {
        if (cap < g_nconns + 2) {
            cap = (g_nconns + 2) * 2;
            pf = realloc(pf, sizeof *pf * cap);
            owner = realloc(owner, sizeof *owner * cap);
        }
        int m = 0;
        pf[m++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        /* Input only while a channel exists or an open is in flight: libssh2 1.10 reads the
           transport only inside channel calls, so a packet the server sends to a session without
           channels (OpenSSH's hostkeys-00@openssh.com right after authentication) would stay
           unread and keep the socket readable: a busy loop from the start until the first
           connection. The next channel open takes it in. POLLHUP/POLLERR still come. */
        short sev = (g_nconns > 0 || g_pending_op != OP_NONE) ? POLLIN : 0;
        /* Output only while a half-sent packet waits: libssh2's block directions can stay stale
           after the blocking handshake, and POLLOUT on an idle socket is always ready. */
        if (g_pending_op != OP_NONE && (libssh2_session_block_directions(g_s) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
            sev |= POLLOUT;
        pf[m++] = (struct pollfd){.fd = g_sock, .events = sev};
        for (int i = 0; i < g_nconns; i++) {
            struct fwd *c = g_conns[i];
            if (c->client_closed || c->phase != PH_OPEN) continue;
            short ev = 0;
            if (!c->client_eof && !c->client_readable && c->up_tail < g_buf) ev |= POLLIN;
            if (c->client_write_blocked) ev |= POLLOUT;
            if (!ev) continue;
            owner[m] = c;
            pf[m++] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int timeout = g_progress ? 0 : -1;
        g_progress = 0;
        if (poll(pf, m, timeout) < 0 && errno != EINTR) die("poll");
        if (pf[1].revents & (POLLHUP | POLLERR)) {
            char b;
            if (recv(g_sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) die("session closed by the server");
        }
        for (int i = 2; i < m; i++) {
            if (!pf[i].revents) continue;
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) owner[i]->client_readable = 1;
            if (pf[i].revents & (POLLOUT | POLLHUP | POLLERR)) owner[i]->client_write_blocked = 0;
        }
        if (pf[0].revents & POLLIN) accept_all(lfd);
        pass();
    }
}
