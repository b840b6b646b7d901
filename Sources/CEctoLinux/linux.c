#define _GNU_SOURCE
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
