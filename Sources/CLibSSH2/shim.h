#ifndef ECTO_CLIBSSH2_SHIM_H
#define ECTO_CLIBSSH2_SHIM_H
/*
 * The one C header of ecto-tunnel: libssh2's API plus static inline functions for what libssh2
 * exposes only as function-like macros (Swift cannot import those) and a typed setter for the
 * transport callbacks (libssh2 1.10 takes them as void*).
 */
#include <libssh2.h>
#include <sys/types.h>
#include <sys/socket.h>

static inline LIBSSH2_SESSION *ecto_session_init(void *abstract) {
    return libssh2_session_init_ex(NULL, NULL, NULL, abstract);
}

static inline int ecto_session_disconnect(LIBSSH2_SESSION *s, const char *description) {
    return libssh2_session_disconnect_ex(s, SSH_DISCONNECT_BY_APPLICATION, description, "");
}

static inline ssize_t ecto_channel_read(LIBSSH2_CHANNEL *c, char *buf, size_t len) {
    return libssh2_channel_read_ex(c, 0, buf, len);
}

static inline ssize_t ecto_channel_write(LIBSSH2_CHANNEL *c, const char *buf, size_t len) {
    return libssh2_channel_write_ex(c, 0, buf, len);
}

static inline unsigned long ecto_channel_window_write(LIBSSH2_CHANNEL *c) {
    return libssh2_channel_window_write_ex(c, NULL);
}

static inline unsigned long ecto_channel_window_read(LIBSSH2_CHANNEL *c) {
    return libssh2_channel_window_read_ex(c, NULL, NULL);
}

static inline LIBSSH2_CHANNEL *ecto_channel_open(LIBSSH2_SESSION *s, const char *type, unsigned int type_len,
                                                 unsigned int window, unsigned int packet,
                                                 const char *message, unsigned int message_len) {
    return libssh2_channel_open_ex(s, type, type_len, window, packet, message, message_len);
}

/* The transport hooks: every byte libssh2 sends or receives on the SSH socket goes through these. */
typedef ssize_t (*ecto_send_fn)(libssh2_socket_t fd, const void *buf, size_t len, int flags, void **abstract);
typedef ssize_t (*ecto_recv_fn)(libssh2_socket_t fd, void *buf, size_t len, int flags, void **abstract);

static inline void ecto_session_set_transport(LIBSSH2_SESSION *s, ecto_send_fn send_fn, ecto_recv_fn recv_fn) {
    libssh2_session_callback_set(s, LIBSSH2_CALLBACK_SEND, (void *)send_fn);
    libssh2_session_callback_set(s, LIBSSH2_CALLBACK_RECV, (void *)recv_fn);
}

/* SSH_MSG_DISCONNECT from the peer: its reason code and description (libssh2 does not keep them). */
typedef void (*ecto_disconnect_fn)(LIBSSH2_SESSION *session, int reason, const char *message, int message_len,
                                   const char *language, int language_len, void **abstract);

static inline void ecto_session_set_disconnect(LIBSSH2_SESSION *s, ecto_disconnect_fn fn) {
    libssh2_session_callback_set(s, LIBSSH2_CALLBACK_DISCONNECT, (void *)fn);
}

static inline int ecto_userauth_publickey_frommemory(LIBSSH2_SESSION *s, const char *user, size_t user_len,
                                                     const char *private_key, size_t private_key_len,
                                                     const char *passphrase) {
    return libssh2_userauth_publickey_frommemory(s, user, user_len, NULL, 0, private_key, private_key_len, passphrase);
}

/* The same with the public key given too (an OpenSSH public key or certificate line): libssh2 1.10
 * sends that blob, so an ECDSA key can log in with its certificate. */
static inline int ecto_userauth_publickey_frommemory_with_public(LIBSSH2_SESSION *s, const char *user, size_t user_len,
                                                                 const char *public_key, size_t public_key_len,
                                                                 const char *private_key, size_t private_key_len,
                                                                 const char *passphrase) {
    return libssh2_userauth_publickey_frommemory(s, user, user_len, public_key, public_key_len, private_key, private_key_len,
                                                 passphrase);
}

/* Public key authentication with our own key blob and signer (libssh2_userauth_publickey). libssh2
 * takes the userauth algorithm name from the blob's first string and wraps what the callback returns
 * as string(that name) + string(signature); the callback's buffer is freed with free(). */
typedef int (*ecto_sign_fn)(LIBSSH2_SESSION *session, unsigned char **sig, size_t *sig_len,
                            const unsigned char *data, size_t data_len, void **abstract);

static inline int ecto_userauth_publickey_signed(LIBSSH2_SESSION *s, const char *user, const unsigned char *blob,
                                                 size_t blob_len, ecto_sign_fn sign, void **abstract) {
    return libssh2_userauth_publickey(s, user, blob, blob_len, sign, abstract);
}

/* 1 when the libssh2 we were built against signs RSA with rsa-sha2-256/512 itself (1.11 and later):
 * then its own key-file and agent paths are used for RSA keys. */
static inline int ecto_libssh2_signs_rsa_sha2(void) {
#if LIBSSH2_VERSION_NUM >= 0x010b00
    return 1;
#else
    return 0;
#endif
}

#endif
