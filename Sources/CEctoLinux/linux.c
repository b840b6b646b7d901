#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <poll.h>
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
    return fd;
}

int ecto_route_monitor_count_changes(const void *buffer, long length) {
    int changes = 0;
    int remaining = (int)length;
    for (const struct nlmsghdr *message = buffer; NLMSG_OK(message, remaining); message = NLMSG_NEXT(message, remaining)) {
        switch (message->nlmsg_type) {
        case RTM_NEWLINK: case RTM_DELLINK:
        case RTM_NEWADDR: case RTM_DELADDR:
        case RTM_NEWROUTE: case RTM_DELROUTE:
            changes++;
            break;
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
