#define _GNU_SOURCE
#include <errno.h>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include "CEctoLinux.h"

int ecto_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

int ecto_eventfd(unsigned int initial, int flags) {
    return eventfd(initial, flags);
}

const int ECTO_EFD_NONBLOCK = EFD_NONBLOCK;
const int ECTO_EFD_CLOEXEC = EFD_CLOEXEC;
const short ECTO_POLLRDHUP = POLLRDHUP;
const short ECTO_POSIX_SPAWN_SETSID = POSIX_SPAWN_SETSID;

int ecto_route_monitor_open(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -1;
    struct sockaddr_nl address;
    memset(&address, 0, sizeof address);
    address.nl_family = AF_NETLINK;
    address.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    /* Ask for every link now: the answers set each link's baseline state, so that the first
     * change after start is seen as a change. */
    struct {
        struct nlmsghdr header;
        struct ifinfomsg info;
    } request;
    memset(&request, 0, sizeof request);
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    request.header.nlmsg_type = RTM_GETLINK;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = 1;
    request.info.ifi_family = AF_UNSPEC;
    (void)send(fd, &request, request.header.nlmsg_len, 0);
    return fd;
}

/* Link state as last seen, per interface index (-1: not seen yet). Only the monitor thread uses it. */
#define ECTO_MAX_IFINDEX 4096
static int ecto_link_state[ECTO_MAX_IFINDEX];
static int ecto_link_state_ready = 0;

/* Counts the messages that mean the network really changed:
 * - a link whose up/running/carrier state changed (first sight of a link is its baseline), or that went away;
 * - an address added or removed, except IPv6 link-local ones and tentative (DAD in progress) ones,
 *   which come and go on their own;
 * - a default route added or removed.
 * Lifetime refreshes of addresses and routes (router advertisements) repeat NEW messages for what
 * is already there; addresses and routes are not tracked, so those still count, but they are rare
 * (minutes apart) and the reaction to a change is a cheap liveness check. */
int ecto_route_monitor_count_changes(const void *buffer, long length) {
    if (!ecto_link_state_ready) {
        for (int i = 0; i < ECTO_MAX_IFINDEX; i++) ecto_link_state[i] = -1;
        ecto_link_state_ready = 1;
    }
    int changes = 0;
    int remaining = (int)length;
    for (const struct nlmsghdr *message = buffer; NLMSG_OK(message, remaining); message = NLMSG_NEXT(message, remaining)) {
        switch (message->nlmsg_type) {
        case RTM_NEWLINK:
        case RTM_DELLINK: {
            const struct ifinfomsg *info = NLMSG_DATA(message);
            int index = info->ifi_index;
            int state = (int)(info->ifi_flags & (IFF_UP | IFF_RUNNING | IFF_LOWER_UP));
            if (index <= 0 || index >= ECTO_MAX_IFINDEX) { changes++; break; }
            if (message->nlmsg_type == RTM_DELLINK) {
                ecto_link_state[index] = -1;
                changes++;
            } else {
                int before = ecto_link_state[index];
                ecto_link_state[index] = state;
                if (before != -1 && before != state) changes++;
            }
            break;
        }
        case RTM_NEWADDR:
        case RTM_DELADDR: {
            const struct ifaddrmsg *address = NLMSG_DATA(message);
            if (address->ifa_family == AF_INET6 && address->ifa_scope == RT_SCOPE_LINK) break;
            if (address->ifa_scope == RT_SCOPE_HOST) break;
            if (message->nlmsg_type == RTM_NEWADDR && (address->ifa_flags & IFA_F_TENTATIVE)) break;
            changes++;
            break;
        }
        case RTM_NEWROUTE:
        case RTM_DELROUTE: {
            const struct rtmsg *route = NLMSG_DATA(message);
            if (route->rtm_dst_len == 0 && route->rtm_table == RT_TABLE_MAIN) changes++;
            break;
        }
        default:
            break;
        }
    }
    return changes;
}

