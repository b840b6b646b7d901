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

#endif
