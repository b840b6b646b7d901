#ifndef ECTO_CLINUX_H
#define ECTO_CLINUX_H
/* Linux-only syscalls that Swift's Glibc module does not export (they need _GNU_SOURCE). */
#include <sys/types.h>
#include <sys/socket.h>

int ecto_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);
int ecto_eventfd(unsigned int initial, int flags);
extern const int ECTO_EFD_NONBLOCK;
extern const int ECTO_EFD_CLOEXEC;
extern const short ECTO_POLLRDHUP;
/* posix_spawn's flag for a child in a session of its own (glibc defines it only with _GNU_SOURCE). */
extern const short ECTO_POSIX_SPAWN_SETSID;


/* Network changes: a non-blocking rtnetlink socket subscribed to link, address and route events
 * (IPv4 and IPv6). Returns the fd, or -1 with errno set. */
int ecto_route_monitor_open(void);
/* How many link/address/route change messages a buffer read from that socket holds. */
int ecto_route_monitor_count_changes(const void *buffer, long length);

/* Resume from suspend (and clock jumps): a CLOCK_REALTIME timerfd armed far in the future with
 * TFD_TIMER_CANCEL_ON_SET. The kernel cancels it when the realtime clock is set, which includes
 * every resume from suspend; a read then fails with ECANCELED. Returns the fd or -1. */
int ecto_clock_change_timer_open(void);
/* Re-arms it after a cancellation. Returns 0 or -1. */
int ecto_clock_change_timer_rearm(int fd);

/* epoll for the session driver: registrations named by a 64-bit token, level-triggered unless
 * ECTO_EPOLLET is asked for (client sockets are).
 * (struct epoll_event is packed on x86-64; this unpacked twin is what Swift sees.) */
typedef struct {
    unsigned int events;
    unsigned long long token;
} ecto_epoll_event;
extern const unsigned int ECTO_EPOLLIN;
extern const unsigned int ECTO_EPOLLOUT;
extern const unsigned int ECTO_EPOLLERR;
extern const unsigned int ECTO_EPOLLHUP;
extern const unsigned int ECTO_EPOLLRDHUP;
extern const unsigned int ECTO_EPOLLET;
extern const int ECTO_EPOLL_CTL_ADD;
extern const int ECTO_EPOLL_CTL_MOD;
extern const int ECTO_EPOLL_CTL_DEL;
/* A close-on-exec epoll instance, or -1 with errno set. */
int ecto_epoll_create(void);
/* epoll_ctl with the token as the registration's data. Returns 0 or -1 (errno set). */
int ecto_epoll_control(int epfd, int op, int fd, unsigned int events, unsigned long long token);
/* epoll_wait into `ready` (at most `capacity`, capped at 256). Returns the count or -1 (errno set). */
int ecto_epoll_wait(int epfd, ecto_epoll_event *ready, int capacity, int timeout_ms);

/* Free room in a TCP socket's kernel send queue (SO_SNDBUF minus SIOCOUTQ), or -1. */
long ecto_send_queue_room(int fd);

/* Bytes waiting to be read from a socket (FIONREAD), or -1 (errno set). */
long ecto_input_queue_bytes(int fd);

/* The uid and pid of a Unix-domain socket's peer (SO_PEERCRED). Returns 0 or -1 (errno set). */
int ecto_peer_credentials(int fd, unsigned int *uid, int *pid);

/* Names the calling thread for the kernel (/proc/PID/task/TID/comm, `ps -L`, `top -H`, and the
 * Swift runtime's crash backtraces). The kernel keeps 15 bytes: longer names are cut. */
void ecto_set_thread_name(const char *name);
/* The calling thread's kernel thread id (gettid). */
int ecto_thread_id(void);

/* Starts `argv[0]` (looked up in PATH when it has no "/") with posix_spawnp: stdin, stdout and
 * stderr on the given descriptors (-1: /dev/null), every other descriptor closed in the child
 * (closefrom 3, whatever its close-on-exec flag), no blocked signals, SIGPIPE at its default, and
 * with `new_group` in a process group of its own (so the whole group can be killed).
 * Returns 0 and sets *pid, or an errno value. */
int ecto_spawn(char *const argv[], char *const envp[], int stdin_fd, int stdout_fd, int stderr_fd, int new_group, int *pid);
/* socketpair(AF_UNIX, SOCK_STREAM) with both ends close-on-exec (and non-blocking when asked). */
int ecto_socketpair(int fds[2], int nonblocking);

#endif