int ecto_clock_change_timer_open(void) {
    int fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return -1;
    if (ecto_clock_change_timer_rearm(fd) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int ecto_clock_change_timer_rearm(int fd) {
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_value.tv_sec = (time_t)1 << 40; /* far in the future: it never fires, it only gets cancelled */
    return timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &spec, NULL);
}

const unsigned int ECTO_EPOLLIN = EPOLLIN;
const unsigned int ECTO_EPOLLOUT = EPOLLOUT;
const unsigned int ECTO_EPOLLERR = EPOLLERR;
const unsigned int ECTO_EPOLLHUP = EPOLLHUP;
const unsigned int ECTO_EPOLLRDHUP = EPOLLRDHUP;
const unsigned int ECTO_EPOLLET = EPOLLET;
const int ECTO_EPOLL_CTL_ADD = EPOLL_CTL_ADD;
const int ECTO_EPOLL_CTL_MOD = EPOLL_CTL_MOD;
const int ECTO_EPOLL_CTL_DEL = EPOLL_CTL_DEL;

int ecto_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int ecto_epoll_control(int epfd, int op, int fd, unsigned int events, unsigned long long token) {
    struct epoll_event event;
    memset(&event, 0, sizeof event);
    event.events = events;
    event.data.u64 = token;
    return epoll_ctl(epfd, op, fd, &event);
}

#define ECTO_EPOLL_BATCH 256

int ecto_epoll_wait(int epfd, ecto_epoll_event *ready, int capacity, int timeout_ms) {
    struct epoll_event raw[ECTO_EPOLL_BATCH];
    if (capacity > ECTO_EPOLL_BATCH) capacity = ECTO_EPOLL_BATCH;
    int count = epoll_wait(epfd, raw, capacity, timeout_ms);
    for (int i = 0; i < count; i++) {
        ready[i].events = raw[i].events;
        ready[i].token = raw[i].data.u64;
    }
    return count;
}

long ecto_send_queue_room(int fd) {
    int queued = 0;
    int size = 0;
    socklen_t length = sizeof size;
    if (ioctl(fd, SIOCOUTQ, &queued) != 0) return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &length) != 0) return -1;
    return (long)size - (long)queued;
}

long ecto_input_queue_bytes(int fd) {
    int queued = 0;
    if (ioctl(fd, FIONREAD, &queued) != 0) return -1;
    return queued;
}

int ecto_peer_credentials(int fd, unsigned int *uid, int *pid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *uid = credentials.uid;
    *pid = credentials.pid;
    return 0;
}

void ecto_set_thread_name(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof cut - 1);
    cut[sizeof cut - 1] = 0;
    (void)prctl(PR_SET_NAME, cut, 0, 0, 0);
}

int ecto_thread_id(void) {
    return (int)syscall(SYS_gettid);
}

int ecto_spawn(char *const argv[], char *const envp[], int stdin_fd, int stdout_fd, int stderr_fd, int new_group, int *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attributes);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
    for (int target = 0; target < 3 && rc == 0; target++) {
        if (fds[target] < 0) {
            rc = posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0);
        } else {
            /* dup2 onto itself would keep close-on-exec set; glibc clears it for that case. */
            rc = posix_spawn_file_actions_adddup2(&actions, fds[target], target);
        }
    }
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_group) {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attributes, 0);
    }
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attributes, &none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attributes, &defaults);
    if (rc == 0) rc = posix_spawnattr_setflags(&attributes, flags);
    pid_t child = 0;
    if (rc == 0) rc = posix_spawnp(&child, argv[0], &actions, &attributes, argv, envp);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    if (rc == 0) *pid = child;
    return rc;
}

int ecto_socketpair(int fds[2], int nonblocking) {
    int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    return socketpair(AF_UNIX, type, 0, fds) == 0 ? 0 : errno;
}
